//! The pictures of the screen shares the window watches: each share's latest picture, for the
//! desktop shell to show, as a JPEG its viewer loads or as pixels it paints itself.
//!
//! WebKitGTK has no WebRTC, so the window cannot receive video itself: the core decodes it.
//! Where the shell draws pictures natively (Linux: a GTK surface over the viewer's place in the
//! page, [`Painter`]), each picture goes to it as BGRx rows, scaled to the viewer. Elsewhere the
//! shell serves the latest picture over a custom URI scheme as a JPEG, which the viewer
//! long-polls ([`FrameShelf::next_for`]). `cargo xtask bench app` measured both on Linux:
//! watching a 1080p30 share cost +40 to +52 % of a core through the web engine (its web process
//! alone about 14 %: each picture decoded into a new image and painted into a new shared
//! backing store, then copied into the window) and +24.5 to +28.5 % painted natively (three
//! runs; the web process under 1 %). JPEG rather than raw RGBA for the web engine: a 1080p picture is 8.3 MB raw
//! (250 MB/s at 30 fps through the web engine's IPC, copied into a canvas) and about 220 kB as
//! a JPEG, which the web engine decodes natively; encoding costs 6.7 ms at 720p and 13.9 ms at
//! 1080p here (`jpeg-encoder`, SIMD). A share nobody polls (hidden window) or places is not
//! encoded or painted.
//!
//! The core takes each picture as the decoder's I420 planes, not RGBA: the engine's conversion
//! to RGBA (and 2.7 times the bytes to copy and scale) would only be undone by the JPEG
//! encoder's conversion back to YCbCr, and a painted picture is converted only once scaled. A
//! picture larger than its viewer is first scaled down to the viewer's size (the size it last
//! reported, in device pixels), each plane on its own: a 1080p share in a 900-pixel room view
//! would otherwise be encoded, carried and decoded at four times the pixels it is shown at. Each halving the viewer allows is a plain 2×2 average, and
//! only what is left goes through `fast_image_resize`'s bilinear filter (SIMD), unless the
//! halved picture is within 15 % of the viewer (the window scales that last step as it draws):
//! filtering the whole 1080p picture down to a room view was the watch thread's largest cost.
//! A picture the same as the last one (a still screen) is not encoded, painted or sent again.
//! The planes then go into the JPEG as they are, their range widened from video's (16–235) to
//! JPEG's (0–255).
//! `cargo xtask bench app` measures what watching costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use parley_livekit_ffi::{PixelFormat, ReceivedVideoFrame};
use tokio::sync::watch;

use crate::session::{VideoSink, ViewerFactory};

mod scale;

use scale::{Plane, Scaler, planes, scaled_size};

/// JPEG quality: text on a shared screen stays legible, a 1080p picture stays near 200 kB.
const QUALITY: u8 = 80;
/// A share whose viewer asked for nothing this long is not encoded (the window is hidden).
const IDLE_VIEWER: Duration = Duration::from_secs(2);

/// Paints watched shares' pictures natively (the desktop shell on Linux): each new picture of
/// a share whose viewer is placed ([`FrameShelf::place`]) comes here instead of onto the shelf.
/// Called on the session's watch thread: it copies what it needs and returns.
pub trait Painter: Send + Sync {
    /// `identity`'s new picture: `width` × `height` pixels, rows of 4-byte BGRx packed.
    fn paint(&self, identity: &str, width: u32, height: u32, bgrx: &[u8]);
}

/// One share's latest picture.
#[derive(Debug, Clone)]
pub struct ShareFrame {
    /// Grows with every picture on the shelf (any share's): what a viewer was handed last.
    pub seq: u64,
    pub jpeg: Arc<[u8]>,
}

/// The latest picture of each watched share. Cheap to clone: clones share the shelf.
#[derive(Clone)]
pub struct FrameShelf {
    inner: Arc<Shelf>,
}

