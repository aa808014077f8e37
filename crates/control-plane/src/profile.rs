//! Saved server profiles (DESIGN.md §4: "Profiles live in the user's config dir as a plain file;
//! secrets … live only in the OS keyring").
//!
//! A [`Profile`] is a name plus one backend's `Settings` ([`BackendSettings`], a tagged enum
//! over every adapter). The [`ProfileStore`] keeps them in `<config dir>/parley/profiles.toml`
//! (`PARLEY_CONFIG_DIR` overrides the directory), written atomically (temporary file + rename)
//! with mode 0600 on unix. A file that does not parse is reported and never overwritten.
//! Secrets go to a [`SecretStore`] under `<profile>/<secret-name>`; [`open_plane`] builds the
//! profile's adapter with them.
//!
//! File shape:
//! ```toml
//! [profiles.home]
//! backend = "livekit"
//! url = "wss://livekit.example.org"
//! api_key = "APIxyz"
//! identity = "alice"
//! # insecure = true   # only to let http:// / ws:// reach another machine (see `transport`)
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::adapter::{audioroom, distokoloshe, livekit, lk_jwt, meet, nip29, token_endpoint};
use crate::plane::{BackendKind, ControlPlane};
use crate::secret_store::{SecretKeeper, SecretStore};
use crate::transport::{self, GuardedPlane};
use crate::{PlaneError, Secret};

/// Overrides the directory that holds `profiles.toml` (tests, portable installs).
pub const CONFIG_DIR_ENV: &str = "PARLEY_CONFIG_DIR";
const FILE_NAME: &str = "profiles.toml";

/// One backend's non-secret settings, tagged by `backend` in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum BackendSettings {
    Livekit(livekit::Settings),
    Audioroom(audioroom::Settings),
    Meet(meet::Settings),
    LkJwt(lk_jwt::Settings),
    Nip29(nip29::Settings),
    Distokoloshe(distokoloshe::Settings),
    TokenEndpoint(token_endpoint::Settings),
}

impl BackendSettings {
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSettings::Livekit(_) => BackendKind::Livekit,
            BackendSettings::Audioroom(_) => BackendKind::Audioroom,
            BackendSettings::Meet(_) => BackendKind::Meet,
            BackendSettings::LkJwt(_) => BackendKind::LkJwt,
            BackendSettings::Nip29(_) => BackendKind::Nip29,
            BackendSettings::Distokoloshe(_) => BackendKind::Distokoloshe,
            BackendSettings::TokenEndpoint(_) => BackendKind::TokenEndpoint,
        }
    }

    /// The keyring entry names this backend uses.
    /// The account's user name, for backends that sign in with one (disTokoloshe).
    pub fn account_name(&self) -> Option<&str> {
        match self {
            BackendSettings::Distokoloshe(settings) => Some(&settings.username),
            _ => None,
        }
    }

    pub fn secret_names(&self) -> &'static [&'static str] {
        secret_names(self.kind())
    }

    /// The server the profile points at, for listings.
    pub fn server(&self) -> &str {
        match self {
            BackendSettings::Livekit(settings) => &settings.url,
            BackendSettings::Audioroom(settings) => &settings.url,
            BackendSettings::Meet(settings) => &settings.url,
            BackendSettings::LkJwt(settings) => &settings.homeserver_url,
            BackendSettings::Nip29(settings) => &settings.relay_url,
            BackendSettings::Distokoloshe(settings) => &settings.url,
            BackendSettings::TokenEndpoint(settings) => &settings.url_template,
        }
    }
}

/// The keyring entry names of `kind`'s secrets.
pub fn secret_names(kind: BackendKind) -> &'static [&'static str] {
    match kind {
        BackendKind::Livekit => livekit::SECRET_NAMES,
        BackendKind::Audioroom => audioroom::SECRET_NAMES,
        BackendKind::Meet => meet::SECRET_NAMES,
        BackendKind::LkJwt => lk_jwt::SECRET_NAMES,
        BackendKind::Nip29 => nip29::SECRET_NAMES,
        BackendKind::Distokoloshe => distokoloshe::SECRET_NAMES,
        BackendKind::TokenEndpoint => token_endpoint::SECRET_NAMES,
    }
}

