//! Screen share in the client: what can be shared (each screen and window, with a thumbnail),
//! our own share and the state the window shows while we share, and the [`Client`] methods
//! that share, watch, pop out and fit others' shares.

use base64::Engine as _;
use parley_capture::{CaptureError, Target, TargetKind};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::call::CallCommand;
use super::error::{ClientError, ErrorCode};
use super::frames::FrameShelf;
use super::{Client, blocking};
use crate::control::Control;

/// A thumbnail's width at most (its height follows the target's aspect).
const THUMBNAIL_WIDTH: u32 = 320;
/// Thumbnails are small and only looked at once: a lower JPEG quality is fine.
const THUMBNAIL_QUALITY: u8 = 70;

/// Where a share's viewer shows the picture in its window: CSS pixels from the top left of the
/// window's page (the shell paints it there where it paints pictures itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ShareRect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl ShareRect {
    /// Whether it covers any pixel.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

/// A screen or window the user may share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ShareTarget {
    /// What `start_share` takes: `screen:<index>` or `window:<id>`.
    pub id: String,
    /// `screen` or `window`.
    pub kind: String,
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// A small picture of it now (`data:image/jpeg;base64,…`), when it could be taken.
    pub thumbnail: Option<String>,
}

/// An application playing sound now, whose sound may go with a share (a PulseAudio or PipeWire
/// playback stream, a Windows process, a macOS application; never Parley's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ShareSound {
    /// What `start_share` takes as its `sound`: `#<stream>`.
    pub id: String,
    /// The application's name.
    pub app: String,
    /// What it plays, when it says (a song's or a tab's title); empty otherwise.
    pub title: String,
}

/// Our share as the window shows it (the tray and title say "sharing" too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LocalShare {
    /// What is shared, as people read it (`window "Editor" (1280x720)`).
    pub target: String,
    /// `720p30`, `1080p30`, `1080p60` or `source`.
    pub quality: String,
    /// `detail` (text stays sharp) or `motion` (motion stays smooth).
    pub priority: String,
    /// The size it is sent at.
    pub width: u32,
    pub height: u32,
    /// The application whose sound goes with the picture, while it plays.
    pub sound: Option<String>,
}

/// The id of `target` in [`ShareTarget::id`].
fn target_id(target: &Target) -> String {
    match target.kind {
        TargetKind::Screen => format!("screen:{}", target.id),
        TargetKind::Window => format!("window:{:#x}", target.id),
    }
}

/// Every screen and named window, with thumbnails. Blocking (display round trips).
///
/// Errors: no display, or capture unsupported here ([`ErrorCode::Unsupported`]).
pub(crate) fn list_targets() -> Result<Vec<ShareTarget>, ClientError> {
    let targets = parley_capture::list_targets().map_err(capture_error)?;
    // Where the desktop's dialog picks (Wayland), a thumbnail would open that dialog.
    let thumbnails = !parley_capture::desktop_picks();
    Ok(targets
        .iter()
        .map(|target| ShareTarget {
            id: target_id(target),
            kind: target.kind.code().to_string(),
            name: target.name.clone(),
            width: target.width,
            height: target.height,
            thumbnail: if thumbnails { thumbnail(target) } else { None },
        })
        .collect())
}

/// The applications playing sound now, but Parley. Blocking (one sound server round trip).
///
/// Errors: [`ErrorCode::Unsupported`] where an application's sound cannot be recorded (too old
/// a system, or the permission refused); [`ErrorCode::Unreachable`] when no sound server answers.
pub(crate) fn list_sounds() -> Result<Vec<ShareSound>, ClientError> {
    use parley_audio::app_sound::{self, AppSoundError};
    let sounds = app_sound::list().map_err(|error| {
        let code = match error {
            AppSoundError::Unsupported(_) | AppSoundError::Refused(_) => ErrorCode::Unsupported,
            _ => ErrorCode::Unreachable,
        };
        ClientError::new(code, format!("application sounds: {error}"))
    })?;
    Ok(sounds
        .into_iter()
        .map(|sound| ShareSound {
            id: format!("#{}", sound.index),
            title: if sound.title == sound.app { String::new() } else { sound.title },
            app: sound.app,
        })
        .collect())
}

