//! Accounts: registration and sign-in with their rate limits, the app JWT, and SQLite's ways of
//! writing rows (`routes/auth.ts`, `middleware/auth.ts`, `db.ts`).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Server, error};

/// `expiresIn: '7d'`.
pub(super) const JWT_LIFETIME_SECS: u64 = 7 * 24 * 60 * 60;

#[derive(Debug, Clone)]
pub(super) struct User {
    pub id: u64,
    pub username: String,
    pub display_name: String,
    pub password: String,
    pub last_room_id: Option<u64>,
    pub created_at: u64,
    pub last_seen: Option<u64>,
}

impl User {
    /// `{id, username, display_name}`, the shape every event carries.
    pub fn brief(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "username": self.username, "display_name": self.display_name })
    }

    /// What `/auth/login`, `/auth/register` and `/auth/me` answer.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "username": self.username, "display_name": self.display_name,
            "last_room_id": self.last_room_id,
        })
    }
}

/// express-rate-limit 7 (`windowMs`, `limit`, MemoryStore): a fixed window per client address,
/// counting every request it sees, answering with the draft-6 `RateLimit-*` headers.
#[derive(Debug, Clone)]
pub(super) struct Limiter {
    pub limit: u32,
    pub window: Duration,
    pub message: &'static str,
    hits: HashMap<String, (Instant, u32)>,
}

impl Limiter {
    pub fn new(limit: u32, window: Duration, message: &'static str) -> Limiter {
        Limiter { limit, window, message, hits: HashMap::new() }
    }

    /// Counts a request from `address`; the headers to send, and whether it is over the limit.
    pub fn hit(&mut self, address: &str) -> (HeaderMap, bool) {
        let now = Instant::now();
        let entry = self.hits.entry(address.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let reset = self.window.saturating_sub(now.duration_since(entry.0)).as_secs().max(1);
        let over = entry.1 > self.limit;
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        put("ratelimit-policy", format!("{};w={}", self.limit, self.window.as_secs()));
        put("ratelimit-limit", self.limit.to_string());
        put("ratelimit-remaining", self.limit.saturating_sub(entry.1).to_string());
        put("ratelimit-reset", reset.to_string());
        if over {
            put("retry-after", reset.to_string());
        }
        (headers, over)
    }
}

/// `POST /api/auth/register`: limited, then each check in the server's order.
pub(super) fn register(server: &mut Server, address: &str, body: &serde_json::Value) -> Response {
    let (headers, over) = server.register_limit.hit(address);
    let answer = if over {
        error(StatusCode::TOO_MANY_REQUESTS, server.register_limit.message)
    } else {
        register_checked(server, body)
    };
    (headers, answer).into_response()
}

fn register_checked(server: &mut Server, body: &serde_json::Value) -> Response {
    let text = |name: &str| body.get(name).and_then(serde_json::Value::as_str).filter(|value| !value.is_empty());
    let (Some(username), Some(display_name), Some(password)) =
        (text("username"), text("display_name"), text("password"))
    else {
        return error(StatusCode::BAD_REQUEST, "username, display_name, and password are required");
    };
    let username_ok = (3..=32).contains(&username.len())
        && username.chars().all(|character| character.is_ascii_alphanumeric() || character == '_');
    if !username_ok {
        return error(StatusCode::BAD_REQUEST, "Username must be 3-32 characters, alphanumeric or underscore");
    }
    let display_name = display_name.trim();
    if !(1..=64).contains(&display_name.chars().count()) {
        return error(StatusCode::BAD_REQUEST, "Display name must be 1-64 characters");
    }
    if !(8..=128).contains(&password.chars().count()) {
        return error(StatusCode::BAD_REQUEST, "Password must be 8-128 characters");
    }
    let strong = password.chars().any(|character| character.is_ascii_lowercase())
        && password.chars().any(|character| character.is_ascii_uppercase())
        && password.chars().any(|character| !character.is_ascii_alphabetic());
    if !strong {
        return error(StatusCode::BAD_REQUEST, "Password must include uppercase, lowercase, and a number or symbol");
    }
    // `username TEXT UNIQUE COLLATE NOCASE`.
    if server.users.iter().any(|user| user.username.eq_ignore_ascii_case(username)) {
        return error(StatusCode::CONFLICT, "Username already taken");
    }
    let user = server.new_user(username, display_name, password);
    let token = server.sign(&user);
    (StatusCode::CREATED, axum::Json(serde_json::json!({ "token": token, "user": user.json() }))).into_response()
}

/// `POST /api/auth/login`: limited (every attempt counts, good or bad), then checked.
pub(super) fn login(server: &mut Server, address: &str, body: &serde_json::Value) -> Response {
    let (headers, over) = server.login_limit.hit(address);
    server.logins += 1;
    let answer = if over {
        error(StatusCode::TOO_MANY_REQUESTS, server.login_limit.message)
    } else {
        login_checked(server, body)
    };
    (headers, answer).into_response()
}

fn login_checked(server: &Server, body: &serde_json::Value) -> Response {
    let text = |name: &str| body.get(name).and_then(serde_json::Value::as_str).filter(|value| !value.is_empty());
    let (Some(username), Some(password)) = (text("username"), text("password")) else {
        return error(StatusCode::BAD_REQUEST, "username and password are required");
    };
    // The lookup ignores case (NOCASE); the answer carries the stored spelling.
    let Some(user) =
        server.users.iter().find(|user| user.username.eq_ignore_ascii_case(username) && user.password == password)
    else {
        return error(StatusCode::UNAUTHORIZED, "Invalid credentials");
    };
    let token = server.sign(user);
    axum::Json(serde_json::json!({ "token": token, "user": user.json() })).into_response()
}

/// `requireAuth`: the token from `Authorization: Bearer`, `?token=` or a JSON body's `token`.
/// Like the real middleware, a valid token passes even if its user is gone.
pub(super) fn authenticate(
    server: &Server,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &serde_json::Value,
) -> Result<u64, Response> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(String::from);
    let from_query = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    let from_body = body.get("token").and_then(serde_json::Value::as_str).map(String::from);
    let Some(token) = from_header.or(from_query).or(from_body) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Missing authorization token"));
    };
    verify_hs256(&server.secret(), &token)
        .and_then(|claims| claims.get("sub").and_then(serde_json::Value::as_u64))
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Invalid or expired token"))
}

