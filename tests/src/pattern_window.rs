//! `parley-pattern-window`: a window drawing the screen-share test pattern, for the suites that
//! share it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// The pattern window on a display; closed (killed) on drop.
pub struct PatternWindow {
    child: Child,
    /// Its X11 window id, as `--share-screen` takes it.
    pub id: u64,
}

impl PatternWindow {
    /// Opens the window on the display that `env` names (`DISPLAY`, …) and waits until it
    /// announces its id. Panics (fails the test) when it cannot.
    pub fn open(env: &[(String, String)]) -> PatternWindow {
        let binary = crate::binary("parley-capture", "parley-pattern-window");
        let mut child = Command::new(binary)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley-pattern-window");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the window id");
        let announced: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("pattern window said {line:?}"));
        let id = announced["window"].as_u64().expect("a window id");
        PatternWindow { child, id }
    }
}

impl Drop for PatternWindow {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill().and_then(|()| self.child.wait().map(|_| ())) {
            eprintln!("stopping the pattern window: {error}");
        }
    }
}