/// The target `id` names, as it is now. Blocking.
///
/// Errors: [`ErrorCode::NotFound`] for a window that closed (or an id that never was).
pub(crate) fn find_target(id: &str) -> Result<Target, ClientError> {
    let targets = parley_capture::list_targets().map_err(capture_error)?;
    targets.into_iter().find(|target| target_id(target) == id).ok_or_else(|| {
        ClientError::new(ErrorCode::NotFound, format!("{id} is no longer there to share (closed?); pick another"))
    })
}

fn capture_error(error: CaptureError) -> ClientError {
    let code = match error {
        CaptureError::Unsupported(_) => ErrorCode::Unsupported,
        CaptureError::TargetGone(_) | CaptureError::NotFound(_) => ErrorCode::NotFound,
        CaptureError::Refused(_) => ErrorCode::Forbidden,
        _ => ErrorCode::Unreachable,
    };
    ClientError::new(code, format!("screen capture: {error}"))
}

/// A small JPEG of `target` as a data URL; `None` when it cannot be captured now.
fn thumbnail(target: &Target) -> Option<String> {
    let mut capturer = parley_capture::open(target).ok()?;
    let mut frame = parley_capture::Frame::default();
    capturer.capture(&mut frame).ok()?;
    if frame.width == 0 || frame.height == 0 {
        return None;
    }
    let width = frame.width.min(THUMBNAIL_WIDTH);
    let height = (u64::from(frame.height) * u64::from(width) / u64::from(frame.width)).max(1) as u32;
    let mut small = vec![0; width as usize * height as usize * 4];
    parley_capture::scale::scale_bgra(&frame.data, frame.width, frame.height, &mut small, width, height);
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, THUMBNAIL_QUALITY)
        .encode(&small, u16::try_from(width).ok()?, u16::try_from(height).ok()?, jpeg_encoder::ColorType::Bgra)
        .ok()?;
    Some(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg)))
}

impl Client {
    /// The screens and windows there are to share, with thumbnails.
    ///
    /// Errors: [`ErrorCode::Unsupported`] where capture is not available (no display).
    pub async fn list_share_targets(&self) -> Result<Vec<ShareTarget>, ClientError> {
        blocking(list_targets).await
    }

    /// The applications playing sound now, whose sound may go with a share.
    ///
    /// Errors: [`ErrorCode::Unsupported`] where that cannot be done (too old a system, or the
    /// permission refused);
    /// [`ErrorCode::Unreachable`] when no sound server answers.
    pub async fn list_share_sounds(&self) -> Result<Vec<ShareSound>, ClientError> {
        blocking(list_sounds).await
    }

    /// Shares the screen or window `target` (a [`ShareTarget::id`]) at `quality` (`720p30`,
    /// `1080p30`, `1080p60`, `source`) in the call, keeping what `priority` says when bandwidth
    /// is short (`detail`: the resolution; `motion`: the frame rate), with the sound of the
    /// application `sound` names (a [`ShareSound::id`]) when given. `CallState::sharing` shows
    /// it while it runs.
    ///
    /// Errors: [`ErrorCode::NotInCall`]; [`ErrorCode::InvalidInput`] (unknown quality or
    /// priority, already sharing); [`ErrorCode::NotFound`] (the window closed); [`ErrorCode::Forbidden`] (the
    /// room does not allow screen share); capture and engine errors. The call goes on. A sound
    /// that cannot be recorded (the application stopped playing) leaves the picture shared
    /// alone, with a warning.
    pub async fn start_share(
        &self,
        target: &str,
        quality: &str,
        priority: &str,
        sound: Option<&str>,
    ) -> Result<(), ClientError> {
        let invalid = |message| ClientError::new(ErrorCode::InvalidInput, message);
        let quality = quality.parse::<parley_capture::Quality>().map_err(invalid)?;
        let priority = priority.parse::<parley_capture::Priority>().map_err(invalid)?;
        let id = target.to_string();
        let target = blocking(move || find_target(&id)).await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sound = sound.map(str::to_string);
        self.send(CallCommand::Share { target, quality, priority, sound, reply }).await?;
        answer.await.unwrap_or_else(|_| Err(ClientError::not_in_call()))
    }

