//! The pictures of the screen shares the window watches: each share's latest picture as a
//! JPEG, for the desktop shell to hand to its viewer.
//!
//! WebKitGTK has no WebRTC, so the window cannot receive video itself: the core decodes it and
//! the shell serves the latest picture over a custom URI scheme, which the viewer long-polls
//! ([`FrameShelf::next_after`]). JPEG rather than raw RGBA: a 1080p picture is 8.3 MB raw
//! (250 MB/s at 30 fps through the web engine's IPC, copied into a canvas) and about 220 kB as
//! a JPEG, which the web engine decodes natively; encoding costs 6.7 ms at 720p and 13.9 ms at
//! 1080p here (`jpeg-encoder`, SIMD). A share nobody polls (hidden window) is not encoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use parley_livekit_ffi::ReceivedVideoFrame;
use tokio::sync::watch;

use crate::session::{VideoSink, ViewerFactory};

/// JPEG quality: text on a shared screen stays legible, a 1080p picture stays near 200 kB.
const QUALITY: u8 = 80;
/// A share whose viewer asked for nothing this long is not encoded (the window is hidden).
const IDLE_VIEWER: Duration = Duration::from_secs(2);

/// One share's latest picture.
#[derive(Debug, Clone)]
pub struct ShareFrame {
    /// Grows with every picture on the shelf (any share's): the viewer passes it back.
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub jpeg: Arc<[u8]>,
}

/// The latest picture of each watched share. Cheap to clone: clones share the shelf.
#[derive(Clone)]
pub struct FrameShelf {
    inner: Arc<Shelf>,
}

struct Shelf {
    slots: Mutex<HashMap<String, Slot>>,
    /// The last `seq` put on the shelf; viewers wait for it to change.
    version: watch::Sender<u64>,
}

#[derive(Default)]
struct Slot {
    frame: Option<ShareFrame>,
    /// When a viewer last asked for this share's pictures.
    polled: Option<Instant>,
}

impl Default for FrameShelf {
    fn default() -> FrameShelf {
        FrameShelf { inner: Arc::new(Shelf { slots: Mutex::new(HashMap::new()), version: watch::channel(0).0 }) }
    }
}

