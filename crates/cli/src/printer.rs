//! What `parley join` prints as its call goes: session and membership events, as JSON lines
//! with `t_ms` (since process start) and `unix_ms` (wall clock, comparable across processes), or
//! as short human lines.

use std::time::{SystemTime, UNIX_EPOCH};

use parley_core::membership::MembershipEvent;
use parley_core::session::{CallEncryption, MediaKind};
use parley_core::{SessionEvent, StampedEvent};

/// Prints events on stdout, one line each.
pub struct EventPrinter {
    json: bool,
    started: SystemTime,
}

impl EventPrinter {
    /// `started` is the process's start, from which `t_ms` counts.
    pub fn new(json: bool, started: SystemTime) -> EventPrinter {
        EventPrinter { json, started }
    }

    /// Prints a session event; in text, events of no interest to a reader print nothing.
    pub fn print(&self, stamped: &StampedEvent) {
        if self.json {
            self.print_json(serde_json::to_value(&stamped.event), stamped.at);
        } else if let Some(text) = session_text(&stamped.event) {
            self.print_text(stamped.at, &text);
        }
    }

    /// Prints a membership event (heartbeats, token refresh, removal) like a session event,
    /// stamped now.
    pub fn print_membership(&self, event: &MembershipEvent) {
        let now = SystemTime::now();
        if self.json {
            self.print_json(serde_json::to_value(event), now);
        } else if let Some(text) = membership_text(event) {
            self.print_text(now, &text);
        }
    }

    fn print_json(&self, value: serde_json::Result<serde_json::Value>, at: SystemTime) {
        let unix_ms = at.duration_since(UNIX_EPOCH).map(|since| since.as_secs_f64() * 1000.0).unwrap_or(0.0);
        let mut value = value.unwrap_or_else(|_| serde_json::json!({"event": "unknown"}));
        if let Some(object) = value.as_object_mut() {
            object.insert("t_ms".into(), serde_json::json!((self.t_ms(at) * 10.0).round() / 10.0));
            object.insert("unix_ms".into(), serde_json::json!((unix_ms * 10.0).round() / 10.0));
        }
        write(&value.to_string());
    }

    fn print_text(&self, at: SystemTime, text: &str) {
        write(&format!("[{:>7.1} s] {text}", self.t_ms(at) / 1000.0));
    }

    fn t_ms(&self, at: SystemTime) -> f64 {
        at.duration_since(self.started).map(|elapsed| elapsed.as_secs_f64() * 1000.0).unwrap_or(0.0)
    }
}