struct Shelf {
    /// Set once by a shell that paints pictures itself.
    painter: Mutex<Option<Arc<dyn Painter>>>,
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
    /// A native viewer shows this share now ([`FrameShelf::place`]).
    placed: bool,
    /// The `seq` of the picture each viewer (by the name it gives) was handed last
    /// ([`FrameShelf::next_for`]); forgotten with the share.
    handed: HashMap<String, u64>,
}

impl Default for FrameShelf {
    fn default() -> FrameShelf {
        FrameShelf {
            inner: Arc::new(Shelf {
                painter: Mutex::new(None),
                slots: Mutex::new(HashMap::new()),
                version: watch::channel(0).0,
            }),
        }
    }
}

impl FrameShelf {
    /// Makes the sink of each watched share: its pictures land on this shelf.
    pub fn viewer(&self) -> ViewerFactory {
        let shelf = self.clone();
        Arc::new(move |identity: &str| -> Box<dyn VideoSink> {
            Box::new(PictureSink {
                identity: identity.to_string(),
                shelf: shelf.clone(),
                failed: false,
                scaler: Scaler::default(),
                picture: Vec::new(),
                shown: Vec::new(),
                shown_as: None,
                bgrx: Vec::new(),
            })
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, pictures of placed shares go to `painter` (converted to BGRx) instead of
    /// onto the shelf as JPEGs.
    pub fn paint_with(&self, painter: Arc<dyn Painter>) {
        *self.inner.painter.lock().unwrap_or_else(PoisonError::into_inner) = Some(painter);
    }

    fn painter(&self) -> Option<Arc<dyn Painter>> {
        self.inner.painter.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether a native viewer shows `identity`'s share (`false` while it is hidden, e.g. under
    /// a menu, or closed): only then are its pictures converted and painted.
    pub fn place(&self, identity: &str, shown: bool) {
        let mut slots = self.slots();
        match slots.get_mut(identity) {
            Some(slot) => slot.placed = shown,
            None if shown => slots.entry(identity.to_string()).or_default().placed = true,
            None => {}
        }
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

    /// `identity`'s first picture newer than the one `viewer` was handed last (any picture for
    /// a viewer new to the shelf), as [`FrameShelf::next_after`]. For a viewer that cannot
    /// carry a picture's `seq` over to its next request (an `<img>` reads no headers).
    pub async fn next_for(&self, identity: &str, viewer: &str, timeout: Duration) -> Option<ShareFrame> {
        let after = self.slots().get(identity).and_then(|slot| slot.handed.get(viewer).copied()).unwrap_or(0);
        let frame = self.next_after(identity, after, timeout).await?;
        // The share may have been closed meanwhile: then there is no slot to remember it in.
        if let Some(slot) = self.slots().get_mut(identity) {
            slot.handed.insert(viewer.to_string(), frame.seq);
        }
        Some(frame)
    }

    /// Records how large `identity`'s viewer draws the picture (device pixels): larger pictures
    /// are scaled down to it before they are encoded.
    pub fn fit(&self, identity: &str, width: u32, height: u32) {
        let fit = Some((width.max(1), height.max(1)));
        let before = std::mem::replace(&mut self.slots().entry(identity.to_string()).or_default().fit, fit);
        if before != fit {
            tracing::info!(identity, width, height, "a screen share's viewer is drawn at a new size");
        }
    }

    /// Forgets `identity`'s share (no longer watched).
    pub fn remove(&self, identity: &str) {
        self.slots().remove(identity);
    }

    /// Whether a viewer asked for `identity`'s pictures lately or a native one shows it (`None`
    /// if not), and if so how it wants them. One look at the shelf per picture.
    fn wanted(&self, identity: &str) -> Option<Wanted> {
        let painter = self.painter();
        let slots = self.slots();
        let slot = slots.get(identity)?;
        let wanted = Wanted { fit: slot.fit, shelved: slot.frame.is_some(), painter };
        if wanted.painter.is_some() {
            return slot.placed.then_some(wanted);
        }
        slot.polled.is_some_and(|polled| polled.elapsed() < IDLE_VIEWER).then_some(wanted)
    }

    fn put(&self, identity: &str, jpeg: Vec<u8>) {
        // Under the shelf's lock, so that `seq` grows across shares.
        let mut slots = self.slots();
        let seq = *self.inner.version.borrow() + 1;
        slots.entry(identity.to_string()).or_default().frame = Some(ShareFrame { seq, jpeg: jpeg.into() });
        self.inner.version.send_replace(seq);
    }
}

/// What a share's viewer wants, as the shelf knows it.
struct Wanted {
    /// The size it draws pictures at, once it said.
    fit: Option<(u32, u32)>,
    /// Whether the shelf holds a picture of the share.
    shelved: bool,
    /// Who paints the pictures, where the shell paints them itself.
    painter: Option<Arc<dyn Painter>>,
}

/// Scales each picture of one share for its viewer, then hands it to the shell's painter or
/// encodes it onto the shelf (on the session's watch thread).
struct PictureSink {
    identity: String,
    shelf: FrameShelf,
    /// An encoding failure was logged (once per share).
    failed: bool,
    scaler: Scaler,
    /// The picture to hand on (I420, scaled to the viewer), reused from picture to picture.
    picture: Vec<u8>,
    /// The last picture put on the shelf, before encoding, and its sizes: the same picture
    /// again (a still screen, which the decoder hands over at the full frame rate) is neither
    /// encoded again nor sent to the viewer, which would decode and paint it again.
    shown: Vec<u8>,
    shown_as: Option<Encoding>,
    /// The picture as a native viewer paints it (BGRx), reused from picture to picture.
    bgrx: Vec<u8>,
}

/// The size of a picture as received and as encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Encoding {
    received: (u32, u32),
    encoded: (u32, u32),
}

impl VideoSink for PictureSink {
    fn format(&self) -> PixelFormat {
        PixelFormat::I420
    }

    fn frame(&mut self, _identity: &str, _index: u64, frame: &ReceivedVideoFrame) {
        let Some(Wanted { fit, shelved, painter }) = self.shelf.wanted(&self.identity) else { return };
        let picture = match fit.and_then(|fit| scaled_size(frame.width, frame.height, fit)) {
            Some((width, height)) => self.scaler.scale(frame, width, height, &mut self.picture),
            None => {
                self.picture.clear();
                self.picture.extend_from_slice(&frame.data);
                Ok((frame.width, frame.height))
            }
        };
        let encoded = picture.and_then(|(width, height)| {
            let encoding = Encoding { received: (frame.width, frame.height), encoded: (width, height) };
            if (shelved || painter.is_some()) && self.shown_as == Some(encoding) && self.picture == self.shown {
                return Ok(None);
            }
            let jpeg = match painter {
                Some(painter) => {
                    to_bgrx(&self.picture, width, height, &mut self.bgrx)?;
                    painter.paint(&self.identity, width, height, &self.bgrx);
                    None
                }
                None => Some(encode_jpeg(&self.picture, width, height)?),
            };
            std::mem::swap(&mut self.picture, &mut self.shown);
            self.shown_as = Some(encoding);
            Ok(jpeg)
        });
        match encoded {
            Ok(Some(jpeg)) => self.shelf.put(&self.identity, jpeg),
            Ok(None) => {}
            Err(error) if !self.failed => {
                self.failed = true;
                tracing::warn!(%error, identity = %self.identity, "cannot encode a shared picture");
            }
            Err(_) => {}
        }
    }
}

/// A packed I420 picture as the JPEG encoder reads it: a row at a time, each chroma sample
/// repeated for the two pixels it covers (the encoder averages them back to 4:2:0), every
/// sample widened from video's range to JPEG's.
struct I420Image<'a> {
    planes: [Plane<'a>; 3],
    width: u16,
    height: u16,
}

/// Video's luma range (16–235) widened to 0–255, and its chroma (16–240 about 128) to 0–255:
/// JPEG's YCbCr is full-range BT.601, the decoder's I420 is limited-range BT.601.
static LUMA: [u8; 256] = widen(16, 219);
static CHROMA: [u8; 256] = widen(16, 224);

const fn widen(low: i32, span: i32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut value = 0;
    while value < 256 {
        let wide = ((value - low) * 255 + span / 2) / span;
        table[value as usize] = if wide < 0 {
            0
        } else if wide > 255 {
            255
        } else {
            wide as u8
        };
        value += 1;
    }
    table
}

impl jpeg_encoder::ImageBuffer for I420Image<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let width = usize::from(self.width);
        let [luma, u, v] = self.planes;
        let row = usize::from(y);
        let luma = &luma.samples[row * width..(row + 1) * width];
        buffers[0].extend(luma.iter().map(|&sample| LUMA[usize::from(sample)]));
        let chroma_width = u.width as usize;
        let line = row / 2 * chroma_width..(row / 2 + 1) * chroma_width;
        for (plane, buffer) in [u, v].into_iter().zip(&mut buffers[1..3]) {
            let widened = plane.samples[line.clone()].iter().map(|&sample| CHROMA[usize::from(sample)]);
            buffer.extend(widened.flat_map(|sample| [sample, sample]).take(width));
        }
    }
}

/// A packed `width` × `height` I420 picture (limited-range BT.601, as the decoder gives it) as
/// BGRx rows into `out`.
fn to_bgrx(i420: &[u8], width: u32, height: u32, out: &mut Vec<u8>) -> Result<(), String> {
    let [y, u, v] = planes(i420, width, height)?;
    out.resize(width as usize * height as usize * 4, 0);
    let image = yuvutils_rs::YuvPlanarImage {
        y_plane: y.samples,
        y_stride: y.width,
        u_plane: u.samples,
        u_stride: u.width,
        v_plane: v.samples,
        v_stride: v.width,
        width,
        height,
    };
    yuvutils_rs::yuv420_to_bgra(
        &image,
        out,
        width * 4,
        yuvutils_rs::YuvRange::Limited,
        yuvutils_rs::YuvStandardMatrix::Bt601,
    )
    .map_err(|error| format!("converting a {width}x{height} picture: {error}"))
}

/// A packed `width` × `height` I420 picture as a JPEG.
fn encode_jpeg(i420: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let (Ok(short_width), Ok(short_height)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(format!("a {width}x{height} picture is too large for JPEG"));
    };
    let image = I420Image { planes: planes(i420, width, height)?, width: short_width, height: short_height };
    let mut jpeg = Vec::with_capacity(i420.len() / 8);
    jpeg_encoder::Encoder::new(&mut jpeg, QUALITY).encode_image(image).map_err(|error| error.to_string())?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rgb` as limited-range BT.601 YCbCr, as the decoder gives it (libyuv's constants).
    fn ycbcr(rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(f64::from);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        [y, cb, cr].map(|value| value.round() as u8)
    }

    /// A `width` × `height` I420 picture, its left half `left` and its right half `right`.
    fn halves(width: u32, height: u32, left: [u8; 3], right: [u8; 3]) -> ReceivedVideoFrame {
        let colour = |x: u32, columns: u32| if x < columns / 2 { ycbcr(left) } else { ycbcr(right) };
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let mut data: Vec<u8> = (0..width * height).map(|at| colour(at % width, width)[0]).collect();
        for channel in [1, 2] {
            data.extend((0..chroma_width * chroma_height).map(|at| colour(at % chroma_width, chroma_width)[channel]));
        }
        ReceivedVideoFrame { width, height, timestamp_us: 0, format: PixelFormat::I420, data }
    }

    fn picture(width: u32, height: u32, rgb: [u8; 3]) -> ReceivedVideoFrame {
        halves(width, height, rgb, rgb)
    }

    /// The JPEG's pixel at (`x`, `y`), decoded as a browser would.
    fn decoded_pixel(jpeg: &[u8], x: usize, y: usize) -> [u8; 3] {
        let mut decoder = jpeg_decoder::Decoder::new(jpeg);
        let pixels = decoder.decode().expect("a JPEG that decodes");
        let width = usize::from(decoder.info().expect("its header").width);
        let at = (y * width + x) * 3;
        [pixels[at], pixels[at + 1], pixels[at + 2]]
    }

    fn assert_near(found: [u8; 3], expected: [u8; 3], what: &str) {
        let off = found.iter().zip(expected).map(|(&a, b)| (i32::from(a) - i32::from(b)).abs()).max().unwrap_or(0);
        assert!(off <= 10, "{what}: decoded {found:?}, expected {expected:?}");
    }

    #[test]
    fn the_jpeg_shows_the_colours_that_were_shared_black_and_white_included() {
        // Video's range is 16–235: put into a JPEG as it is, white would show light grey and
        // black dark grey (washed-out text).
        for (left, right) in
            [([255, 255, 255], [0, 0, 0]), ([230, 30, 30], [30, 60, 220]), ([20, 200, 40], [250, 220, 0])]
        {
            let frame = halves(64, 32, left, right);
            let jpeg = encode_jpeg(&frame.data, 64, 32).expect("encoded");
            assert_near(decoded_pixel(&jpeg, 12, 16), left, "the left half");
            assert_near(decoded_pixel(&jpeg, 52, 16), right, "the right half");
        }
        // Odd sizes: the chroma planes round up, and the picture still encodes.
        let odd = halves(33, 17, [230, 30, 30], [30, 60, 220]);
        let jpeg = encode_jpeg(&odd.data, 33, 17).expect("an odd size encodes");
        assert_near(decoded_pixel(&jpeg, 4, 8), [230, 30, 30], "odd size, left");
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
        assert_eq!(jpeg_size(&first.jpeg), (64, 32));
        assert_eq!(&first.jpeg[..2], &[0xFF, 0xD8], "a JPEG");

        let none = shelf.next_after("alice", first.seq, Duration::from_millis(100)).await;
        assert!(none.is_none(), "no newer picture: the viewer hears nothing");
        sink.frame("alice", 2, &picture(64, 32, [0, 0, 255]));
        let second = shelf.next_after("alice", first.seq, Duration::from_secs(1)).await.expect("the next one");
        assert!(second.seq > first.seq);

        shelf.remove("alice");
        assert!(shelf.latest("alice").is_none());
    }

    #[tokio::test]
    async fn each_viewer_by_its_name_is_handed_each_new_picture_once() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        drop(shelf.next_for("alice", "room", Duration::ZERO).await);
        sink.frame("alice", 0, &picture(64, 32, [255, 0, 0]));
        let first = shelf.next_for("alice", "room", Duration::from_secs(1)).await.expect("the first picture");
        // Another viewer (the share's own window) gets the same picture; the first waits.
        let window = shelf.next_for("alice", "window", Duration::from_secs(1)).await.expect("for the window too");
        assert_eq!(window.seq, first.seq);
        assert!(shelf.next_for("alice", "room", Duration::from_millis(100)).await.is_none(), "nothing new");
        sink.frame("alice", 1, &picture(64, 32, [0, 0, 255]));
        let second = shelf.next_for("alice", "room", Duration::from_secs(1)).await.expect("the next picture");
        assert!(second.seq > first.seq);
        // Closed and opened again, the share starts afresh for every viewer.
        shelf.remove("alice");
        drop(shelf.next_for("alice", "room", Duration::ZERO).await);
        sink.frame("alice", 2, &picture(64, 32, [0, 255, 0]));
        let reopened = shelf.next_for("alice", "room", Duration::from_secs(1)).await.expect("a picture");
        assert!(reopened.seq > second.seq);
    }

    #[test]
    fn a_picture_that_is_not_i420_of_its_size_is_refused() {
        let mut bad = picture(4, 4, [0, 0, 0]);
        bad.data.pop();
        assert!(encode_jpeg(&bad.data, 4, 4).unwrap_err().contains("not a 4x4 I420 picture"));
        assert!(encode_jpeg(&[], 70_000, 1).unwrap_err().contains("too large"));
    }

    /// The size a baseline JPEG says it is (its SOF0 segment), width first.
    fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
        let at = jpeg.windows(2).position(|marker| marker == [0xFF, 0xC0]).expect("a SOF0 segment");
        let read = |offset: usize| u32::from(u16::from_be_bytes([jpeg[at + offset], jpeg[at + offset + 1]]));
        (read(7), read(5))
    }

    #[tokio::test]
    async fn a_viewer_smaller_than_half_the_picture_gets_it_halved_then_filtered_unless_close_enough() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        drop(shelf.next_after("alice", 0, Duration::ZERO).await);
        let shared = halves(1280, 720, [230, 30, 30], [30, 30, 230]);
        // Into 250 wide: halved twice (320×180), then filtered to 250×141.
        shelf.fit("alice", 250, 250);
        sink.frame("alice", 0, &shared);
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!(jpeg_size(&frame.jpeg), (250, 141));
        assert_near(decoded_pixel(&frame.jpeg, 40, 70), [230, 30, 30], "the left half");
        assert_near(decoded_pixel(&frame.jpeg, 210, 70), [30, 30, 230], "the right half");
        // The edge between them stays where it was: a column just either side keeps its colour.
        assert_near(decoded_pixel(&frame.jpeg, 115, 70), [230, 30, 30], "left of the edge");
        assert_near(decoded_pixel(&frame.jpeg, 135, 70), [30, 30, 230], "right of the edge");
        // Into 300 wide: the halved 320×180 is close enough, and the window scales it.
        shelf.fit("alice", 300, 300);
        sink.frame("alice", 1, &shared);
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!(jpeg_size(&frame.jpeg), (320, 180));
        assert_near(decoded_pixel(&frame.jpeg, 150, 90), [230, 30, 30], "left of the edge, halved");
        assert_near(decoded_pixel(&frame.jpeg, 170, 90), [30, 30, 230], "right of the edge, halved");
    }

    #[tokio::test]
    async fn a_still_picture_is_shelved_once_until_it_or_the_viewer_changes() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        drop(shelf.next_after("alice", 0, Duration::ZERO).await);
        let still = picture(64, 32, [200, 40, 40]);
        sink.frame("alice", 0, &still);
        let first = shelf.latest("alice").expect("a picture").seq;
        sink.frame("alice", 1, &still);
        assert_eq!(shelf.latest("alice").expect("a picture").seq, first, "the same picture is not sent again");
        sink.frame("alice", 2, &picture(64, 32, [40, 200, 40]));
        let changed = shelf.latest("alice").expect("a picture").seq;
        assert!(changed > first, "a changed picture is");
        shelf.fit("alice", 32, 32);
        sink.frame("alice", 3, &picture(64, 32, [40, 200, 40]));
        let fitted = shelf.latest("alice").expect("a picture");
        assert!(fitted.seq > changed, "so is the same picture for a viewer of another size");
        assert_eq!(jpeg_size(&fitted.jpeg), (32, 16));
        // A viewer closed and opened again finds the still picture on the shelf.
        shelf.remove("alice");
        drop(shelf.next_after("alice", 0, Duration::ZERO).await);
        shelf.fit("alice", 32, 32);
        sink.frame("alice", 4, &picture(64, 32, [40, 200, 40]));
        assert!(shelf.latest("alice").is_some(), "the reopened viewer gets the picture");
    }

    #[tokio::test]
    async fn a_viewer_smaller_than_the_picture_gets_it_scaled_to_its_size() {
        let shelf = FrameShelf::default();
        let mut sink = (shelf.viewer())("alice");
        shelf.fit("alice", 320, 240);
        drop(shelf.next_after("alice", 0, Duration::ZERO).await);
        sink.frame("alice", 0, &halves(640, 360, [200, 40, 40], [40, 200, 40]));
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!(jpeg_size(&frame.jpeg), (320, 180), "the JPEG is the viewer's size, aspect kept");
        // Each plane scaled on its own, and put back where it belongs.
        assert_near(decoded_pixel(&frame.jpeg, 60, 90), [200, 40, 40], "the scaled left half");
        assert_near(decoded_pixel(&frame.jpeg, 260, 90), [40, 200, 40], "the scaled right half");
        // Smaller than a picture that already fits, nothing changes.
        shelf.fit("alice", 1920, 1080);
        sink.frame("alice", 1, &picture(640, 360, [200, 40, 40]));
        let frame = shelf.latest("alice").expect("a picture");
        assert_eq!(jpeg_size(&frame.jpeg), (640, 360));
    }

    /// One picture a native viewer was handed: identity, width, height, BGRx.
    type PaintedPicture = (String, u32, u32, Vec<u8>);

    /// What a native viewer was handed.
    #[derive(Default)]
    struct Painted(Mutex<Vec<PaintedPicture>>);

    impl Painter for Painted {
        fn paint(&self, identity: &str, width: u32, height: u32, bgrx: &[u8]) {
            self.0.lock().expect("not poisoned").push((identity.to_string(), width, height, bgrx.to_vec()));
        }
    }

    impl Painted {
        fn count(&self) -> usize {
            self.0.lock().expect("not poisoned").len()
        }

        /// The last picture's pixel at (`x`, `y`) as RGB.
        fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
            let painted = self.0.lock().expect("not poisoned");
            let (_, width, _, bgrx) = painted.last().expect("a painted picture");
            let at = (y * *width as usize + x) * 4;
            [bgrx[at + 2], bgrx[at + 1], bgrx[at]]
        }
    }

    #[test]
    fn a_native_viewer_is_painted_each_new_picture_in_its_colours_only_while_placed() {
        let shelf = FrameShelf::default();
        let painted = Arc::new(Painted::default());
        shelf.paint_with(painted.clone());
        let mut sink = (shelf.viewer())("alice");
        let first = halves(64, 32, [230, 30, 30], [30, 60, 220]);
        sink.frame("alice", 0, &first);
        assert_eq!(painted.count(), 0, "no viewer shows the share yet: nothing is converted");

        shelf.place("alice", true);
        sink.frame("alice", 1, &first);
        assert_eq!(painted.count(), 1);
        {
            let list = painted.0.lock().expect("not poisoned");
            let (identity, width, height, bgrx) = &list[0];
            assert_eq!((identity.as_str(), *width, *height, bgrx.len()), ("alice", 64, 32, 64 * 32 * 4));
        }
        assert_near(painted.pixel(12, 16), [230, 30, 30], "the left half");
        assert_near(painted.pixel(52, 16), [30, 60, 220], "the right half");
        sink.frame("alice", 2, &first);
        assert_eq!(painted.count(), 1, "the same picture again (a still screen) is not painted again");
        // White and black stay white and black (video's range is widened).
        sink.frame("alice", 3, &halves(64, 32, [255, 255, 255], [0, 0, 0]));
        assert_eq!(painted.count(), 2);
        assert_near(painted.pixel(12, 16), [255, 255, 255], "white");
        assert_near(painted.pixel(52, 16), [0, 0, 0], "black");
        assert!(shelf.latest("alice").is_none(), "painted pictures are not encoded onto the shelf");

        // Scaled to the viewer before it is converted.
        shelf.fit("alice", 32, 16);
        sink.frame("alice", 4, &first);
        assert_eq!(painted.0.lock().expect("not poisoned").last().map(|(_, w, h, _)| (*w, *h)), Some((32, 16)));

        shelf.place("alice", false);
        sink.frame("alice", 5, &halves(64, 32, [20, 200, 40], [250, 220, 0]));
        assert_eq!(painted.count(), 3, "a hidden viewer is not painted");
        shelf.remove("alice");
        shelf.place("alice", false);
        assert!(shelf.slots().get("alice").is_none(), "hiding a share nobody watches leaves nothing behind");
    }
}