    /// Stops our screen share (nothing to do when there is none).
    pub async fn stop_share(&self) -> Result<(), ClientError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(CallCommand::StopShare { reply }).await?;
        answer.await.unwrap_or_else(|_| Err(ClientError::not_in_call()))
    }

    /// Shows `identity`'s watched share in a window of its own (`CallState::popped_out`), or back
    /// in the room view. Returns whether their share is watched (a pop-out needs one).
    pub fn set_popped_out(&self, identity: &str, popped: bool) -> bool {
        let mut watched = false;
        self.inner.state.send_if_modified(|state| {
            let Some(call) = state.call.as_mut() else { return false };
            watched = call.watching.iter().any(|candidate| candidate == identity);
            let shown = call.popped_out.iter().any(|candidate| candidate == identity);
            match (popped && watched, shown) {
                (true, false) => call.popped_out.push(identity.to_string()),
                (false, true) => call.popped_out.retain(|candidate| candidate != identity),
                _ => return false,
            }
            true
        });
        watched
    }

    /// The latest pictures of the shares being watched, for the shell to serve to the viewers.
    pub fn frames(&self) -> FrameShelf {
        self.inner.frames.clone()
    }

    /// Opens a viewer on `identity`'s screen share: their video is received and its pictures
    /// land on [`Client::frames`]; `CallState::watching` lists them. Several at once.
    ///
    /// Errors: [`ErrorCode::NotInCall`]; [`ErrorCode::InvalidInput`] when they do not share.
    pub async fn watch_share(&self, identity: &str) -> Result<(), ClientError> {
        let sharing = match &self.inner.state.borrow().call {
            Some(call) => {
                call.participants.iter().any(|participant| participant.identity == identity && participant.sharing)
            }
            None => return Err(ClientError::not_in_call()),
        };
        if !sharing {
            return Err(ClientError::new(ErrorCode::InvalidInput, format!("{identity} is not sharing their screen")));
        }
        self.send_control(Control::Watch { identity: identity.to_string() }).await
    }

    /// Closes the viewer on `identity`'s share: the server stops sending it.
    pub async fn unwatch_share(&self, identity: &str) -> Result<(), ClientError> {
        self.send_control(Control::Unwatch { identity: identity.to_string() }).await
    }

    /// The viewer of `identity`'s share is `width`×`height` device pixels: receive the layer
    /// that fits, and hand it pictures no larger than that.
    pub async fn fit_share(&self, identity: &str, width: u32, height: u32) -> Result<(), ClientError> {
        self.inner.frames.fit(identity, width, height);
        self.send(CallCommand::Fit { identity: identity.to_string(), width, height }).await
    }

    /// A viewer that the shell paints itself shows `identity`'s share at `rect`, or shows it no
    /// more (`None` or an empty rect: closed, or hidden under a menu): its pictures are
    /// converted and handed to the shell's painter only while it shows. The shell places its
    /// surface; the core only needs to know whether anyone looks.
    pub fn place_share(&self, identity: &str, rect: Option<ShareRect>) {
        self.inner.frames.place(identity, rect.is_some_and(|rect| !rect.is_empty()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_by_kind_and_id() {
        let screen = Target { kind: TargetKind::Screen, id: 1, name: "screen 1".into(), width: 1920, height: 1080 };
        let window =
            Target { kind: TargetKind::Window, id: 0x1a0_0007, name: "Editor".into(), width: 800, height: 600 };
        assert_eq!(target_id(&screen), "screen:1");
        assert_eq!(target_id(&window), "window:0x1a00007");
    }

    #[test]
    fn capture_failures_keep_their_meaning() {
        assert_eq!(capture_error(CaptureError::TargetGone("window".into())).code, ErrorCode::NotFound);
        assert_eq!(capture_error(CaptureError::Unsupported("wayland".into())).code, ErrorCode::Unsupported);
    }
}
