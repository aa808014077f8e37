//! `parley-pattern-window`: a 1280 × 720 X11 window showing the test pattern of
//! [`parley_capture::pattern`] (colour bars, a frame counter, a moving marker), redrawn at
//! 30 fps, for the screen-share tests. Prints `{"window": <id>}` once the window is mapped,
//! then draws until killed (or for `--frames N` frames). With `--log` it also prints
//! `{"drawn": <counter>, "unix_ms": <ms>}` as each frame reaches the X server, for benchmarks that
//! time pictures from glass to glass.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
#[path = "pattern_window/x11.rs"]
mod x11;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    let result = x11::run();
    #[cfg(not(target_os = "linux"))]
    let result: Result<(), Box<dyn std::error::Error>> = Err("needs an X server (Linux only)".into());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parley-pattern-window: {error}");
            ExitCode::FAILURE
        }
    }
}
