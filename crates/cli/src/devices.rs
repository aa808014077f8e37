//! `parley devices` (the sound devices) and `parley mic-test` (the microphone played straight
//! back through the same device path a call uses).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parley_audio::device::{DeviceInput, DeviceOutput, Direction, list_devices};

use crate::exit::{ExitKind, Failure, fail};

/// Prints the sound devices, inputs and outputs, the defaults marked (one JSON array with `json`).
pub fn list(json: bool) -> Result<(), Failure> {
    let devices = list_devices().map_err(|error| fail(ExitKind::Device, error))?;
    if json {
        let text = serde_json::to_string(&devices).map_err(|error| fail(ExitKind::Failure, error))?;
        println!("{text}");
        return Ok(());
    }
    for device in &devices {
        let direction = match device.direction {
            Direction::Input => "input ",
            Direction::Output => "output",
        };
        let default = if device.is_default { " (default)" } else { "" };
        println!(
            "{direction}  {}{default}  [{} Hz, {} ch]  id: {}",
            device.name, device.default_sample_rate, device.default_channels, device.id
        );
    }
    Ok(())
}

/// Plays `input` straight back on `output` until interrupted or for `seconds`, printing the
/// input's peak once a second. Device errors exit as [`ExitKind::Device`].
pub fn mic_test(input: &str, output: &str, seconds: Option<f64>) -> Result<(), Failure> {
    let input = DeviceInput::open(device_choice(input)).map_err(|error| fail(ExitKind::Device, error))?;
    let output = DeviceOutput::open(device_choice(output)).map_err(|error| fail(ExitKind::Device, error))?;
    eprintln!("microphone test: {} → {} (Ctrl-C to stop)", input.info().device, output.info().device);
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(seconds) = seconds {
        let stop = Arc::clone(&stop);
        let duration = Duration::try_from_secs_f64(seconds.max(0.0))
            .map_err(|error| fail(ExitKind::Failure, anyhow::anyhow!("--seconds: {error}")))?;
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut reports = 0u32;
    let mut loudest = f32::NEG_INFINITY;
    let report = |level: f32| {
        loudest = loudest.max(level);
        reports += 1;
        if reports.is_multiple_of(10) {
            println!("input peak {:.1} dBFS", loudest.max(-100.0));
            loudest = f32::NEG_INFINITY;
        }
    };
    parley_core::mic_test::play_back(Box::new(input), Box::new(output), &stop, report)
        .map_err(|message| fail(ExitKind::Device, anyhow::anyhow!(message)))
}

/// `default` (or an empty name) means the system default device.
pub fn device_choice(name: &str) -> Option<&str> {
    (!name.is_empty() && name != "default").then_some(name)
}
