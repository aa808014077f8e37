//! Where profile secrets live: the OS keyring (DESIGN.md §4: "secrets … live only in the OS
//! keyring (`keyring` crate) and never in logs").
//!
//! [`SecretStore`] is the seam: [`KeyringStore`] is the real one (service `parley`, user
//! `<profile>/<secret-name>`; on Linux the Secret Service over D-Bus, on macOS the Keychain, on
//! Windows the Credential Manager); [`MemoryStore`] keeps secrets in memory for unit tests.
//!
//! The keyring calls block (D-Bus round trips): call them from a plain thread or
//! `tokio::task::spawn_blocking`, never directly on an async task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::{PlaneError, Secret};

/// The keyring service name every Parley secret is stored under.
pub const SERVICE: &str = "parley";

/// Stores and returns profile secrets. Implementations block; see the module doc.
pub trait SecretStore: Send + Sync {
    /// The secret `name` of `profile`, or `None` when none is stored.
    fn get(&self, profile: &str, name: &str) -> Result<Option<Secret>, PlaneError>;
    /// Stores (or replaces) the secret `name` of `profile`.
    fn set(&self, profile: &str, name: &str, value: &Secret) -> Result<(), PlaneError>;
    /// Deletes the secret `name` of `profile`; deleting a missing one succeeds.
    fn delete(&self, profile: &str, name: &str) -> Result<(), PlaneError>;
}

/// Where an adapter keeps a secret it obtained on its own (a sign-in token), so that the next
/// command reuses it instead of signing in again: the profile's entry in a [`SecretStore`].
#[derive(Clone)]
pub struct SecretKeeper {
    store: Arc<dyn SecretStore>,
    profile: String,
}

impl std::fmt::Debug for SecretKeeper {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SecretKeeper").field("profile", &self.profile).finish_non_exhaustive()
    }
}

impl SecretKeeper {
    pub fn new(store: Arc<dyn SecretStore>, profile: impl Into<String>) -> SecretKeeper {
        SecretKeeper { store, profile: profile.into() }
    }

    /// Stores `value` as the profile's secret `name`, on a blocking thread (the store blocks).
    /// A failure is logged, not returned: the adapter goes on with the secret it holds, and only
    /// the next command pays for it with a new sign-in. Any tokio task.
    pub async fn keep(&self, name: &'static str, value: Secret) {
        let (store, profile) = (Arc::clone(&self.store), self.profile.clone());
        let stored = tokio::task::spawn_blocking(move || store.set(&profile, name, &value)).await;
        match stored {
            Ok(Ok(())) => tracing::debug!(secret = name, "kept a renewed secret in the keyring"),
            Ok(Err(error)) => tracing::warn!(secret = name, %error, "could not keep a renewed secret"),
            Err(error) => tracing::warn!(secret = name, %error, "keeping a renewed secret stopped"),
        }
    }
}

/// The OS keyring.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringStore;

impl KeyringStore {
    fn entry(profile: &str, name: &str) -> Result<keyring::Entry, PlaneError> {
        keyring::Entry::new(SERVICE, &user(profile, name)).map_err(keyring_error)
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, profile: &str, name: &str) -> Result<Option<Secret>, PlaneError> {
        match Self::entry(profile, name)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(error) => Err(keyring_error(error)),
        }
    }

    fn set(&self, profile: &str, name: &str, value: &Secret) -> Result<(), PlaneError> {
        Self::entry(profile, name)?.set_password(value.expose()).map_err(keyring_error)
    }

    fn delete(&self, profile: &str, name: &str) -> Result<(), PlaneError> {
        match Self::entry(profile, name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(error) => Err(keyring_error(error)),
        }
    }
}

/// The keyring user name of a profile's secret.
pub fn user(profile: &str, name: &str) -> String {
    format!("{profile}/{name}")
}

/// Turns a keyring failure into a message that says what to do. Keyring errors carry platform
/// text and attribute names, never the secret itself.
fn keyring_error(error: keyring::Error) -> PlaneError {
    let message = match error {
        keyring::Error::NoDefaultStore | keyring::Error::PlatformFailure(_) => format!(
            "no keyring is available ({}); {}",
            short(&error),
            if cfg!(target_os = "linux") {
                "start a Secret Service provider (GNOME Keyring, KeePassXC with Secret Service, or \
                 KWallet) in your desktop session, or make DBUS_SESSION_BUS_ADDRESS point to the \
                 session bus"
            } else {
                "check that the system keychain is available to this user"
            }
        ),
        keyring::Error::NoStorageAccess(_) => format!(
            "the keyring is locked or refused access ({}); unlock it (logging in to the desktop \
             usually does) and try again",
            short(&error)
        ),
        keyring::Error::BadEncoding(_) => "a stored secret is not text; remove the profile and add it again".into(),
        other => short(&other),
    };
    PlaneError::Keyring { message }
}

fn short(error: &keyring::Error) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Secrets in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<String, Secret>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// The keyring user names stored, sorted (`<profile>/<name>`).
    pub fn users(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Secret>> {
        // A panic while holding this lock leaves the map consistent (every operation is one call).
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, profile: &str, name: &str) -> Result<Option<Secret>, PlaneError> {
        Ok(self.lock().get(&user(profile, name)).cloned())
    }

    fn set(&self, profile: &str, name: &str, value: &Secret) -> Result<(), PlaneError> {
        self.lock().insert(user(profile, name), value.clone());
        Ok(())
    }

    fn delete(&self, profile: &str, name: &str) -> Result<(), PlaneError> {
        self.lock().remove(&user(profile, name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trips_and_deletes() {
        let store = MemoryStore::new();
        store.set("home", "api-secret", &Secret::new("s3cret")).unwrap();
        assert_eq!(store.get("home", "api-secret").unwrap().map(|s| s.expose().to_string()), Some("s3cret".into()));
        assert_eq!(store.users(), vec!["home/api-secret".to_string()]);
        store.delete("home", "api-secret").unwrap();
        store.delete("home", "api-secret").expect("deleting a missing secret succeeds");
        assert!(store.get("home", "api-secret").unwrap().is_none());
    }

    #[test]
    fn keyring_failures_say_what_to_do() {
        let missing = keyring_error(keyring::Error::NoDefaultStore);
        assert_eq!(missing.code(), "keyring");
        assert!(missing.to_string().contains("no keyring is available"), "{missing}");
        let locked = keyring_error(keyring::Error::NoStorageAccess("locked".into()));
        assert!(locked.to_string().contains("unlock"), "{locked}");
    }
}