impl FrameShelf {
    /// Makes the sink of each watched share: its pictures land on this shelf.
    pub fn viewer(&self) -> ViewerFactory {
        let shelf = self.clone();
        Arc::new(move |identity: &str| -> Box<dyn VideoSink> {
            Box::new(JpegSink { identity: identity.to_string(), shelf: shelf.clone(), failed: false })
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `identity`'s latest picture, if any.
    pub fn latest(&self, identity: &str) -> Option<ShareFrame> {
        self.slots().get(identity).and_then(|slot| slot.frame.clone())
    }

    /// `identity`'s first picture newer than `after` (a `seq` the viewer had): at once if there
    /// is one, else when it arrives, or `None` after `timeout`.
    pub async fn next_after(&self, identity: &str, after: u64, timeout: Duration) -> Option<ShareFrame> {
        let mut changes = self.inner.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut slots = self.slots();
                let slot = slots.entry(identity.to_string()).or_default();
                slot.polled = Some(Instant::now());
                if let Some(frame) = slot.frame.as_ref().filter(|frame| frame.seq > after) {
                    return Some(frame.clone());
                }
            }
            // The shelf owns the sender: `changed` fails only once the shelf is gone.
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Forgets `identity`'s share (no longer watched).
    pub fn remove(&self, identity: &str) {
        self.slots().remove(identity);
    }

    /// Whether a viewer asked for `identity`'s pictures lately.
    fn wanted(&self, identity: &str) -> bool {
        self.slots().get(identity).and_then(|slot| slot.polled).is_some_and(|polled| polled.elapsed() < IDLE_VIEWER)
    }

    fn put(&self, identity: &str, width: u32, height: u32, jpeg: Vec<u8>) {
        // Under the shelf's lock, so that `seq` grows across shares.
        let mut slots = self.slots();
        let seq = *self.inner.version.borrow() + 1;
        slots.entry(identity.to_string()).or_default().frame =
            Some(ShareFrame { seq, width, height, jpeg: jpeg.into() });
        self.inner.version.send_replace(seq);
    }
}

/// Encodes each picture of one share onto the shelf (on the session's watch thread).
struct JpegSink {
    identity: String,
    shelf: FrameShelf,
    /// An encoding failure was logged (once per share).
    failed: bool,
}

impl VideoSink for JpegSink {
    fn frame(&mut self, _identity: &str, _index: u64, frame: &ReceivedVideoFrame) {
        if !self.shelf.wanted(&self.identity) {
            return;
        }
        match encode_jpeg(frame) {
            Ok(jpeg) => self.shelf.put(&self.identity, frame.width, frame.height, jpeg),
            Err(error) if !self.failed => {
                self.failed = true;
                tracing::warn!(%error, identity = %self.identity, "cannot encode a shared picture");
            }
            Err(_) => {}
        }
    }
}

/// `frame` (RGBA) as a JPEG.
fn encode_jpeg(frame: &ReceivedVideoFrame) -> Result<Vec<u8>, String> {
    let (Ok(width), Ok(height)) = (u16::try_from(frame.width), u16::try_from(frame.height)) else {
        return Err(format!("a {}x{} picture is too large for JPEG", frame.width, frame.height));
    };
    if frame.rgba.len() != usize::from(width) * usize::from(height) * 4 {
        return Err(format!("{} bytes is not a {width}x{height} RGBA picture", frame.rgba.len()));
    }
    let mut jpeg = Vec::with_capacity(frame.rgba.len() / 20);
    jpeg_encoder::Encoder::new(&mut jpeg, QUALITY)
        .encode(&frame.rgba, width, height, jpeg_encoder::ColorType::Rgba)
        .map_err(|error| error.to_string())?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: u32, height: u32, rgb: [u8; 3]) -> ReceivedVideoFrame {
        let rgba = (0..width * height).flat_map(|_| [rgb[0], rgb[1], rgb[2], 255]).collect();
        ReceivedVideoFrame { width, height, timestamp_us: 0, rgba }
    }

    #[tokio::test]
    async fn a_viewer_gets_each_new_picture_once_and_a_timeout_when_none_comes() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        // Nobody asked yet: nothing is encoded.
        sink.frame("alice", 0, &picture(64, 32, [255, 0, 0]));
        assert!(shelf.latest("alice").is_none(), "an unwatched share is not encoded");

        let waiting = tokio::spawn({
            let shelf = shelf.clone();
            async move { shelf.next_after("alice", 0, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        sink.frame("alice", 1, &picture(64, 32, [255, 0, 0]));
        let first = waiting.await.expect("task").expect("a picture arrives");
        assert_eq!((first.width, first.height), (64, 32));
        assert_eq!(&first.jpeg[..2], &[0xFF, 0xD8], "a JPEG");

        let none = shelf.next_after("alice", first.seq, Duration::from_millis(100)).await;
        assert!(none.is_none(), "no newer picture: the viewer hears nothing");
        sink.frame("alice", 2, &picture(64, 32, [0, 0, 255]));
        let second = shelf.next_after("alice", first.seq, Duration::from_secs(1)).await.expect("the next one");
        assert!(second.seq > first.seq);

        shelf.remove("alice");
        assert!(shelf.latest("alice").is_none());
    }

    #[test]
    fn a_picture_that_is_not_rgba_of_its_size_is_refused() {
        let mut bad = picture(4, 4, [0, 0, 0]);
        bad.rgba.pop();
        assert!(encode_jpeg(&bad).unwrap_err().contains("not a 4x4 RGBA picture"));
        let huge = ReceivedVideoFrame { width: 70_000, height: 1, timestamp_us: 0, rgba: Vec::new() };
        assert!(encode_jpeg(&huge).unwrap_err().contains("too large"));
    }
}