/// The settings field that holds the server address of `kind` (what `--url` fills in).
pub fn server_field(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::LkJwt => "homeserver_url",
        BackendKind::Nip29 => "relay_url",
        BackendKind::TokenEndpoint => "url_template",
        _ => "url",
    }
}

impl BackendSettings {
    /// Settings of `kind` from loose fields (command-line flags by settings field name), with
    /// each backend's defaults for the absent ones.
    ///
    /// Errors: [`PlaneError::InvalidInput`] naming a missing field or one this backend does not
    /// have.
    pub fn from_fields(
        kind: BackendKind,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<BackendSettings, PlaneError> {
        let mut tagged = fields;
        tagged.insert("backend".into(), serde_json::Value::String(kind.as_str().into()));
        serde_json::from_value(serde_json::Value::Object(tagged)).map_err(|error| PlaneError::InvalidInput {
            message: format!("{kind} profile: {}", flag_words(&error.to_string())),
        })
    }
}

/// "missing field `client_id`" → "missing --client-id", "unknown field `group`, expected …" →
/// "--group does not apply, expected …".
fn flag_words(message: &str) -> String {
    let flag = |field: &str| format!("--{}", field.replace('_', "-"));
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        return format!("missing {}{tail}", flag(field));
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        let expected = tail.split_once(", expected").map(|(_, expected)| expected).unwrap_or("");
        let expected: Vec<String> = expected.split('`').skip(1).step_by(2).map(flag).collect();
        return format!("{} does not apply to this backend (it takes {})", flag(field), expected.join(", "));
    }
    message.to_string()
}

/// A saved server.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub settings: BackendSettings,
    /// Cleartext (`http://`, `ws://`) to another machine is allowed for this profile: the user
    /// said so (`--insecure`) and was warned. Loopback never needs it.
    pub insecure: bool,
}

impl Profile {
    pub fn kind(&self) -> BackendKind {
        self.settings.kind()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    profiles: BTreeMap<String, StoredProfile>,
}

/// One profile's table: the backend's settings beside the fields every profile has.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredProfile {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(flatten)]
    settings: BackendSettings,
}

impl StoredProfile {
    fn into_profile(self, name: String) -> Profile {
        Profile { name, settings: self.settings, insecure: self.insecure }
    }
}

/// Checks a profile name: it becomes part of keyring entry names and command lines.
///
/// Errors: [`PlaneError::InvalidInput`] unless it is 1–64 of `A–Z a–z 0–9 . _ -`.
pub fn check_name(name: &str) -> Result<(), PlaneError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(PlaneError::InvalidInput {
            message: format!(
                "{name:?} is not a usable profile name: use 1 to 64 letters, digits, '.', '_' or '-' \
                 (not starting with '.')"
            ),
        })
    }
}

/// The profile file and the operations on it. Blocking file I/O: call from a plain thread or
/// `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    dir: PathBuf,
}

