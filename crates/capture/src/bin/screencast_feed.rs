//! `parley-screencast-feed`: the test pattern of [`parley_capture::pattern`] as a desktop's
//! screen-cast stream, for the Wayland screen-share tests. It connects to the PipeWire daemon
//! of its environment (`PIPEWIRE_RUNTIME_DIR`), offers a `Video/Source` node of 1280 × 720 BGRx
//! pictures at 30 fps as a compositor does for a granted screen (it drives the graph with its
//! own clock), prints `{"node": <id>}` once the node exists, and feeds whoever links to it until
//! killed. `--name NAME` names the node (default `parley-test-screen`).
//!
//! Written on PipeWire's own bindings rather than with GStreamer's `pipewiresink`: with
//! Debian 12's PipeWire (0.3.65) a `pipewiresink` source linked to another client's stream
//! never delivers a picture (the daemon rejects the buffers it passes on: "invalid memory type").

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[path = "screencast_feed/pipewire.rs"]
mod feed;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    let result = feed::run();
    #[cfg(not(target_os = "linux"))]
    let result: Result<(), Box<dyn std::error::Error>> = Err("needs PipeWire (Linux only)".into());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parley-screencast-feed: {error}");
            ExitCode::FAILURE
        }
    }
}
