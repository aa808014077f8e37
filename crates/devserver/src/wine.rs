//! A private Wine prefix for running Parley's Windows build on this Linux machine: the Windows
//! unit tests (`cargo xtask test`) and `parley.exe` in a real call (the CLI suite).
//!
//! [`WinePrefix::create`] initialises a prefix in a directory of the caller's and installs the
//! stand-in DLLs that Wine 8 lacks, `bcryptprimitives.dll` and `coremessaging.dll` (built here
//! from `wine/*.c` with mingw; see the comments there). Programs started through
//! [`WinePrefix::command`] see only that prefix, print no Wine debug chatter, and load the
//! stand-ins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The stand-in DLLs: name, C source, exports, and the libraries they link.
const STUBS: &[(&str, &str, &str, &[&str])] = &[
    (
        "bcryptprimitives",
        include_str!("../wine/bcryptprimitives.c"),
        include_str!("../wine/bcryptprimitives.def"),
        &["-ladvapi32"],
    ),
    ("coremessaging", include_str!("../wine/coremessaging.c"), include_str!("../wine/coremessaging.def"), &[]),
];

/// The mingw C compiler for 64-bit Windows (Debian's `gcc-mingw-w64-x86-64`).
pub const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// Why a prefix could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WineError {
    #[error("{program} could not start ({source}); `cargo xtask setup` installs wine and mingw")]
    Missing { program: String, source: std::io::Error },
    #[error("{what} failed ({status}): {output}")]
    Failed { what: String, status: std::process::ExitStatus, output: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A Wine prefix of our own, with the stand-in DLLs installed.
#[derive(Debug, Clone)]
pub struct WinePrefix {
    dir: PathBuf,
}

impl WinePrefix {
    /// Initialises (or reuses) the prefix at `dir` and installs the stand-in DLLs into it.
    pub fn create(dir: &Path) -> Result<WinePrefix, WineError> {
        std::fs::create_dir_all(dir)?;
        let prefix = WinePrefix { dir: dir.to_path_buf() };
        let system32 = dir.join("drive_c/windows/system32");
        if !system32.join("kernel32.dll").is_file() {
            // `wineboot --init` returns before the prefix's wineserver has finished writing it;
            // `wineserver --wait` waits for that.
            run(prefix.command("wineboot").arg("--init"), "wineboot --init")?;
            run(prefix.command("wineserver").arg("--wait"), "wineserver --wait")?;
        }
        for (name, source_text, exports_text, libraries) in STUBS {
            let stub = system32.join(format!("{name}.dll"));
            if stub.is_file() {
                continue;
            }
            let build = tempfile::tempdir()?;
            let (source, exports) = (build.path().join("stub.c"), build.path().join("stub.def"));
            std::fs::write(&source, source_text)?;
            std::fs::write(&exports, exports_text)?;
            let built = build.path().join(format!("{name}.dll"));
            run(
                Command::new(MINGW_GCC)
                    .args(["-shared", "-O2", "-o"])
                    .arg(&built)
                    .arg(&source)
                    .arg(&exports)
                    .args(*libraries),
                &format!("building the stand-in {name}.dll"),
            )?;
            std::fs::copy(&built, &stub)?;
        }
        Ok(prefix)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The environment a program in this prefix runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("WINEPREFIX".into(), self.dir.display().to_string()),
            ("WINEDEBUG".into(), "-all".into()),
            // Load our stand-ins; no Mono or Gecko installer prompts for a prefix that needs neither.
            ("WINEDLLOVERRIDES".into(), "bcryptprimitives=n;coremessaging=n;mscoree=;mshtml=".into()),
        ]
    }

    /// `program` (e.g. `wine`, `wineboot`) with this prefix's environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env());
        command
    }

    /// A Windows executable run by `wine` in this prefix.
    pub fn wine(&self, exe: &Path) -> Command {
        let mut command = self.command("wine");
        command.arg(exe);
        command
    }

    /// Stops the prefix's wineserver and every program still running in it.
    pub fn shut_down(&self) {
        let _ = self.command("wineserver").arg("--kill").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), WineError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|source| WineError::Missing { program, source })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(WineError::Failed {
        what: what.into(),
        status: output.status,
        output: text.trim().chars().take(2000).collect(),
    })
}