pub(super) fn sign_hs256(secret: &str, claims: &serde_json::Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input =
        format!("{}.{}", encode(br#"{"alg":"HS256","typ":"JWT"}"#), encode(claims.to_string().as_bytes()));
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", encode(&mac.finalize().into_bytes()))
}

pub(super) fn verify_hs256(secret: &str, token: &str) -> Option<serde_json::Value> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).ok()?;
    let payload = signing_input.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let exp = claims.get("exp").and_then(serde_json::Value::as_u64)?;
    (exp > now_secs()).then_some(claims)
}

pub(super) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}

/// SQLite's `datetime(…)` text: `YYYY-MM-DD HH:MM:SS`, UTC, no `T`, no zone.
pub(super) fn sqlite_time(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let of_day = secs % 86_400;
    // Civil from days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_verify_only_with_their_secret_and_before_expiry() {
        let claims = serde_json::json!({ "sub": 1, "exp": now_secs() + 60 });
        let token = sign_hs256("s1", &claims);
        assert_eq!(verify_hs256("s1", &token), Some(claims));
        assert_eq!(verify_hs256("s2", &token), None, "wrong secret");
        let expired = sign_hs256("s1", &serde_json::json!({ "sub": 1, "exp": 1 }));
        assert_eq!(verify_hs256("s1", &expired), None, "expired");
    }

    #[test]
    fn times_are_written_as_sqlite_writes_them() {
        assert_eq!(sqlite_time(0), "1970-01-01 00:00:00");
        assert_eq!(sqlite_time(1_709_210_096), "2024-02-29 12:34:56");
    }

    #[test]
    fn the_limiter_counts_every_request_in_a_fixed_window() {
        let mut limiter = Limiter::new(2, Duration::from_secs(900), "Too many attempts, please try again later");
        let (headers, over) = limiter.hit("10.0.0.1");
        assert!(!over);
        assert_eq!(headers["ratelimit-policy"], "2;w=900");
        assert_eq!(headers["ratelimit-remaining"], "1");
        assert!(!limiter.hit("10.0.0.1").1);
        let (headers, over) = limiter.hit("10.0.0.1");
        assert!(over, "the third request in the window is over the limit");
        assert!(headers.contains_key("retry-after"));
        assert!(!limiter.hit("10.0.0.2").1, "each address has its own count");
    }
}
