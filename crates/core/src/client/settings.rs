//! The app's own settings (`settings.toml` beside `profiles.toml`): sound devices, audio
//! processing, transmit mode, cues, window behaviour, shortcuts, and each profile's
//! per-participant volumes.
//!
//! The file is written atomically (temporary file + rename). A file that does not parse is
//! reported and left alone: the app runs on defaults rather than overwrite what the user wrote.
//!
//! ```toml
//! inputDevice = "pulse:alsa_input.usb-mic"
//! transmitMode = "push_to_talk"
//! pttReleaseDelayMs = 200
//! [shortcuts]
//! pushToTalk = "CommandOrControl+Shift+Space"
//! [volumes.home]
//! alice = 50
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parley_audio::gate::{MAX_RELEASE_DELAY_MS, TransmitMode};
use parley_control_plane::profile::{create_private_dir, write_private};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::{ClientError, ErrorCode};

const FILE_NAME: &str = "settings.toml";
/// The loudest per-participant volume, in percent.
pub const MAX_VOLUME_PERCENT: u32 = 200;

/// When the microphone is transmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TransmitChoice {
    #[default]
    OpenMic,
    VoiceActivity,
    PushToTalk,
}

/// Global shortcuts, in the accelerator syntax of the desktop shell (`CommandOrControl+Shift+P`);
/// `None` leaves the action unbound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(default, rename_all = "camelCase")]
pub struct Shortcuts {
    pub push_to_talk: Option<String>,
    pub toggle_mute: Option<String>,
    pub toggle_deafen: Option<String>,
}

impl Default for Shortcuts {
    fn default() -> Shortcuts {
        Shortcuts {
            push_to_talk: Some("CommandOrControl+Shift+Space".into()),
            toggle_mute: Some("CommandOrControl+Shift+M".into()),
            toggle_deafen: Some("CommandOrControl+Shift+D".into()),
        }
    }
}

/// Everything the settings screen shows. Audio settings apply from the next call on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default, rename_all = "camelCase")]
pub struct AppSettings {
    /// Capture device id (from `list_devices`); `None` is the system default.
    pub input_device: Option<String>,
    /// Playback device id; `None` is the system default.
    pub output_device: Option<String>,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
    pub transmit_mode: TransmitChoice,
    /// Push-to-talk keeps transmitting this long after release (0–2000 ms).
    pub ptt_release_delay_ms: u32,
    /// Voice activity opens the gate above this level (−100 to 0 dBFS).
    pub vad_threshold_dbfs: f32,
    /// Confirmation sounds (joined, muted, push-to-talk on/off, …).
    pub cues: bool,
    pub start_minimized: bool,
    pub launch_at_login: bool,
    pub shortcuts: Shortcuts,
}

impl Default for AppSettings {
    fn default() -> AppSettings {
        AppSettings {
            input_device: None,
            output_device: None,
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain_control: true,
            transmit_mode: TransmitChoice::OpenMic,
            ptt_release_delay_ms: 200,
            vad_threshold_dbfs: -40.0,
            cues: true,
            start_minimized: false,
            launch_at_login: false,
            shortcuts: Shortcuts::default(),
        }
    }
}

impl AppSettings {
    /// Checks ranges before anything is saved.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] naming the value out of range.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.ptt_release_delay_ms > MAX_RELEASE_DELAY_MS {
            return Err(ClientError::new(
                ErrorCode::InvalidInput,
                format!("the push-to-talk release delay must be 0–{MAX_RELEASE_DELAY_MS} ms"),
            ));
        }
        if !(-100.0..=0.0).contains(&self.vad_threshold_dbfs) {
            return Err(ClientError::new(
                ErrorCode::InvalidInput,
                "the voice activity threshold must be between −100 and 0 dBFS",
            ));
        }
        Ok(())
    }

    /// The transmit gate's mode for these settings.
    pub fn transmit_mode(&self) -> TransmitMode {
        match self.transmit_mode {
            TransmitChoice::OpenMic => TransmitMode::OpenMic,
            TransmitChoice::VoiceActivity => TransmitMode::VoiceActivity {
                threshold_dbfs: self.vad_threshold_dbfs,
                hysteresis_db: 6.0,
                hold_ms: 300,
            },
            TransmitChoice::PushToTalk => {
                TransmitMode::PushToTalk { release_delay_ms: self.ptt_release_delay_ms, double_tap_lock: false }
            }
        }
    }
}

/// The file's shape: the settings plus volumes, which the UI sets one at a time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SettingsFile {
    #[serde(flatten)]
    pub settings: AppSettings,
    /// profile → identity → percent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, BTreeMap<String, u32>>,
}

