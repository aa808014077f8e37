//! `parley profile add|list|show|remove|authorize`, `parley rooms`, and joining through a profile
//! (`parley join --profile P --room R`): the CLI face of `parley_control_plane::profile` and
//! `parley_core::membership`.
//!
//! Secrets never come from the command line (other users can read it): `--secret-stdin` reads
//! them from standard input, otherwise they are asked for without echo. They go to the OS
//! keyring; no output, `--json` or error ever shows one.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use parley_control_plane::profile::{self as profiles, BackendSettings, Profile, ProfileStore};
use parley_control_plane::secret_store::{KeyringStore, SecretStore as _};
use parley_control_plane::{BackendKind, ControlPlane, JoinGrant, PlaneError, Secret};
use parley_core::client::ErrorCode;

use crate::exit::{ExitKind, Failure, classify, fail, fail_as};

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Save a server profile; its secrets go to the OS keyring (from stdin with
    /// --secret-stdin, otherwise asked for without echo).
    Add(Box<AddArgs>),
    /// List the saved profiles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a profile's settings and which secrets the keyring holds (never their values).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile and its secrets.
    Remove { name: String },
    /// audioroom: get a User API key from the forum — approve Parley in the browser (or paste
    /// the text the forum shows) — and store it in the keyring.
    Authorize(AuthorizeArgs),
}

