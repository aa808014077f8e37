//! `parley-screencast-feed`: the screen-share test pattern as a desktop's screen-cast stream in
//! a private PipeWire, for the Wayland share test.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// The feed, connected to the PipeWire daemon that `env` names; stopped (killed) on drop.
pub struct ScreenCastFeed {
    child: Child,
    /// Its PipeWire node, as the desktop's portal grants it.
    pub node: u32,
}

impl ScreenCastFeed {
    /// Starts the feed and waits until it announces its node. Panics (fails the test) when it
    /// cannot.
    pub fn start(env: &[(String, String)]) -> ScreenCastFeed {
        let binary = crate::binary("parley-capture", "parley-screencast-feed");
        let mut child = Command::new(binary)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley-screencast-feed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the node id");
        let announced: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("the screen-cast feed said {line:?}"));
        let node = announced["node"].as_u64().and_then(|node| u32::try_from(node).ok()).expect("a node id");
        ScreenCastFeed { child, node }
    }
}

impl Drop for ScreenCastFeed {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill().and_then(|()| self.child.wait().map(|_| ())) {
            eprintln!("stopping the screen-cast feed: {error}");
        }
    }
}
