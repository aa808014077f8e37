//! Commands a running session accepts from any front end: the CLI's stdin and local socket
//! today, global shortcuts, the tray and the window later. One line of text per command, so
//! that any compositor or script can bind a key to `parley ctl ptt-start`.

use std::fmt;
use std::str::FromStr;

/// One command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    PttStart,
    PttStop,
    Mute,
    Unmute,
    ToggleMute,
    Deafen,
    Undeafen,
    ToggleDeafen,
    /// Playback volume of one participant, 0–200 %.
    Volume {
        identity: String,
        percent: u32,
    },
    /// Volume of everything played, 0–200 %.
    OutputVolume {
        percent: u32,
    },
    /// Silence one participant for us only.
    LocalMute {
        identity: String,
    },
    LocalUnmute {
        identity: String,
    },
    /// Play a participant whose audio arrives unencrypted in an encrypted call (held back until
    /// the user chooses this).
    AllowUnencrypted {
        identity: String,
    },
    /// Watch a participant's screen share (now, or when they share).
    Watch {
        identity: String,
    },
    /// Stop watching a participant's screen share (the video is no longer received).
    Unwatch {
        identity: String,
    },
}

/// The commands and their syntax, for help texts and error messages.
pub const CONTROL_SYNTAX: &str = "ptt-start | ptt-stop | mute | unmute | toggle-mute | deafen | undeafen | \
toggle-deafen | volume <identity> <0-200> | output-volume <0-200> | local-mute <identity> | local-unmute <identity> | allow-unencrypted <identity> | watch <identity> | unwatch <identity>";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command {line:?}; commands: {CONTROL_SYNTAX}")]
pub struct ParseControlError {
    line: String,
}

impl FromStr for Control {
    type Err = ParseControlError;

    fn from_str(line: &str) -> Result<Control, ParseControlError> {
        let error = || ParseControlError { line: line.trim().to_string() };
        let words: Vec<&str> = line.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["ptt-start"] => Control::PttStart,
            ["ptt-stop"] => Control::PttStop,
            ["mute"] => Control::Mute,
            ["unmute"] => Control::Unmute,
            ["toggle-mute"] => Control::ToggleMute,
            ["deafen"] => Control::Deafen,
            ["undeafen"] => Control::Undeafen,
            ["toggle-deafen"] => Control::ToggleDeafen,
            ["volume", identity, percent] => {
                let percent: u32 = percent.trim_end_matches('%').parse().map_err(|_| error())?;
                if percent > 200 {
                    return Err(error());
                }
                Control::Volume { identity: identity.to_string(), percent }
            }
            ["output-volume", percent] => {
                let percent: u32 = percent.trim_end_matches('%').parse().map_err(|_| error())?;
                if percent > 200 {
                    return Err(error());
                }
                Control::OutputVolume { percent }
            }
            ["local-mute", identity] => Control::LocalMute { identity: identity.to_string() },
            ["local-unmute", identity] => Control::LocalUnmute { identity: identity.to_string() },
            ["allow-unencrypted", identity] => Control::AllowUnencrypted { identity: identity.to_string() },
            ["watch", identity] => Control::Watch { identity: identity.to_string() },
            ["unwatch", identity] => Control::Unwatch { identity: identity.to_string() },
            _ => return Err(error()),
        })
    }
}

impl fmt::Display for Control {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::PttStart => write!(formatter, "ptt-start"),
            Control::PttStop => write!(formatter, "ptt-stop"),
            Control::Mute => write!(formatter, "mute"),
            Control::Unmute => write!(formatter, "unmute"),
            Control::ToggleMute => write!(formatter, "toggle-mute"),
            Control::Deafen => write!(formatter, "deafen"),
            Control::Undeafen => write!(formatter, "undeafen"),
            Control::ToggleDeafen => write!(formatter, "toggle-deafen"),
            Control::Volume { identity, percent } => write!(formatter, "volume {identity} {percent}"),
            Control::OutputVolume { percent } => write!(formatter, "output-volume {percent}"),
            Control::LocalMute { identity } => write!(formatter, "local-mute {identity}"),
            Control::LocalUnmute { identity } => write!(formatter, "local-unmute {identity}"),
            Control::AllowUnencrypted { identity } => write!(formatter, "allow-unencrypted {identity}"),
            Control::Watch { identity } => write!(formatter, "watch {identity}"),
            Control::Unwatch { identity } => write!(formatter, "unwatch {identity}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_prints_back() {
        for line in [
            "ptt-start",
            "ptt-stop",
            "mute",
            "unmute",
            "toggle-mute",
            "deafen",
            "undeafen",
            "toggle-deafen",
            "volume alice 150",
            "output-volume 80",
            "local-mute bob",
            "local-unmute bob",
            "allow-unencrypted carol",
            "watch dave",
            "unwatch dave",
        ] {
            let control: Control = line.parse().unwrap_or_else(|error| panic!("{line}: {error}"));
            assert_eq!(control.to_string(), line);
        }
    }

    #[test]
    fn bad_commands_are_refused_with_the_syntax() {
        for line in ["", "volume alice", "volume alice 201", "volume alice loud", "shout", "mute now", "watch"] {
            let error = line.parse::<Control>().expect_err(line);
            assert!(error.to_string().contains("ptt-start"), "{error}");
        }
        assert_eq!(
            "volume alice 50%".parse::<Control>(),
            Ok(Control::Volume { identity: "alice".into(), percent: 50 })
        );
    }
}