impl SettingsFile {
    /// The saved volume of `identity` on `profile`, 100 when none is saved.
    pub fn volume(&self, profile: &str, identity: &str) -> u32 {
        self.volumes.get(profile).and_then(|volumes| volumes.get(identity)).copied().unwrap_or(100)
    }

    /// Saves a volume; 100 % is the default and is not stored.
    pub fn set_volume(&mut self, profile: &str, identity: &str, percent: u32) {
        let volumes = self.volumes.entry(profile.to_string()).or_default();
        if percent == 100 {
            volumes.remove(identity);
        } else {
            volumes.insert(identity.to_string(), percent);
        }
        if volumes.is_empty() {
            self.volumes.remove(profile);
        }
    }
}

/// Where the settings live. Blocking file I/O: small files, called from command handlers.
#[derive(Debug, Clone)]
pub(crate) struct SettingsStore {
    dir: PathBuf,
}

impl SettingsStore {
    pub fn in_dir(dir: impl Into<PathBuf>) -> SettingsStore {
        SettingsStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The saved settings; defaults when there is no file.
    ///
    /// Errors: [`ErrorCode::Settings`] when the file cannot be read or parsed.
    pub fn load(&self) -> Result<SettingsFile, ClientError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(SettingsFile::default()),
            Err(error) => return Err(settings_error(&path, &error.to_string())),
        };
        let file: SettingsFile =
            toml::from_str(&text).map_err(|error| settings_error(&path, error.message().trim()))?;
        Ok(file)
    }

    /// Writes the settings atomically, readable by their owner only (they list whom the user
    /// talks to: per-person volumes), in a directory that is created private too.
    ///
    /// Errors: [`ErrorCode::Settings`].
    pub fn save(&self, file: &SettingsFile) -> Result<(), ClientError> {
        let path = self.path();
        let text = toml::to_string_pretty(file).map_err(|error| settings_error(&path, &error.to_string()))?;
        create_private_dir(&self.dir).map_err(|error| settings_error(&self.dir, &error.to_string()))?;
        let temporary = self.dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let written = write_private(&temporary, text.as_bytes()).and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            if let Err(cleanup) = std::fs::remove_file(&temporary)
                && cleanup.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %temporary.display(), %cleanup, "could not remove a temporary settings file");
            }
            return Err(settings_error(&path, &error.to_string()));
        }
        Ok(())
    }
}

fn settings_error(path: &Path, detail: &str) -> ClientError {
    ClientError::new(ErrorCode::Settings, format!("the settings file {} cannot be used: {detail}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_settings_file_and_a_directory_it_creates_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SettingsStore::in_dir(dir.path().join("config").join("parley"));
        store.save(&SettingsFile::default()).expect("save");
        let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600, "the file lists whom the user talks to");
        assert_eq!(mode(&dir.path().join("config").join("parley")), 0o700, "the directory it created");
    }

    #[test]
    fn settings_round_trip_through_the_file_with_volumes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SettingsStore::in_dir(dir.path().join("parley"));
        assert_eq!(
            store.load().expect("no file is defaults"),
            SettingsFile::default(),
            "a missing file means defaults"
        );
        let mut file = SettingsFile::default();
        file.settings.transmit_mode = TransmitChoice::PushToTalk;
        file.settings.input_device = Some("mic-1".into());
        file.set_volume("home", "alice", 50);
        file.set_volume("home", "bob", 100);
        store.save(&file).expect("saving settings");
        let loaded = store.load().expect("loading settings");
        assert_eq!(loaded, file, "settings should survive a save and load");
        assert_eq!(loaded.volume("home", "alice"), 50, "alice's saved volume should be 50 %");
        assert_eq!(loaded.volume("home", "bob"), 100, "an unsaved volume should be 100 %");
        assert!(!loaded.volumes["home"].contains_key("bob"), "100 % should not be stored");
    }

    #[test]
    fn a_broken_settings_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SettingsStore::in_dir(dir.path());
        std::fs::write(store.path(), "transmit_mode = [").expect("writing a broken file");
        let error = store.load().expect_err("a broken file should not load");
        assert_eq!(error.code, ErrorCode::Settings, "a broken file should be a settings error: {error}");
        assert_eq!(std::fs::read_to_string(store.path()).expect("file"), "transmit_mode = [", "the file is untouched");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let settings = AppSettings { ptt_release_delay_ms: 2001, ..AppSettings::default() };
        assert_eq!(
            settings.validate().map_err(|error| error.code),
            Err(ErrorCode::InvalidInput),
            "2001 ms is too long"
        );
        let settings = AppSettings { vad_threshold_dbfs: 3.0, ..AppSettings::default() };
        assert_eq!(
            settings.validate().map_err(|error| error.code),
            Err(ErrorCode::InvalidInput),
            "+3 dBFS is not a level"
        );
    }
}
