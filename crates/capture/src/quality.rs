//! The share qualities a user picks: how large a shared picture may be and how often it is sent,
//! and what it keeps when bandwidth is short ([`Priority`]).

use std::str::FromStr;

/// A share quality: a size bound and a frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    /// At most 1280 × 720, 30 fps: what everyone can receive.
    #[default]
    P720Fps30,
    /// At most 1920 × 1080, 30 fps.
    P1080Fps30,
    /// At most 1920 × 1080, 60 fps.
    P1080Fps60,
    /// The target's own size, 30 fps.
    Source,
}

impl Quality {
    pub const ALL: [Quality; 4] = [Quality::P720Fps30, Quality::P1080Fps30, Quality::P1080Fps60, Quality::Source];

    /// The largest picture sent, or `None` for the target's own size.
    pub fn bounds(self) -> Option<(u32, u32)> {
        match self {
            Quality::P720Fps30 => Some((1280, 720)),
            Quality::P1080Fps30 | Quality::P1080Fps60 => Some((1920, 1080)),
            Quality::Source => None,
        }
    }

    /// Frames captured and sent per second.
    pub fn fps(self) -> u32 {
        match self {
            Quality::P1080Fps60 => 60,
            _ => 30,
        }
    }

    /// The name users type (`720p30`, …).
    pub fn code(self) -> &'static str {
        match self {
            Quality::P720Fps30 => "720p30",
            Quality::P1080Fps30 => "1080p30",
            Quality::P1080Fps60 => "1080p60",
            Quality::Source => "source",
        }
    }

    /// The size a `width` × `height` target is sent at: scaled down to fit the bounds keeping
    /// its aspect, never up, with even sides (what the encoder's 4:2:0 pictures want).
    pub fn fit(self, width: u32, height: u32) -> (u32, u32) {
        let (width, height) = (width.max(1), height.max(1));
        let (fitted_width, fitted_height) = match self.bounds() {
            Some((max_width, max_height)) if width > max_width || height > max_height => {
                let ratio = f64::min(max_width as f64 / width as f64, max_height as f64 / height as f64);
                ((width as f64 * ratio).round() as u32, (height as f64 * ratio).round() as u32)
            }
            _ => (width, height),
        };
        let even = |side: u32| if side > 1 { side & !1 } else { side.max(1) };
        (even(fitted_width), even(fitted_height))
    }
}

/// What a share keeps when bandwidth is short: its sharpness or its smoothness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Text stays sharp: the resolution is kept and frames are dropped instead (slides, code,
    /// documents; what most shares are).
    #[default]
    Detail,
    /// Motion stays smooth: the frame rate is kept and the resolution lowered instead (video,
    /// games).
    Motion,
}

impl Priority {
    pub const ALL: [Priority; 2] = [Priority::Detail, Priority::Motion];

    /// The name users type (`detail`, `motion`).
    pub fn code(self) -> &'static str {
        match self {
            Priority::Detail => "detail",
            Priority::Motion => "motion",
        }
    }
}

/// The choices a user types by name (`720p30`, `detail`): parsed case-insensitively from their
/// codes, shown as them.
macro_rules! named_choice {
    ($choice:ident, $what:literal, $names:literal) => {
        impl FromStr for $choice {
            type Err = String;

            fn from_str(text: &str) -> Result<$choice, String> {
                $choice::ALL
                    .into_iter()
                    .find(|choice| choice.code().eq_ignore_ascii_case(text.trim()))
                    .ok_or_else(|| format!(concat!("unknown share ", $what, " {:?} (", $names, ")"), text))
            }
        }

        impl std::fmt::Display for $choice {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.code())
            }
        }
    };
}

named_choice!(Quality, "quality", "720p30, 1080p30, 1080p60 or source");
named_choice!(Priority, "priority", "detail or motion");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_fit_the_bounds_keeping_aspect_and_never_grow() {
        assert_eq!(Quality::P720Fps30.fit(1920, 1080), (1280, 720));
        assert_eq!(Quality::P720Fps30.fit(2560, 1600), (1152, 720));
        assert_eq!(Quality::P720Fps30.fit(800, 600), (800, 600), "never enlarged");
        assert_eq!(Quality::P1080Fps60.fit(3840, 2160), (1920, 1080));
        assert_eq!(Quality::Source.fit(3841, 2161), (3840, 2160), "even sides");
        assert_eq!("1080P60".parse::<Quality>(), Ok(Quality::P1080Fps60));
        assert!("4k".parse::<Quality>().is_err());
        assert_eq!("Motion".parse::<Priority>(), Ok(Priority::Motion));
        assert_eq!(Priority::default(), Priority::Detail, "text stays sharp unless asked");
        assert_eq!("fast".parse::<Priority>(), Err("unknown share priority \"fast\" (detail or motion)".into()));
        assert_eq!(Priority::Motion.to_string(), "motion");
    }
}