#[derive(Args)]
pub struct AuthorizeArgs {
    /// The audioroom profile to authorize.
    name: String,
    /// Catch the forum's redirect on this loopback port (0: any free port). The forum's admin
    /// must allow `http://127.0.0.1:<port>/auth_redirect` in `allowed_user_api_auth_redirects`.
    #[arg(long, default_value_t = 0, conflicts_with = "paste")]
    port: u16,
    /// No redirect: the forum shows a text to copy, which is read from stdin.
    #[arg(long)]
    paste: bool,
    /// Print the approval URL only; do not open a browser.
    #[arg(long)]
    no_browser: bool,
    /// How long to wait for the approval, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

#[derive(Args)]
pub struct AddArgs {
    /// The profile's name (letters, digits, '.', '_', '-').
    name: String,
    /// livekit, audioroom, meet, lk-jwt, nip29, distokoloshe, token-endpoint.
    #[arg(long, value_parser = parse_backend)]
    backend: BackendKind,
    /// The server: a LiveKit URL (ws:// or wss://), a forum/app URL, a Matrix homeserver, a
    /// relay, or (token-endpoint) a URL template with {room}, {identity} and {name}.
    #[arg(long)]
    url: String,
    /// livekit, token-endpoint: the identity to join as.
    #[arg(long)]
    identity: Option<String>,
    /// The name others see (livekit, token-endpoint: default the identity; meet: required).
    #[arg(long)]
    display_name: Option<String>,
    /// livekit: the API key (public; the API secret goes to the keyring).
    #[arg(long)]
    api_key: Option<String>,
    /// token-endpoint: GET (default) or POST.
    #[arg(long)]
    method: Option<String>,
    /// token-endpoint: JSON body for POST, with the same placeholders.
    #[arg(long)]
    body_template: Option<String>,
    /// token-endpoint: the header that carries the secret (e.g. Authorization).
    #[arg(long)]
    header_name: Option<String>,
    /// token-endpoint: JSON pointer to the token in the answer (default /token).
    #[arg(long)]
    token_pointer: Option<String>,
    /// token-endpoint: JSON pointer to the LiveKit URL in the answer (default /url).
    #[arg(long)]
    url_pointer: Option<String>,
    /// token-endpoint: the LiveKit URL when the answer has none.
    #[arg(long)]
    livekit_url: Option<String>,
    /// audioroom: the User API key's client id.
    #[arg(long)]
    client_id: Option<String>,
    /// audioroom: heartbeat period in seconds.
    #[arg(long)]
    heartbeat_seconds: Option<u32>,
    /// meet: lobby poll interval in ms.
    #[arg(long)]
    lobby_poll_ms: Option<u64>,
    /// meet: how long to wait in the lobby, in ms.
    #[arg(long)]
    lobby_wait_ms: Option<u64>,
    /// lk-jwt: the Matrix user id (@alice:example.org).
    #[arg(long)]
    user_id: Option<String>,
    /// lk-jwt: the Matrix device id.
    #[arg(long)]
    device_id: Option<String>,
    /// lk-jwt: the Matrix room joined when no room is given.
    #[arg(long)]
    room_id: Option<String>,
    /// lk-jwt: the MatrixRTC focus (lk-jwt-service) URL, when .well-known has none.
    #[arg(long)]
    service_url: Option<String>,
    /// nip29: the group joined when no room is given.
    #[arg(long)]
    group: Option<String>,
    /// distokoloshe: the account's user name.
    #[arg(long)]
    username: Option<String>,
    /// Read secrets from stdin: `name=value` lines, or just the value when the backend has one.
    #[arg(long)]
    secret_stdin: bool,
    /// Overwrite a profile of the same name.
    #[arg(long)]
    replace: bool,
    /// distokoloshe: create the account on the server (user name, password, --display-name).
    #[arg(long)]
    register: bool,
    /// Allow an unencrypted server (http:// or ws://) on another machine: anyone on the network
    /// can then read your credentials and join tokens and listen in. Never needed for
    /// 127.0.0.1 or localhost.
    #[arg(long)]
    insecure: bool,
}

#[derive(Args)]
pub struct RoomsArgs {
    /// The saved profile to ask.
    #[arg(long)]
    profile: String,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

fn parse_backend(text: &str) -> Result<BackendKind, String> {
    text.parse().map_err(|error: PlaneError| error.to_string())
}

pub fn run(command: ProfileCommand) -> Result<(), Failure> {
    let store = ProfileStore::open_default().map_err(|error| classify(error, "finding the profile file"))?;
    match command {
        ProfileCommand::Add(args) => add(&store, *args),
        ProfileCommand::List { json } => list(&store, json),
        ProfileCommand::Show { name, json } => show(&store, &name, json),
        ProfileCommand::Authorize(args) => authorize(&store, &args),
        ProfileCommand::Remove { name } => {
            let removed =
                store.remove(&name, &KeyringStore).map_err(|error| classify(error, "removing the profile"))?;
            println!("removed profile {} and its secrets", removed.name);
            Ok(())
        }
    }
}

fn add(store: &ProfileStore, args: AddArgs) -> Result<(), Failure> {
    let settings = settings(&args).map_err(|error| classify(error, "checking the profile"))?;
    let profile = Profile { name: args.name.clone(), settings, insecure: args.insecure };
    profiles::check_name(&profile.name).map_err(|error| classify(error, "checking the profile"))?;
    let names = profile.settings.secret_names();
    let secrets =
        if args.secret_stdin { secrets_from_stdin(names)? } else { secrets_from_prompt(&profile.name, names)? };
    let display_name = args.display_name.clone().or_else(|| args.username.clone()).unwrap_or_default();
    let account = if args.register {
        profiles::Account::Register { display_name: &display_name }
    } else {
        profiles::Account::Existing
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    // The server is asked first: credentials it refuses are not saved.
    let check = runtime
        .block_on(profiles::add_checked(store, &profile, &secrets, Arc::new(KeyringStore), args.replace, account))
        .map_err(|error| classify(error, if args.register { "creating the account" } else { "saving the profile" }))?;
    let stored = profiles::stored_secrets(&profile, &KeyringStore).unwrap_or_default();
    println!(
        "saved profile {} ({}) in {}{}",
        profile.name,
        profile.kind(),
        store.path().display(),
        if stored.is_empty() { String::new() } else { format!("; secrets in the keyring: {}", stored.join(", ")) }
    );
    if profile.insecure {
        eprintln!(
            "parley: warning: profile {} allows unencrypted connections: anyone on the network can read its tokens",
            profile.name
        );
    }
    match check {
        profiles::CredentialCheck::Accepted if args.register => println!("created the account and signed in"),
        profiles::CredentialCheck::Accepted => println!("the server accepted the credentials"),
        profiles::CredentialCheck::Unchecked { reason } => {
            eprintln!("parley: warning: saved without checking the credentials: {reason}");
        }
        profiles::CredentialCheck::NothingToCheck => {}
    }
    Ok(())
}

/// Runs Discourse's User API key flow for an audioroom profile and stores the key.
fn authorize(store: &ProfileStore, args: &AuthorizeArgs) -> Result<(), Failure> {
    use parley_control_plane::adapter::audioroom::user_api_key::{KeyRequest, LoopbackListener};
    let profile = store.get(&args.name).map_err(|error| classify(error, "reading the profile"))?;
    let BackendSettings::Audioroom(settings) = &profile.settings else {
        return Err(fail_as(
            ErrorCode::InvalidInput,
            anyhow::anyhow!(
                "profile {} is a {} profile; only audioroom profiles get a user API key",
                profile.name,
                profile.kind()
            ),
        ));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    let key = runtime.block_on(async {
        let listener = if args.paste { None } else { Some(LoopbackListener::bind(args.port).await?) };
        let redirect = listener.as_ref().map(|listener| listener.redirect_url().to_string());
        let client_id = settings.client_id.clone();
        // RSA key generation takes up to a second of CPU: not on the runtime's thread.
        let request =
            tokio::task::spawn_blocking(move || KeyRequest::new(&client_id, redirect.as_deref())).await.map_err(
                |error| PlaneError::InvalidInput { message: format!("generating the key pair failed: {error}") },
            )??;
        let url = request.authorize_url(&settings.url)?;
        println!("approve Parley on the forum: {url}");
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        if !args.no_browser
            && let Err(error) = opener::open_browser(url.as_str())
        {
            eprintln!("cannot open a browser ({error}); open the address above yourself");
        }
        let timeout = std::time::Duration::from_secs(args.timeout_secs);
        match listener {
            Some(listener) => request.receive(listener, timeout).await,
            None => {
                if std::io::stdin().is_terminal() {
                    eprintln!("paste the text the forum shows, then press Ctrl-D:");
                }
                let pasted = tokio::task::spawn_blocking(|| {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).map(|_| text)
                })
                .await
                .map_err(|error| PlaneError::InvalidInput {
                    message: format!("reading the pasted text failed: {error}"),
                })?
                .map_err(|error| PlaneError::InvalidInput {
                    message: format!("reading the pasted text failed: {error}"),
                })?;
                request.decode_payload(&pasted)
            }
        }
    });
    let key = key.map_err(|error| classify(error, "getting a user API key"))?;
    KeyringStore
        .set(&profile.name, "user-api-key", &key)
        .map_err(|error| classify(error, "storing the user API key"))?;
    println!("stored a user API key for profile {} in the keyring", profile.name);
    Ok(())
}

/// The backend's settings from the flags given (by settings field name); each backend's
/// `Settings` decides which it needs and which do not apply.
fn settings(args: &AddArgs) -> Result<BackendSettings, PlaneError> {
    use serde_json::Value;
    let mut fields = serde_json::Map::new();
    fields.insert(profiles::server_field(args.backend).into(), Value::String(args.url.clone()));
    if args.backend == BackendKind::Audioroom && args.client_id.is_none() {
        // One stable id per profile: the forum replaces a user's older key for the same id.
        let generated = parley_control_plane::adapter::audioroom::user_api_key::new_client_id();
        fields.insert("client_id".into(), Value::String(generated));
    }
    let texts = [
        ("identity", &args.identity),
        ("display_name", &args.display_name),
        ("api_key", &args.api_key),
        ("method", &args.method.as_ref().map(|method| method.to_ascii_uppercase())),
        ("body_template", &args.body_template),
        ("header_name", &args.header_name),
        ("token_pointer", &args.token_pointer),
        ("url_pointer", &args.url_pointer),
        ("livekit_url", &args.livekit_url),
        ("client_id", &args.client_id),
        ("user_id", &args.user_id),
        ("device_id", &args.device_id),
        ("room_id", &args.room_id),
        ("service_url", &args.service_url),
        ("group", &args.group),
        ("username", &args.username),
    ];
    for (field, value) in texts {
        if let Some(value) = value {
            fields.insert(field.into(), Value::String(value.clone()));
        }
    }
    let numbers = [
        ("heartbeat_seconds", args.heartbeat_seconds.map(u64::from)),
        ("lobby_poll_ms", args.lobby_poll_ms),
        ("lobby_wait_ms", args.lobby_wait_ms),
    ];
    for (field, value) in numbers {
        if let Some(value) = value {
            fields.insert(field.into(), Value::from(value));
        }
    }
    BackendSettings::from_fields(args.backend, fields)
}

/// `name=value` lines, or one bare value when the backend has exactly one secret. Values are
/// never echoed, not even in errors.
fn secrets_from_stdin(names: &[&str]) -> Result<BTreeMap<String, Secret>, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading secrets from stdin")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    parse_secrets(&text, names).map_err(|error| classify(error, "reading secrets from stdin"))
}

fn parse_secrets(text: &str, names: &[&str]) -> Result<BTreeMap<String, Secret>, PlaneError> {
    let lines: Vec<&str> =
        text.lines().map(|line| line.trim_end_matches('\r')).filter(|line| !line.trim().is_empty()).collect();
    let mut secrets = BTreeMap::new();
    fn named<'a>(line: &'a str, names: &[&str]) -> Option<(&'a str, &'a str)> {
        line.split_once('=').filter(|(name, _)| names.contains(&name.trim())).map(|(name, value)| (name.trim(), value))
    }
    if let ([line], [only]) = (lines.as_slice(), names)
        && named(line, names).is_none()
    {
        secrets.insert(only.to_string(), Secret::new(*line));
        return Ok(secrets);
    }
    for (number, line) in lines.iter().enumerate() {
        let Some((name, value)) = named(line, names) else {
            return Err(PlaneError::InvalidInput {
                message: format!(
                    "line {} of stdin is not name=value with a known name (this backend's secrets: {})",
                    number + 1,
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ),
            });
        };
        if !value.is_empty() {
            secrets.insert(name.to_string(), Secret::new(value));
        }
    }
    Ok(secrets)
}

fn secrets_from_prompt(profile: &str, names: &[&str]) -> Result<BTreeMap<String, Secret>, Failure> {
    let mut secrets = BTreeMap::new();
    if names.is_empty() {
        return Ok(secrets);
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail_as(
            ErrorCode::InvalidInput,
            anyhow::anyhow!(
                "no terminal to ask for the secrets ({}); pipe them in with --secret-stdin",
                names.join(", ")
            ),
        ));
    }
    for name in names {
        let value = rpassword::prompt_password(format!("{name} for profile {profile} (empty to skip): "))
            .context("asking for a secret")
            .map_err(|error| fail(ExitKind::Failure, error))?;
        if !value.is_empty() {
            secrets.insert(name.to_string(), Secret::new(value));
        }
    }
    Ok(secrets)
}