impl ProfileStore {
    /// The store in `PARLEY_CONFIG_DIR`, else `<config dir>/parley`.
    ///
    /// Errors: [`PlaneError::InvalidInput`] when the system has no config directory.
    pub fn open_default() -> Result<ProfileStore, PlaneError> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|dir| !dir.is_empty()) {
            return Ok(ProfileStore::in_dir(dir));
        }
        let base = dirs::config_dir().ok_or_else(|| PlaneError::InvalidInput {
            message: format!("this system has no configuration directory; set {CONFIG_DIR_ENV}"),
        })?;
        Ok(ProfileStore::in_dir(base.join("parley")))
    }

    /// The store in `dir` (which need not exist yet).
    pub fn in_dir(dir: impl Into<PathBuf>) -> ProfileStore {
        ProfileStore { dir: dir.into() }
    }

    /// The profile file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Every profile, sorted by name. A missing file is an empty list.
    ///
    /// Errors: [`PlaneError::InvalidInput`] when the file cannot be read or parsed.
    pub fn list(&self) -> Result<Vec<Profile>, PlaneError> {
        Ok(self.read()?.profiles.into_iter().map(|(name, stored)| stored.into_profile(name)).collect())
    }

    /// The profile named `name`.
    ///
    /// Errors: [`PlaneError::NotFound`] when there is none; file errors as [`ProfileStore::list`].
    pub fn get(&self, name: &str) -> Result<Profile, PlaneError> {
        let mut file = self.read()?;
        let stored = file.profiles.remove(name).ok_or_else(|| not_found(name, &self.path()))?;
        Ok(stored.into_profile(name.to_string()))
    }

    /// Saves `profile` and its `secrets` (keyring names from its backend's `SECRET_NAMES`).
    /// The settings and secrets are checked by building the adapter first; secrets are stored
    /// before the file is written and removed again if writing fails. With `replace`, an
    /// existing profile of that name is overwritten and its secrets no longer named are deleted.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a bad name, unknown secret names, settings the
    /// adapter refuses, an existing profile without `replace`, or file errors;
    /// [`PlaneError::Keyring`] when the secrets cannot be stored.
    pub fn add(
        &self,
        profile: &Profile,
        secrets: &BTreeMap<String, Secret>,
        store: &dyn SecretStore,
        replace: bool,
    ) -> Result<(), PlaneError> {
        check_name(&profile.name)?;
        transport::check_server(profile.settings.server(), profile.insecure)?;
        let names = profile.settings.secret_names();
        if let Some(unknown) = secrets.keys().find(|name| !names.contains(&name.as_str())) {
            return Err(PlaneError::InvalidInput {
                message: format!(
                    "{} profiles have no secret called {unknown:?}; they take: {}",
                    profile.kind(),
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ),
            });
        }
        // An audioroom profile may be saved before it has a key: `parley profile authorize`
        // (or the app's browser flow) obtains one for the saved client id afterwards.
        let awaits_key = profile.kind() == BackendKind::Audioroom && !secrets.contains_key("user-api-key");
        if !awaits_key {
            build_plane(profile, secrets, None)?;
        }
        let mut file = self.read()?;
        let previous = file.profiles.get(&profile.name).map(|stored| stored.settings.clone());
        if previous.is_some() && !replace {
            return Err(PlaneError::InvalidInput {
                message: format!("a profile named {:?} exists already; remove it first or replace it", profile.name),
            });
        }
        let mut stored = Vec::new();
        for (name, value) in secrets {
            if let Err(error) = store.set(&profile.name, name, value) {
                self.forget(&profile.name, &stored, store);
                return Err(error);
            }
            stored.push(name.clone());
        }
        let entry = StoredProfile { insecure: profile.insecure, settings: profile.settings.clone() };
        file.profiles.insert(profile.name.clone(), entry);
        if let Err(error) = self.write(&file) {
            // Secrets that an earlier version of this profile used stay; only the new ones go.
            if previous.is_none() {
                self.forget(&profile.name, &stored, store);
            }
            return Err(error);
        }
        if let Some(previous) = previous {
            let stale: Vec<String> = previous
                .secret_names()
                .iter()
                .filter(|name| !secrets.contains_key(**name))
                .map(|name| name.to_string())
                .collect();
            self.forget(&profile.name, &stale, store);
        }
        Ok(())
    }

    /// Removes the profile `name` and every secret its backend may have stored.
    ///
    /// Errors: [`PlaneError::NotFound`]; file errors; [`PlaneError::Keyring`] when a secret
    /// cannot be deleted (the profile is then kept, so that removing it again retries).
    pub fn remove(&self, name: &str, store: &dyn SecretStore) -> Result<Profile, PlaneError> {
        let mut file = self.read()?;
        let stored = file.profiles.get(name).cloned().ok_or_else(|| not_found(name, &self.path()))?;
        for secret in stored.settings.secret_names() {
            store.delete(name, secret)?;
        }
        file.profiles.remove(name);
        self.write(&file)?;
        Ok(stored.into_profile(name.to_string()))
    }

    fn forget(&self, profile: &str, names: &[String], store: &dyn SecretStore) {
        for name in names {
            if let Err(error) = store.delete(profile, name) {
                tracing::warn!(profile, secret = %name, %error, "could not delete a secret from the keyring");
            }
        }
    }

    fn read(&self) -> Result<ProfileFile, PlaneError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(ProfileFile::default()),
            Err(error) => {
                return Err(PlaneError::InvalidInput { message: format!("cannot read {}: {error}", path.display()) });
            }
        };
        toml::from_str(&text).map_err(|error| PlaneError::InvalidInput {
            message: format!(
                "{} is not a valid profile file ({}); fix it or move it away (Parley leaves it unchanged)",
                path.display(),
                error.message().trim()
            ),
        })
    }

    fn write(&self, file: &ProfileFile) -> Result<(), PlaneError> {
        let path = self.path();
        let failed = |error: std::io::Error| PlaneError::InvalidInput {
            message: format!("cannot write {}: {error}", path.display()),
        };
        let text = toml::to_string_pretty(file)
            .map_err(|error| PlaneError::InvalidInput { message: format!("cannot encode the profiles: {error}") })?;
        create_private_dir(&self.dir).map_err(failed)?;
        let temporary = self.dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let written = write_private(&temporary, text.as_bytes()).and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            if let Err(cleanup) = std::fs::remove_file(&temporary)
                && cleanup.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %temporary.display(), %cleanup, "could not remove a temporary profile file");
            }
            return Err(failed(error));
        }
        Ok(())
    }
}

