//! Screen sharing in the CLI: `parley share-targets` (what can be shared), and the sink behind
//! `parley join --watch … --save-frames DIR` that writes received pictures as PNG files.

use std::path::PathBuf;

use parley_core::VideoSink;
use parley_core::capture::{TargetKind, list_targets as targets};
use parley_livekit_ffi::ReceivedVideoFrame;

use crate::exit::{ExitKind, Failure, fail};

/// The applications playing sound, to share with a picture (`--share-audio`): none where the
/// platform cannot record one, or no sound server runs.
fn app_sounds() -> Vec<(u32, String, Option<u32>)> {
    match parley_audio::app_sound::list() {
        Ok(sounds) => sounds.into_iter().map(|sound| (sound.index, sound.to_string(), sound.pid)).collect(),
        Err(error) => {
            tracing::info!(%error, "no application sounds to list");
            Vec::new()
        }
    }
}

/// Prints the screens and windows there are to share, and the applications whose sound can go
/// with them (one JSON array with `json`; sounds have `"kind": "sound"`).
pub fn list_targets(json: bool) -> Result<(), Failure> {
    let targets = targets().map_err(|error| fail(ExitKind::Device, error))?;
    let sounds = app_sounds();
    if json {
        let list: Vec<_> = targets
            .iter()
            .map(|target| {
                serde_json::json!({
                    "kind": target.kind.code(),
                    "id": target.id,
                    "name": target.name,
                    "width": target.width,
                    "height": target.height,
                })
            })
            .chain(sounds.iter().map(|(index, name, pid)| {
                serde_json::json!({ "kind": "sound", "id": format!("#{index}"), "name": name, "pid": pid })
            }))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    for target in &targets {
        match target.kind {
            TargetKind::Screen => println!("screen  {}  {}x{}", target.id, target.width, target.height),
            TargetKind::Window => {
                println!("window  {:#x}  {}x{}  {}", target.id, target.width, target.height, target.name)
            }
        }
    }
    for (index, name, _) in &sounds {
        println!("sound   #{index}  {name}");
    }
    Ok(())
}

/// Saves the watched pictures it is handed as `DIR/frame-NNNNNN.png` (N: the picture's index
/// among all received; the session hands over every `--save-every`th). Each is written under a
/// `.part` name and renamed when complete: a process that exits mid-picture leaves no torn PNG.
/// (The session keeps the engine's end-of-track placeholder from every sink.) Each file says
/// when the picture was handed over, in a `Received` text chunk (Unix time in ms), for
/// benchmarks that time pictures from glass to glass.
pub struct PngSaver {
    pub dir: PathBuf,
}

/// The PNG text chunk that says when a saved picture was received.
pub const RECEIVED_KEYWORD: &str = "Received";

impl PngSaver {
    fn save(&self, index: u64, frame: &ReceivedVideoFrame) -> Result<(), String> {
        let received = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        let path = self.dir.join(format!("frame-{index:06}.png"));
        let part = path.with_extension("png.part");
        self.write(&part, frame, received)?;
        std::fs::rename(&part, &path).map_err(|error| format!("{}: {error}", path.display()))
    }

    fn write(&self, path: &std::path::Path, frame: &ReceivedVideoFrame, received_ms: f64) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), frame.width, frame.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .add_text_chunk(RECEIVED_KEYWORD.into(), format!("{received_ms:.1}"))
            .map_err(|error| format!("{}: {error}", path.display()))?;
        // Saving keeps up with the stream better than it compresses.
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(|error| format!("{}: {error}", path.display()))?;
        writer.write_image_data(&frame.data).map_err(|error| format!("{}: {error}", path.display()))?;
        writer.finish().map_err(|error| format!("{}: {error}", path.display()))
    }
}

impl VideoSink for PngSaver {
    fn frame(&mut self, _identity: &str, index: u64, frame: &ReceivedVideoFrame) {
        if let Err(error) = self.save(index, frame) {
            eprintln!("parley: warning: saving a watched picture: {error}");
        }
    }
}