/// A session event's human line, if it has one.
fn session_text(event: &SessionEvent) -> Option<String> {
    let line = match event {
        SessionEvent::Joined { room, identity, participants, encryption } => format!(
            "joined room {room} as {identity} ({} others here){}",
            participants.len(),
            if *encryption == CallEncryption::EndToEnd { ", end-to-end encrypted" } else { "" }
        ),
        SessionEvent::ParticipantEncryption { identity, state } => {
            format!("{identity}'s audio: {}", state.replace('_', " "))
        }
        SessionEvent::UnencryptedAllowed { identity } => format!("playing {identity}'s unencrypted audio"),
        SessionEvent::ParticipantJoined { identity, .. } => format!("{identity} joined"),
        SessionEvent::ParticipantLeft { identity, reason } => format!("{identity} left ({reason})"),
        SessionEvent::TrackSubscribed { identity, kind: MediaKind::Audio, .. } => {
            format!("receiving {identity}'s audio")
        }
        SessionEvent::TrackSubscribed { identity, kind: MediaKind::Video, .. } => {
            format!("receiving {identity}'s screen share")
        }
        SessionEvent::ShareEnded { identity, .. } => format!("{identity} stopped sharing their screen"),
        SessionEvent::ShareAvailable { identity, .. } => {
            format!("{identity} is sharing their screen (not watched; --watch {identity} to see it)")
        }
        SessionEvent::FirstAudio { identity, .. } => format!("hearing {identity}"),
        SessionEvent::ActiveSpeakers { identities } if !identities.is_empty() => {
            format!("speaking: {}", identities.join(", "))
        }
        SessionEvent::Reconnecting => "connection lost, reconnecting…".into(),
        SessionEvent::Reconnected => "reconnected".into(),
        SessionEvent::Disconnected { reason, .. } => format!("disconnected: {reason}"),
        SessionEvent::InputEnded => "input ended; sending silence".into(),
        SessionEvent::DeviceChanged { message } => format!("sound device: {message}"),
        SessionEvent::DeviceOpened { direction, device, sample_rate, channels, buffer_frames } => format!(
            "{direction} {device}: {sample_rate} Hz, {channels} ch, buffer {}",
            buffer_frames.map_or_else(|| "not reported".to_string(), |frames| format!("{frames} frames"))
        ),
        SessionEvent::TransmitChanged { on } => (if *on { "transmitting" } else { "not transmitting" }).into(),
        SessionEvent::PublishPermission { can_publish: false } => {
            "listening only: the room does not let you speak (a moderator can invite you)".into()
        }
        SessionEvent::PublishPermission { can_publish: true } => "allowed to speak".into(),
        SessionEvent::PublishingStopped { .. } => "no longer allowed to speak: microphone unpublished".into(),
        SessionEvent::Warning { message } => format!("warning: {message}"),
        SessionEvent::ShareStarted { target, quality, priority, width, height, .. } => {
            format!("sharing {target} at {width}x{height} ({quality}, {priority} first)")
        }
        SessionEvent::ShareSoundEnded { app } => {
            format!("warning: the shared sound of {app} ended (it stopped playing); the picture goes on")
        }
        SessionEvent::ShareStopped { .. } => "screen share stopped".into(),
        SessionEvent::ShareFailed { reason, .. } => format!("screen share failed: {reason}"),
        SessionEvent::WatchStarted { identity, width, height, .. } => {
            format!("watching {identity}'s screen ({width}x{height})")
        }
        SessionEvent::WatchStats { identity, fps, width, height, dropped, .. } => {
            format!("{identity}'s screen: {fps:.1} fps, {width}x{height}, {dropped} dropped")
        }
        SessionEvent::WatchEnded { identity, .. } => format!("no longer watching {identity}'s screen"),
        SessionEvent::Traffic { received_bytes, sent_bytes } => {
            format!("traffic: {} kB received, {} kB sent", received_bytes / 1000, sent_bytes / 1000)
        }
        SessionEvent::ReceiveStats {
            identity,
            jitter_buffer_ms,
            jitter_buffer_target_ms,
            concealed_percent,
            packets_lost,
            mixer_queue_ms,
            mixer_underruns,
            output_glitches,
            ..
        } => {
            let ms = |value: &Option<f64>| value.map_or_else(|| "–".to_string(), |value| format!("{value:.1} ms"));
            format!(
                "{identity}: jitter buffer {} (target {}), concealed {concealed_percent:.1} %, lost {packets_lost}, mixer queue {} ({mixer_underruns} short), output gaps {output_glitches}",
                ms(jitter_buffer_ms),
                ms(jitter_buffer_target_ms),
                ms(mixer_queue_ms)
            )
        }
        _ => return None,
    };
    Some(line)
}

/// A membership event's human line, if it has one.
fn membership_text(event: &MembershipEvent) -> Option<String> {
    let line = match event {
        MembershipEvent::HeartbeatFailed { attempt, message, retry_in_ms, .. } => {
            format!("server: heartbeat failed (attempt {attempt}, retry in {} s): {message}", retry_in_ms / 1000)
        }
        MembershipEvent::RefreshFailed { attempt, message, .. } => {
            format!("server: token refresh failed (attempt {attempt}): {message}")
        }
        MembershipEvent::WatchFailed { message, .. } => format!("server: event stream failed: {message}"),
        MembershipEvent::Recovered { what } => format!("server: {what} works again"),
        MembershipEvent::TokenRefreshed { .. } => "server: token refreshed".into(),
        MembershipEvent::Removed { reason, .. } => format!("removed from the room: {reason}"),
        MembershipEvent::Warning { message } => format!("warning: {message}"),
        _ => return None,
    };
    Some(line)
}

/// Writes one line to stdout. A closed stdout (the reader went away) is not an error worth
/// failing the session for: the line is dropped.
fn write(line: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        tracing::debug!(%error, "stdout closed; event not printed");
    }
}
