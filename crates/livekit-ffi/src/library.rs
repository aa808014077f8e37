//! Where the engine library is found: an explicit file, the environment, beside the executable
//! (and in a bundle's resources), then where `cargo xtask setup` put it.

use std::path::{Path, PathBuf};

/// Environment variable naming the library file explicitly (the same name LiveKit's Python SDK
/// uses). When set, no other location is tried.
pub const LIBRARY_PATH_ENV: &str = "LIVEKIT_LIB_PATH";

/// Where to look for the library, in order, when [`LIBRARY_PATH_ENV`] is unset.
#[derive(Debug, Clone, Default)]
pub struct LibrarySearch {
    /// An explicit file (a command-line flag); overrides everything else when set.
    pub explicit: Option<PathBuf>,
    /// Extra directories to look in before the defaults (e.g. the desktop app's resource dir).
    pub extra_dirs: Vec<PathBuf>,
}

impl LibrarySearch {
    /// The candidate files, in the order they are tried.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(explicit) = &self.explicit {
            return vec![explicit.clone()];
        }
        if let Some(path) = std::env::var_os(LIBRARY_PATH_ENV).filter(|value| !value.is_empty()) {
            return vec![PathBuf::from(path)];
        }
        let file = parley_deps::ffi_library_file_name();
        let mut candidates: Vec<PathBuf> = self.extra_dirs.iter().map(|dir| dir.join(file)).collect();
        if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
            candidates.extend(parley_deps::bundled_library_dirs().iter().map(|sub| dir.join(sub).join(file)));
        }
        candidates.push(parley_deps::Layout::discover().ffi_library());
        candidates
    }
}