fn list(store: &ProfileStore, json: bool) -> Result<(), Failure> {
    let all = store.list().map_err(|error| classify(error, "reading the profiles"))?;
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|profile| {
                serde_json::json!({
                    "name": profile.name,
                    "backend": profile.kind(),
                    "server": profile.settings.server(),
                    "insecure": profile.insecure,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if all.is_empty() {
        println!("no profiles yet; add one with `parley profile add`");
    }
    for profile in &all {
        let insecure = if profile.insecure { "  (insecure: unencrypted allowed)" } else { "" };
        println!("{}  {}  {}{insecure}", profile.name, profile.kind(), profile.settings.server());
    }
    Ok(())
}

fn show(store: &ProfileStore, name: &str, json: bool) -> Result<(), Failure> {
    let profile = store.get(name).map_err(|error| classify(error, "reading the profile"))?;
    let stored =
        profiles::stored_secrets(&profile, &KeyringStore).map_err(|error| classify(error, "reading the keyring"))?;
    let missing: Vec<&str> =
        profile.settings.secret_names().iter().copied().filter(|secret| !stored.contains(secret)).collect();
    let settings = serde_json::to_value(&profile.settings).map_err(|error| fail(ExitKind::Failure, error))?;
    if json {
        let shown = serde_json::json!({
            "name": profile.name,
            "settings": settings,
            "insecure": profile.insecure,
            "secrets_stored": stored,
            "secrets_missing": missing,
        });
        println!("{shown}");
        return Ok(());
    }
    println!("profile {}", profile.name);
    if let Some(fields) = settings.as_object() {
        for (key, value) in fields {
            let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            println!("  {key}: {shown}");
        }
    }
    if profile.insecure {
        println!("  insecure: yes (unencrypted http:// / ws:// allowed)");
    }
    println!("  secrets in the keyring: {}", if stored.is_empty() { "none".into() } else { stored.join(", ") });
    if !missing.is_empty() {
        println!("  secrets missing: {}", missing.join(", "));
    }
    Ok(())
}

/// Opens a profile's adapter. Blocking (the keyring): runs on a blocking thread.
pub async fn open(name: &str) -> Result<Arc<dyn ControlPlane>, Failure> {
    let name = name.to_string();
    let opened = tokio::task::spawn_blocking(move || {
        let store = ProfileStore::open_default()?;
        let profile = store.get(&name)?;
        profiles::open_plane(&profile, Arc::new(KeyringStore))
    })
    .await
    .context("opening the profile")
    .map_err(|error| fail(ExitKind::Failure, error))?;
    opened.map_err(|error| classify(error, "opening the profile"))
}

/// Asks `plane` for a grant to `room`. With `switch`, a backend that allows one room at a time
/// and finds the user in another is told to leave that one first, and the join is retried.
pub async fn join_grant(plane: &dyn ControlPlane, room: &str, switch: bool) -> Result<JoinGrant, Failure> {
    match plane.join(room).await {
        Err(PlaneError::InAnotherRoom { room_id, room_name }) if switch => {
            let label = room_name.unwrap_or_else(|| room_id.clone());
            plane.leave_room(&room_id).await.map_err(|error| classify(error, "leaving the other room"))?;
            eprintln!("left {label} to join {room}");
            plane.join(room).await.map_err(|error| classify(error, "asking the server to join"))
        }
        Err(error @ PlaneError::InAnotherRoom { .. }) => {
            Err(classify(error, "asking the server to join (pass --switch to move rooms)"))
        }
        joined => joined.map_err(|error| classify(error, "asking the server to join")),
    }
}

/// The room an invite link points at (the backend may make the user a member on the way).
pub async fn open_invite(plane: &dyn ControlPlane, invite: &str) -> Result<String, Failure> {
    let room = plane.open_invite(invite).await.map_err(|error| classify(error, "opening the invite link"))?;
    eprintln!("invited to {} ({})", room.name, room.id);
    Ok(room.id)
}

pub async fn rooms(args: RoomsArgs) -> Result<(), Failure> {
    let plane = open(&args.profile).await?;
    let rooms = plane.list_rooms().await.map_err(|error| classify(error, "listing rooms"))?;
    if args.json {
        let text = serde_json::to_string(&rooms).map_err(|error| fail(ExitKind::Failure, error))?;
        println!("{text}");
        return Ok(());
    }
    if rooms.is_empty() {
        println!("no rooms");
    }
    for room in &rooms {
        let count = match (room.participants, room.max_participants) {
            (Some(count), Some(max)) => format!("{count}/{max} here"),
            (Some(count), None) => format!("{count} here"),
            _ => String::new(),
        };
        let label = if room.name == room.id { room.id.clone() } else { format!("{} ({})", room.id, room.name) };
        println!("{label}  {count}{}", if room.stage { "  stage" } else { "" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_secret_may_come_bare_several_need_names() {
        let single = parse_secrets("s3cret value\n", &["api-secret"]).unwrap();
        assert_eq!(single["api-secret"].expose(), "s3cret value");
        let named = parse_secrets("api-secret=a=b\n", &["api-secret"]).unwrap();
        assert_eq!(named["api-secret"].expose(), "a=b", "only the first = separates");
        let error = parse_secrets("hunter2\nother\n", &["a", "b"]).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "a bad line is never echoed: {error}");
    }
}
