//! LiveKit tokens, as Meet's `utils.generate_token` and python livekit-api 1.2.0 make and check
//! them, and the participant colours of `utils.generate_color` (CPython's `random`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::state::Shared;
use crate::LivekitKeys;

/// Python SDK `DEFAULT_TTL`.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// `TokenVerifier`'s `DEFAULT_LEEWAY`.
const TOKEN_LEEWAY_SECS: u64 = 60;
/// `LIVEKIT_DEFAULT_SOURCES`.
pub(super) const DEFAULT_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];

/// `utils.generate_token`. `sources`: the room's `can_publish_sources` (owners and
/// administrators always get the defaults); `participant_id`: the lobby id anonymous callers
/// join as.
#[allow(clippy::too_many_arguments)]
pub(super) fn mint(
    shared: &Shared,
    room: &str,
    user: Option<&str>,
    username: Option<&str>,
    color: Option<String>,
    sources: Option<Vec<String>>,
    role: Option<&str>,
    participant_id: Option<&str>,
) -> String {
    let admin = matches!(role, Some("owner" | "administrator"));
    let sources = match sources {
        Some(sources) if !admin => sources,
        _ => DEFAULT_SOURCES.map(String::from).to_vec(),
    };
    let account = user.and_then(|sub| shared.lock().user(sub).cloned());
    let (identity, default_name) = match &account {
        Some(account) => (account.sub.clone(), account.full_name.clone().unwrap_or_else(|| account.display())),
        None => (participant_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), String::from), "Anonymous".into()),
    };
    let color = color.unwrap_or_else(|| generate_color(&identity));
    let name = username.filter(|name| !name.is_empty()).map_or(default_name, String::from);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    // `Claims.asdict` drops `None` and `""` from the dataclasses, but not from the plain
    // attributes dict: a missing role stays a JSON null.
    let payload = json!({
        "name": name,
        "video": {
            "roomAdmin": admin, "roomJoin": true, "room": room, "canPublish": !sources.is_empty(),
            "canSubscribe": true, "canPublishData": true, "canPublishSources": sources,
            "canUpdateOwnMetadata": false,
        },
        "attributes": {
            "color": color, "room_role": role,
            "is_authenticated": if account.is_some() { "true" } else { "false" },
        },
        "sub": identity,
        "iss": shared.keys.api_key,
        "nbf": now,
        "exp": now + TOKEN_TTL.as_secs(),
    });
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input =
        format!("{}.{}", encode(br#"{"alg":"HS256","typ":"JWT"}"#), encode(payload.to_string().as_bytes()));
    format!("{signing_input}.{}", encode(&hs256(&shared.keys.api_secret, signing_input.as_bytes())))
}

fn hs256(secret: &str, input: &[u8]) -> Vec<u8> {
    // Invariant: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// `TokenVerifier.verify` (PyJWT `decode` with the issuer and a 60 s leeway): the claims, or
/// PyJWT's reason. Unlike `livekit-api`'s Rust verifier it accepts the `null` attribute values
/// Meet's own tokens carry.
pub(super) fn verify_token(keys: &LivekitKeys, token: &str) -> Result<Value, String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').ok_or("Not enough segments")?;
    let (header, payload) = signing_input.split_once('.').ok_or("Not enough segments")?;
    let header: Value = engine
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("Invalid header padding")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("The specified alg value is not allowed".into());
    }
    let payload: Value = engine
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or("Invalid payload padding")?;
    let signature = engine.decode(signature.trim_end_matches('=')).map_err(|_| "Invalid crypto padding")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(keys.api_secret.as_bytes()).map_err(|error| error.to_string())?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| "Signature verification failed")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf.as_u64().ok_or("Not Before claim (nbf) must be an integer.")?;
        if nbf > now + TOKEN_LEEWAY_SECS {
            return Err("The token is not yet valid (nbf)".into());
        }
    }
    if let Some(exp) = payload.get("exp") {
        let exp = exp.as_u64().ok_or("Expiration Time claim (exp) must be an integer.")?;
        if exp + TOKEN_LEEWAY_SECS <= now {
            return Err("Signature has expired".into());
        }
    }
    match payload.get("iss").and_then(Value::as_str) {
        None => Err("Token is missing the \"iss\" claim".into()),
        Some(issuer) if issuer != keys.api_key => Err("Invalid issuer".into()),
        Some(_) => Ok(payload),
    }
}

/// `utils.generate_color`: CPython's `random` seeded with the low 16 bits of SHA-1(identity).
pub(super) fn generate_color(identity: &str) -> String {
    let digest = Sha1::digest(identity.as_bytes());
    let seed = u32::from(digest[18]) << 8 | u32::from(digest[19]);
    let mut random = PythonRandom::seeded(seed);
    let hue = random.randint(0, 360);
    let saturation = random.randint(50, 75);
    let lightness = random.randint(25, 60);
    format!("hsl({hue}, {saturation}%, {lightness}%)")
}

/// CPython's Mersenne Twister (`random.seed(int)`, `getrandbits`, `randint`), enough for
/// [`generate_color`].
struct PythonRandom {
    state: [u32; 624],
    index: usize,
}

impl PythonRandom {
    /// `random.seed(n)` for `0 <= n < 2**32`: `init_by_array([n])`.
    fn seeded(seed: u32) -> PythonRandom {
        let mut state = [0u32; 624];
        state[0] = 19_650_218;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624 {
            state[i] = (state[i] ^ (state[i - 1] ^ (state[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            state[i] =
                (state[i] ^ (state[i - 1] ^ (state[i - 1] >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
        }
        state[0] = 0x8000_0000;
        PythonRandom { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[k] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randint(low, high)` = `low + _randbelow(high - low + 1)` (rejection sampling on
    /// `getrandbits(n.bit_length())`).
    fn randint(&mut self, low: u32, high: u32) -> u32 {
        let n = high - low + 1;
        let bits = 32 - n.leading_zeros();
        loop {
            let candidate = self.next_u32() >> (32 - bits);
            if candidate < n {
                return low + candidate;
            }
        }
    }
}