fn not_found(name: &str, path: &Path) -> PlaneError {
    PlaneError::NotFound {
        what: format!("profile {name:?}"),
        message: format!("see `parley profile list` ({})", path.display()),
    }
}

/// Creates `dir` (and its parents) readable by its owner only (0700 on Unix); an existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Writes `bytes` to a new file readable by its owner only, and flushes it to disk (the rename
/// that follows must not publish an empty file after a crash).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether saving a profile of `kind` can create the account on the server
/// ([`Account::Register`]).
pub fn offers_registration(kind: BackendKind) -> bool {
    kind == BackendKind::Distokoloshe
}

/// What saving a profile learnt of its credentials from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    /// The server accepted them (signed in, or created the account).
    Accepted,
    /// The backend has nothing to check before a join (keys, tokens minted per join).
    NothingToCheck,
    /// The server could not say (unreachable, failing): saved unchecked, with the reason.
    Unchecked { reason: String },
}

/// How [`add_checked`] treats the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account<'a> {
    /// It exists: check the credentials where the backend signs in with them.
    Existing,
    /// Create it first (where the backend offers registration), with this display name.
    Register { display_name: &'a str },
}

/// Saves `profile` as [`ProfileStore::add`] does, after asking its server about the credentials:
/// credentials the server refuses (or an account it will not create) are an error and nothing is
/// saved; a server that cannot be reached saves the profile unchecked and says so. A sign-in token
/// obtained on the way is kept with the profile. Any tokio task (the keyring runs on a blocking
/// thread).
///
/// Errors: the server's refusal ([`PlaneError::Unauthorized`], [`PlaneError::Rejected`], …),
/// [`PlaneError::Unsupported`] for registration where the backend has none, and `add`'s errors.
pub async fn add_checked(
    profiles: &ProfileStore,
    profile: &Profile,
    secrets: &BTreeMap<String, Secret>,
    store: Arc<dyn SecretStore>,
    replace: bool,
    account: Account<'_>,
) -> Result<CredentialCheck, PlaneError> {
    let awaits_key = profile.kind() == BackendKind::Audioroom && !secrets.contains_key("user-api-key");
    let (check, obtained) = if awaits_key {
        (CredentialCheck::NothingToCheck, Vec::new())
    } else {
        // No keeper: the profile is not saved yet; what the check obtains is saved with it below.
        let plane = build_plane(profile, secrets, None)?;
        let check = match account {
            Account::Register { display_name } => {
                plane.register(display_name).await.map(|()| CredentialCheck::Accepted)?
            }
            Account::Existing => match plane.check_credentials().await {
                Ok(true) => CredentialCheck::Accepted,
                Ok(false) => CredentialCheck::NothingToCheck,
                Err(error) if error.is_transient() => CredentialCheck::Unchecked { reason: error.to_string() },
                Err(error) => return Err(error),
            },
        };
        (check, plane.obtained_secrets())
    };
    let mut all = secrets.clone();
    all.extend(obtained.into_iter().map(|(name, value)| (name.to_string(), value)));
    let (profiles, profile) = (profiles.clone(), profile.clone());
    tokio::task::spawn_blocking(move || profiles.add(&profile, &all, store.as_ref(), replace))
        .await
        .map_err(|error| PlaneError::InvalidInput { message: format!("saving the profile stopped: {error}") })??;
    Ok(check)
}

