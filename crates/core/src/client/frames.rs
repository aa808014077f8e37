//! The pictures of the screen shares the window watches: each share's latest picture as a
//! JPEG, for the desktop shell to hand to its viewer.
//!
//! WebKitGTK has no WebRTC, so the window cannot receive video itself: the core decodes it and
//! the shell serves the latest picture over a custom URI scheme, which the viewer long-polls
//! ([`FrameShelf::next_after`]). JPEG rather than raw RGBA: a 1080p picture is 8.3 MB raw
//! (250 MB/s at 30 fps through the web engine's IPC, copied into a canvas) and about 220 kB as
//! a JPEG, which the web engine decodes natively; encoding costs 6.7 ms at 720p and 13.9 ms at
//! 1080p here (`jpeg-encoder`, SIMD). A share nobody polls (hidden window) is not encoded.
//!
//! A picture larger than its viewer is first scaled down to the viewer's size (the size it last
//! reported, in device pixels; `fast_image_resize`, SIMD): a 1080p share in a 900-pixel room
//! view would otherwise be encoded, carried and decoded at four times the pixels it is shown
//! at. `cargo xtask bench app` measures what watching costs.

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
    /// The viewer's size in device pixels, once it said ([`FrameShelf::fit`]).
    fit: Option<(u32, u32)>,
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
            Box::new(JpegSink {
                identity: identity.to_string(),
                shelf: shelf.clone(),
                failed: false,
                resizer: fast_image_resize::Resizer::new(),
                scaled: Vec::new(),
            })
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

    /// Records how large `identity`'s viewer draws the picture (device pixels): larger pictures
    /// are scaled down to it before they are encoded.
    pub fn fit(&self, identity: &str, width: u32, height: u32) {
        self.slots().entry(identity.to_string()).or_default().fit = Some((width.max(1), height.max(1)));
    }

    fn fit_of(&self, identity: &str) -> Option<(u32, u32)> {
        self.slots().get(identity).and_then(|slot| slot.fit)
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
    resizer: fast_image_resize::Resizer,
    /// The scaled picture (RGBA), reused from picture to picture.
    scaled: Vec<u8>,
}

impl VideoSink for JpegSink {
    fn frame(&mut self, _identity: &str, _index: u64, frame: &ReceivedVideoFrame) {
        if !self.shelf.wanted(&self.identity) {
            return;
        }
        let encoded =
            match self.shelf.fit_of(&self.identity).and_then(|fit| scaled_size(frame.width, frame.height, fit)) {
                Some((width, height)) => scale(&mut self.resizer, frame, width, height, &mut self.scaled)
                    .and_then(|()| encode_jpeg(&self.scaled, width, height)),
                None => encode_jpeg(&frame.rgba, frame.width, frame.height),
            };
        // The size received (the layer), not the size encoded: the viewer shows it.
        match encoded {
            Ok(jpeg) => self.shelf.put(&self.identity, frame.width, frame.height, jpeg),
            Err(error) if !self.failed => {
                self.failed = true;
                tracing::warn!(%error, identity = %self.identity, "cannot encode a shared picture");
            }
            Err(_) => {}
        }
    }
}

/// The size to scale a `width` × `height` picture to so that it fits in `fit` (aspect kept),
/// or `None` when it already fits.
fn scaled_size(width: u32, height: u32, fit: (u32, u32)) -> Option<(u32, u32)> {
    if width <= fit.0 && height <= fit.1 {
        return None;
    }
    let ratio = f64::min(f64::from(fit.0) / f64::from(width), f64::from(fit.1) / f64::from(height));
    let scaled = |side: u32| ((f64::from(side) * ratio).round() as u32).max(1);
    Some((scaled(width), scaled(height)))
}

/// `frame` scaled to `width` × `height` into `out` (RGBA).
fn scale(
    resizer: &mut fast_image_resize::Resizer,
    frame: &ReceivedVideoFrame,
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions};
    let source = ImageRef::new(frame.width, frame.height, &frame.rgba, PixelType::U8x4)
        .map_err(|error| format!("a {}x{} picture: {error}", frame.width, frame.height))?;
    out.resize(width as usize * height as usize * 4, 0);
    let mut target = Image::from_slice_u8(width, height, out, PixelType::U8x4).map_err(|error| error.to_string())?;
    // Bilinear is plenty for a picture shown at this size, and several times cheaper than the
    // default Lanczos; the alpha is opaque, so no premultiplying.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).use_alpha(false);
    resizer.resize(&source, &mut target, &options).map_err(|error| error.to_string())
}

/// `width` × `height` RGBA pixels as a JPEG.
fn encode_jpeg(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let (Ok(width), Ok(height)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(format!("a {width}x{height} picture is too large for JPEG"));
    };
    if rgba.len() != usize::from(width) * usize::from(height) * 4 {
        return Err(format!("{} bytes is not a {width}x{height} RGBA picture", rgba.len()));
    }
    let mut jpeg = Vec::with_capacity(rgba.len() / 20);
    jpeg_encoder::Encoder::new(&mut jpeg, QUALITY)
        .encode(rgba, width, height, jpeg_encoder::ColorType::Rgba)
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
        assert!(encode_jpeg(&bad.rgba, 4, 4).unwrap_err().contains("not a 4x4 RGBA picture"));
        assert!(encode_jpeg(&[], 70_000, 1).unwrap_err().contains("too large"));
    }

    /// The size a baseline JPEG says it is (its SOF0 segment), width first.
    fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
        let at = jpeg.windows(2).position(|marker| marker == [0xFF, 0xC0]).expect("a SOF0 segment");
        let read = |offset: usize| u32::from(u16::from_be_bytes([jpeg[at + offset], jpeg[at + offset + 1]]));
        (read(7), read(5))
    }

    #[test]
    fn pictures_are_scaled_to_fit_the_viewer_with_their_aspect_kept() {
        assert_eq!(scaled_size(1920, 1080, (900, 600)), Some((900, 506)));
        assert_eq!(scaled_size(1920, 1080, (400, 400)), Some((400, 225)));
        assert_eq!(scaled_size(1280, 720, (1920, 1080)), None, "never enlarged");
        assert_eq!(scaled_size(1280, 720, (1280, 720)), None);
    }

    #[tokio::test]
    async fn a_viewer_smaller_than_the_picture_gets_it_scaled_to_its_size() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        shelf.fit("alice", 320, 240);
        drop(shelf.next_after("alice", 0, Duration::ZERO).await);
        sink.frame("alice", 0, &picture(640, 360, [200, 40, 40]));
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!((frame.width, frame.height), (640, 360), "the size received is reported");
        assert_eq!(jpeg_size(&frame.jpeg), (320, 180), "the JPEG is the viewer's size, aspect kept");
        // Smaller than a picture that already fits, nothing changes.
        shelf.fit("alice", 1920, 1080);
        sink.frame("alice", 1, &picture(640, 360, [200, 40, 40]));
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!(jpeg_size(&frame.jpeg), (640, 360));
    }
}