/// Builds the adapter of `profile` with its secrets from `store`. Blocking (keyring).
///
/// Errors: [`PlaneError::Keyring`] when the keyring fails; the adapter's own `new` errors
/// (e.g. [`PlaneError::InvalidInput`] for a secret that is missing).
/// Secrets the adapter obtains on its own (a sign-in token) go back to `store` for the next run.
pub fn open_plane(profile: &Profile, store: Arc<dyn SecretStore>) -> Result<Arc<dyn ControlPlane>, PlaneError> {
    let mut secrets = BTreeMap::new();
    for name in profile.settings.secret_names() {
        if let Some(value) = store.get(&profile.name, name)? {
            secrets.insert(name.to_string(), value);
        }
    }
    build_plane(profile, &secrets, Some(SecretKeeper::new(store, profile.name.clone())))
}

/// The names of `profile`'s secrets that `store` holds.
///
/// Errors: [`PlaneError::Keyring`].
pub fn stored_secrets(profile: &Profile, store: &dyn SecretStore) -> Result<Vec<&'static str>, PlaneError> {
    let mut stored = Vec::new();
    for name in profile.settings.secret_names() {
        if store.get(&profile.name, name)?.is_some() {
            stored.push(*name);
        }
    }
    Ok(stored)
}

/// The profile's adapter, behind the [`GuardedPlane`] that checks where its grants send the call.
fn build_plane(
    profile: &Profile,
    secrets: &BTreeMap<String, Secret>,
    keeper: Option<SecretKeeper>,
) -> Result<Arc<dyn ControlPlane>, PlaneError> {
    let server = profile.settings.server();
    transport::check_server(server, profile.insecure)?;
    let adapter = adapter(&profile.settings, secrets, keeper)?;
    Ok(Arc::new(GuardedPlane::new(adapter, server, profile.insecure)))
}

fn adapter(
    settings: &BackendSettings,
    secrets: &BTreeMap<String, Secret>,
    keeper: Option<SecretKeeper>,
) -> Result<Arc<dyn ControlPlane>, PlaneError> {
    let secret = |name: &str| secrets.get(name).cloned();
    Ok(match settings {
        BackendSettings::Livekit(settings) => {
            let secrets = livekit::Secrets { api_secret: secret("api-secret") };
            Arc::new(livekit::LivekitPlane::new(settings.clone(), secrets)?)
        }
        BackendSettings::Audioroom(settings) => {
            let secrets = audioroom::Secrets { user_api_key: secret("user-api-key") };
            Arc::new(audioroom::AudioroomPlane::new(settings.clone(), secrets)?)
        }
        BackendSettings::Meet(settings) => {
            let secrets = meet::Secrets { session_cookie: secret("session-cookie"), csrf_token: secret("csrf-token") };
            Arc::new(meet::MeetPlane::new(settings.clone(), secrets)?)
        }
        BackendSettings::LkJwt(settings) => {
            let secrets = lk_jwt::Secrets { access_token: secret("matrix-access-token") };
            Arc::new(lk_jwt::LkJwtPlane::new(settings.clone(), secrets)?)
        }
        BackendSettings::Nip29(settings) => {
            let secrets = nip29::Secrets { nostr_key: secret("nostr-key") };
            Arc::new(nip29::Nip29Plane::new(settings.clone(), secrets)?)
        }
        BackendSettings::Distokoloshe(settings) => {
            let secrets = distokoloshe::Secrets { password: secret("password"), app_jwt: secret("app-jwt") };
            let plane = distokoloshe::DistokoloshePlane::new(settings.clone(), secrets)?;
            Arc::new(match keeper {
                Some(keeper) => plane.keeping_secrets(keeper),
                None => plane,
            })
        }
        BackendSettings::TokenEndpoint(settings) => {
            let secrets = token_endpoint::Secrets { header_value: secret("header-value") };
            Arc::new(token_endpoint::TokenEndpointPlane::new(settings.clone(), secrets)?)
        }
    })
}
