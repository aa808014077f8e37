//! Video in and out of the engine, for screen sharing: pictures we fill ([`VideoFrame`]), the
//! source they enter through ([`VideoSource`]), the track we publish ([`LocalVideoTrack`],
//! [`VideoPublishOptions`]), and remote pictures received as RGBA or I420 ([`VideoStream`]).
//!
//! What is copied where:
//! * [`VideoSource::capture`] is one synchronous request. The engine reads our buffer during
//!   the call and converts it into its own I420 picture (libyuv; RGBA/BGRA are converted, I420
//!   planes are copied), which the encoder then owns; our buffer is free again when the call
//!   returns. We allocate nothing per frame beyond the request's few bytes of protobuf.
//! * A received frame is decoded to I420 by the engine, and converted to RGBA when the stream
//!   asked for RGBA; [`VideoStream`] copies those pixels once into the frame it hands out (into
//!   the caller's allocation with [`VideoStream::next_frame_into`]) and releases the engine's
//!   buffer at once. A reader that can take I420 saves the conversion and 5/8 of the copy.
//! * Frames travel from the engine's event thread to a [`VideoStream`] through a small bounded
//!   queue; a frame that finds it full is released and counted ([`VideoStream::dropped_frames`])
//!   rather than waited for, so a slow viewer never holds the event thread (or audio) back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::engine::{Engine, OwnedHandle, VideoRoute};
use crate::error::Error;
use crate::proto;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;
use crate::room::{LocalParticipant, LocalTrackPublication};
use crate::track::{RemoteVideoTrack, TrackSource};

/// Largest width or height accepted for a picture we send.
const MAX_DIMENSION: u32 = 8192;

/// How the pixels of a [`VideoFrame`] or a [`ReceivedVideoFrame`] are laid out (tightly
/// packed, no row padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// 4 bytes a pixel: red, green, blue, alpha.
    #[default]
    Rgba,
    /// 4 bytes a pixel: blue, green, red, alpha (what X11 and most screen capture give).
    Bgra,
    /// Planar 4:2:0: the Y plane (width × height), then U and V (each ⌈width/2⌉ × ⌈height/2⌉).
    I420,
}

impl PixelFormat {
    /// Bytes a `width` × `height` picture takes in this format.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        let (width, height) = (width as usize, height as usize);
        match self {
            PixelFormat::Rgba | PixelFormat::Bgra => width * height * 4,
            PixelFormat::I420 => width * height + 2 * width.div_ceil(2) * height.div_ceil(2),
        }
    }

    fn to_proto(self) -> proto::VideoBufferType {
        match self {
            PixelFormat::Rgba => proto::VideoBufferType::Rgba,
            PixelFormat::Bgra => proto::VideoBufferType::Bgra,
            PixelFormat::I420 => proto::VideoBufferType::I420,
        }
    }
}

/// A picture our code fills and hands to [`VideoSource::capture`]. It owns one buffer of
/// exactly [`PixelFormat::frame_len`] bytes; reuse it from frame to frame.
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    format: PixelFormat,
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "VideoFrame({:?} {}x{})", self.format, self.width, self.height)
    }
}

impl VideoFrame {
    /// A black-filled (zeroed) picture. Errors: [`Error::InvalidArgument`] for a zero or huge size.
    pub fn new(format: PixelFormat, width: u32, height: u32) -> Result<VideoFrame, Error> {
        check_dimensions(width, height)?;
        Ok(VideoFrame { format, width, height, data: vec![0; format.frame_len(width, height)] })
    }

    /// Wraps pixels already laid out as `format` says.
    ///
    /// Errors: [`Error::InvalidArgument`] when `data` is not exactly the picture's length.
    pub fn from_vec(format: PixelFormat, width: u32, height: u32, data: Vec<u8>) -> Result<VideoFrame, Error> {
        check_dimensions(width, height)?;
        let expected = format.frame_len(width, height);
        if data.len() != expected {
            return Err(Error::InvalidArgument(format!(
                "a {width}x{height} {format:?} picture is {expected} bytes, got {}",
                data.len()
            )));
        }
        Ok(VideoFrame { format, width, height, data })
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row of the (first) plane: width × 4 for RGBA/BGRA, width for I420's Y plane.
    pub fn stride(&self) -> usize {
        match self.format {
            PixelFormat::Rgba | PixelFormat::Bgra => self.width as usize * 4,
            PixelFormat::I420 => self.width as usize,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The Y, U and V planes of an I420 picture; `None` for packed formats.
    pub fn i420_planes_mut(&mut self) -> Option<(&mut [u8], &mut [u8], &mut [u8])> {
        if self.format != PixelFormat::I420 {
            return None;
        }
        let (luma, chroma) = self.i420_plane_lengths();
        let (y, rest) = self.data.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(chroma);
        Some((y, u, v))
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }

    fn i420_plane_lengths(&self) -> (usize, usize) {
        let (width, height) = (self.width as usize, self.height as usize);
        (width * height, width.div_ceil(2) * height.div_ceil(2))
    }

    /// Describes the buffer for the engine, which reads it during the request only.
    fn buffer_info(&self) -> proto::VideoBufferInfo {
        let base = self.data.as_ptr() as u64;
        let components = match self.format {
            PixelFormat::Rgba | PixelFormat::Bgra => Vec::new(),
            PixelFormat::I420 => {
                // The engine copies each plane into a buffer of exactly stride × rows bytes and
                // aborts if the sizes differ: they are derived here from the same numbers.
                let (luma, chroma) = self.i420_plane_lengths();
                let chroma_width = self.width.div_ceil(2);
                let plane = |offset: usize, stride: u32, size: usize| proto::video_buffer_info::ComponentInfo {
                    data_ptr: base + offset as u64,
                    stride,
                    size: size as u32,
                };
                vec![
                    plane(0, self.width, luma),
                    plane(luma, chroma_width, chroma),
                    plane(luma + chroma, chroma_width, chroma),
                ]
            }
        };
        proto::VideoBufferInfo {
            r#type: self.format.to_proto() as i32,
            width: self.width,
            height: self.height,
            data_ptr: base,
            stride: Some(self.stride() as u32),
            components,
        }
    }
}

fn check_dimensions(width: u32, height: u32) -> Result<(), Error> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::InvalidArgument(format!(
            "unsupported picture size {width}x{height} (1 to {MAX_DIMENSION} pixels each way)"
        )));
    }
    Ok(())
}

/// What a [`VideoSource`] carries; the encoder tunes itself to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoContent {
    /// A screen or window: the engine keeps the resolution (text stays sharp) and drops frames
    /// instead under congestion, and sends nothing while the picture does not change.
    Screen,
    /// A camera: the engine may lower the resolution under congestion.
    Camera,
}

/// Where our pictures enter the engine.
pub struct VideoSource {
    handle: OwnedHandle,
    width: u32,
    height: u32,
}

impl VideoSource {
    /// A source of `width` × `height` pictures (the size the encodings and simulcast layers are
    /// chosen for; frames of another size are still accepted). Any thread.
    pub fn new(engine: &'static Engine, width: u32, height: u32, content: VideoContent) -> Result<VideoSource, Error> {
        check_dimensions(width, height)?;
        let response = engine.request(RequestMessage::NewVideoSource(proto::NewVideoSourceRequest {
            r#type: proto::VideoSourceType::VideoSourceNative as i32,
            resolution: proto::VideoSourceResolution { width, height },
            is_screencast: Some(content == VideoContent::Screen),
        }))?;
        let ResponseMessage::NewVideoSource(response) = response else {
            return Err(Error::Protocol("new-video-source answered with another response".into()));
        };
        Ok(VideoSource { handle: engine.own(response.source.handle.id), width, height })
    }

    /// The size given at creation.
    pub fn resolution(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Sends one picture. `timestamp_us` is its capture time in microseconds on any monotonic
    /// clock (increasing from frame to frame); the engine maps it onto its own clock.
    ///
    /// Synchronous: the engine converts (or copies) the picture before returning — for
    /// 1280 × 720 RGBA about a millisecond of libyuv work — so `frame` can be refilled at once.
    /// Call it from the capture thread; from async code, keep it off latency-sensitive tasks.
    ///
    /// Errors: engine errors (a released source).
    pub fn capture(&self, frame: &VideoFrame, timestamp_us: i64) -> Result<(), Error> {
        let response =
            self.handle.engine().request(RequestMessage::CaptureVideoFrame(proto::CaptureVideoFrameRequest {
                source_handle: self.handle.id(),
                buffer: frame.buffer_info(),
                timestamp_us,
                rotation: proto::VideoRotation::VideoRotation0 as i32,
                metadata: None,
            }))?;
        match response {
            ResponseMessage::CaptureVideoFrame(_) => Ok(()),
            _ => Err(Error::Protocol("capture-video-frame answered with another response".into())),
        }
    }
}

/// A local video track fed by a [`VideoSource`]; publish it with
/// [`LocalParticipant::publish_video_track`], stop with
/// [`LocalParticipant::unpublish_track`].
pub struct LocalVideoTrack {
    handle: OwnedHandle,
    pub sid: String,
}

impl LocalVideoTrack {
    pub fn new(name: &str, source: &VideoSource) -> Result<LocalVideoTrack, Error> {
        let engine = source.handle.engine();
        let response = engine.request(RequestMessage::CreateVideoTrack(proto::CreateVideoTrackRequest {
            name: name.to_string(),
            source_handle: source.handle.id(),
        }))?;
        let ResponseMessage::CreateVideoTrack(response) = response else {
            return Err(Error::Protocol("create-video-track answered with another response".into()));
        };
        Ok(LocalVideoTrack { handle: engine.own(response.track.handle.id), sid: response.track.info.sid })
    }

    /// Pauses or resumes the track: others see it muted, and nothing is sent.
    pub fn set_muted(&self, muted: bool) -> Result<bool, Error> {
        let response = self.handle.engine().request(RequestMessage::LocalTrackMute(proto::LocalTrackMuteRequest {
            track_handle: self.handle.id(),
            mute: muted,
        }))?;
        match response {
            ResponseMessage::LocalTrackMute(response) => Ok(response.muted),
            _ => Err(Error::Protocol("track-mute answered with another response".into())),
        }
    }
}

/// The video codecs the engine can publish with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// Decoded by every browser and SDK.
    #[default]
    Vp8,
    H264,
    Vp9,
    Av1,
    H265,
}

impl VideoCodec {
    fn to_proto(self) -> proto::VideoCodec {
        match self {
            VideoCodec::Vp8 => proto::VideoCodec::Vp8,
            VideoCodec::H264 => proto::VideoCodec::H264,
            VideoCodec::Vp9 => proto::VideoCodec::Vp9,
            VideoCodec::Av1 => proto::VideoCodec::Av1,
            VideoCodec::H265 => proto::VideoCodec::H265,
        }
    }
}

/// The top encoding's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoEncoding {
    /// Bits per second.
    pub max_bitrate: u64,
    /// Frames per second.
    pub max_framerate: f64,
}

/// What the encoder gives up first when the bandwidth (or the CPU) is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degradation {
    /// Lower both a little (the engine's choice).
    Balanced,
    /// Keep the frame rate, lower the resolution: smooth motion.
    MaintainFramerate,
    /// Keep the resolution, drop frames: sharp text.
    MaintainResolution,
}

impl Degradation {
    fn to_proto(self) -> proto::DegradationPreference {
        match self {
            Degradation::Balanced => proto::DegradationPreference::Balanced,
            Degradation::MaintainFramerate => proto::DegradationPreference::MaintainFramerate,
            Degradation::MaintainResolution => proto::DegradationPreference::MaintainResolution,
        }
    }
}

/// How to publish a video track.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPublishOptions {
    /// [`TrackSource::ScreenShare`] by default; the token must allow it (`can_publish_sources`).
    pub source: TrackSource,
    pub codec: VideoCodec,
    /// `None` lets the engine choose from the source's resolution.
    pub encoding: Option<VideoEncoding>,
    /// Also send lower-resolution layers, for viewers with less bandwidth.
    pub simulcast: bool,
    /// `None` leaves it to the engine (which keeps a screen's resolution).
    pub degradation: Option<Degradation>,
}

impl Default for VideoPublishOptions {
    fn default() -> VideoPublishOptions {
        VideoPublishOptions {
            source: TrackSource::ScreenShare,
            codec: VideoCodec::Vp8,
            encoding: None,
            simulcast: true,
            degradation: None,
        }
    }
}

impl LocalParticipant {
    /// Publishes a local video track (a screen share unless `options` say otherwise). Call from
    /// a tokio runtime.
    ///
    /// Errors: [`Error::NotAllowed`] at once when the grant leaves the source out (a token's
    /// `can_publish_sources` without `screen_share`: the server would ignore the request and
    /// the engine give up after 10 s); [`Error::Engine`] when the engine or the server refuses.
    pub async fn publish_video_track(
        &self,
        track: &LocalVideoTrack,
        options: &VideoPublishOptions,
    ) -> Result<LocalTrackPublication, Error> {
        let publish = proto::TrackPublishOptions {
            source: Some(options.source.to_proto() as i32),
            video_codec: Some(options.codec.to_proto() as i32),
            simulcast: Some(options.simulcast),
            video_encoding: options.encoding.map(|encoding| proto::VideoEncoding {
                max_bitrate: encoding.max_bitrate,
                max_framerate: encoding.max_framerate,
            }),
            degradation_preference: options.degradation.map(|degradation| degradation.to_proto() as i32),
            ..Default::default()
        };
        self.publish(track.handle.id(), options.source, publish).await
    }
}

/// One received picture, rows packed, in the format its stream asked for: RGBA
/// (`data.len() == width × height × 4`) or I420 (the Y plane, then U, then V:
/// [`PixelFormat::frame_len`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedVideoFrame {
    pub width: u32,
    pub height: u32,
    /// When the engine received it, microseconds on its clock.
    pub timestamp_us: i64,
    pub format: PixelFormat,
    pub data: Vec<u8>,
}

impl ReceivedVideoFrame {
    /// The Y, U and V planes of an I420 picture (U and V are ⌈width/2⌉ × ⌈height/2⌉); `None`
    /// for another format or a buffer of the wrong length.
    pub fn i420_planes(&self) -> Option<(&[u8], &[u8], &[u8])> {
        if self.format != PixelFormat::I420 || self.data.len() != PixelFormat::I420.frame_len(self.width, self.height) {
            return None;
        }
        let luma = self.width as usize * self.height as usize;
        let chroma = (self.data.len() - luma) / 2;
        let (y, rest) = self.data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        Some((y, u, v))
    }
}

/// Decoded pictures of one remote video track, as RGBA or I420. Dropping it closes the stream.
///
/// The stream ends ([`VideoStream::next_frame`] gives `None`) when the engine releases the
/// track: after [`crate::RoomEvent::TrackUnsubscribed`] (the room then lets go of its own
/// reference) once every clone of the [`RemoteVideoTrack`] is dropped too. Unsubscribing alone
/// does not end it while the caller still holds the track.
pub struct VideoStream {
    handle: OwnedHandle,
    format: PixelFormat,
    frames: mpsc::Receiver<proto::VideoFrameReceived>,
    dropped: Arc<AtomicU64>,
}

impl VideoStream {
    /// Frames queued for the reader before newer ones are dropped.
    pub const DEFAULT_QUEUE_FRAMES: usize = 2;

    /// Opens an RGBA stream on `track` with [`VideoStream::DEFAULT_QUEUE_FRAMES`]. Any thread.
    pub fn new(track: &RemoteVideoTrack) -> Result<VideoStream, Error> {
        VideoStream::with_queue(track, VideoStream::DEFAULT_QUEUE_FRAMES)
    }

    /// Opens an RGBA stream on `track` that queues up to `queue_frames` (at least 1) pictures
    /// for the reader; more arriving while it is full are dropped and counted. Any thread.
    pub fn with_queue(track: &RemoteVideoTrack, queue_frames: usize) -> Result<VideoStream, Error> {
        VideoStream::with_format(track, queue_frames, PixelFormat::Rgba)
    }

    /// Opens a stream on `track` whose pictures come as `format` (I420 skips the engine's
    /// conversion to RGBA), queueing up to `queue_frames` (at least 1). Any thread.
    pub fn with_format(
        track: &RemoteVideoTrack,
        queue_frames: usize,
        format: PixelFormat,
    ) -> Result<VideoStream, Error> {
        let engine = track.handle.engine();
        let response = engine.request(RequestMessage::NewVideoStream(proto::NewVideoStreamRequest {
            track_handle: track.handle.id(),
            r#type: proto::VideoStreamType::VideoStreamNative as i32,
            format: Some(format.to_proto() as i32),
            normalize_stride: Some(true),
            // The engine's own queue in front of ours: its default (1 picture, newest wins).
            queue_size_frames: None,
        }))?;
        let ResponseMessage::NewVideoStream(response) = response else {
            return Err(Error::Protocol("new-video-stream answered with another response".into()));
        };
        let handle = engine.own(response.stream.handle.id);
        let (sender, frames) = mpsc::channel(queue_frames.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        engine.register_video_stream(handle.id(), VideoRoute { sender, dropped: Arc::clone(&dropped) });
        Ok(VideoStream { handle, format, frames, dropped })
    }

    /// Waits for the next picture. Returns `None` when the track ended.
    pub async fn next_frame(&mut self) -> Option<ReceivedVideoFrame> {
        let mut frame = ReceivedVideoFrame::default();
        self.next_frame_into(&mut frame).await.then_some(frame)
    }

    /// Waits for the next picture and writes it into `frame`, reusing its pixel allocation.
    /// Returns false when the track ended.
    pub async fn next_frame_into(&mut self, frame: &mut ReceivedVideoFrame) -> bool {
        loop {
            let Some(received) = self.frames.recv().await else { return false };
            let owner = self.handle.engine().own(received.buffer.handle.id);
            let copied = copy_packed(&received.buffer.info, self.format, &mut frame.data);
            drop(owner);
            if copied {
                frame.width = received.buffer.info.width;
                frame.height = received.buffer.info.height;
                frame.timestamp_us = received.timestamp_us;
                frame.format = self.format;
                return true;
            }
        }
    }

    /// Pictures dropped so far because the reader was behind.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for VideoStream {
    fn drop(&mut self) {
        self.handle.engine().close_route(self.handle.id());
        // Release pictures already queued to us.
        self.frames.close();
        while let Ok(received) = self.frames.try_recv() {
            self.handle.engine().drop_handle(received.buffer.handle.id);
        }
    }
}

/// Copies a buffer the engine owns into `out` (replacing its contents), packing its rows: RGBA
/// or BGRA from its one plane, I420 from its three. False (and a warning) for a buffer that is
/// not what the stream asked for, or whose planes are smaller than their rows.
fn copy_packed(info: &proto::VideoBufferInfo, format: PixelFormat, out: &mut Vec<u8>) -> bool {
    out.clear();
    let (width, height) = (info.width as usize, info.height as usize);
    let planes: Vec<(u64, usize, usize, usize, Option<usize>)> = match format {
        PixelFormat::Rgba | PixelFormat::Bgra => {
            let row = width * 4;
            vec![(info.data_ptr, info.stride.map_or(row, |stride| stride as usize), row, height, None)]
        }
        PixelFormat::I420 => {
            let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
            let sizes = [(width, height), (chroma_width, chroma_height), (chroma_width, chroma_height)];
            if info.components.len() != 3 {
                tracing::warn!(planes = info.components.len(), "an I420 video buffer without three planes");
                return false;
            }
            info.components
                .iter()
                .zip(sizes)
                .map(|(plane, (row, rows))| {
                    (plane.data_ptr, plane.stride as usize, row, rows, Some(plane.size as usize))
                })
                .collect()
        }
    };
    let fits = |&(_, stride, row, rows, size): &(u64, usize, usize, usize, Option<usize>)| {
        stride >= row && size.is_none_or(|size| rows == 0 || size >= stride * (rows - 1) + row)
    };
    if info.r#type != format.to_proto() as i32 || !planes.iter().all(fits) {
        tracing::warn!(kind = info.r#type, width, height, "unexpected video buffer from the engine");
        return false;
    }
    for (ptr, stride, row, rows, _) in planes {
        crate::native::append_rows(ptr, stride, row, rows, out);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_follow_the_format() {
        assert_eq!(PixelFormat::Rgba.frame_len(1280, 720), 1280 * 720 * 4);
        assert_eq!(PixelFormat::I420.frame_len(1280, 720), 1280 * 720 * 3 / 2);
        // Odd sizes round the chroma planes up.
        assert_eq!(PixelFormat::I420.frame_len(3, 3), 9 + 2 * 4);
        assert!(VideoFrame::new(PixelFormat::Bgra, 0, 10).is_err(), "an empty picture is refused");
        assert!(VideoFrame::from_vec(PixelFormat::Rgba, 2, 2, vec![0; 15]).is_err(), "a short buffer is refused");
    }

    #[test]
    fn i420_planes_are_described_exactly() {
        let mut frame = VideoFrame::new(PixelFormat::I420, 5, 3).expect("frame");
        let (y, u, v) = frame.i420_planes_mut().expect("planes");
        assert_eq!((y.len(), u.len(), v.len()), (15, 6, 6));
        let info = frame.buffer_info();
        let sizes: Vec<_> = info.components.iter().map(|plane| (plane.stride, plane.size)).collect();
        assert_eq!(sizes, vec![(5, 15), (3, 6), (3, 6)]);
        assert_eq!(info.components[2].data_ptr - info.data_ptr, 21);
    }

    #[test]
    fn padded_rows_are_packed() {
        // 2 × 2 RGBA with a 12-byte stride (4 bytes of padding a row).
        let source: Vec<u8> = (0..24).collect();
        let info = proto::VideoBufferInfo {
            r#type: proto::VideoBufferType::Rgba as i32,
            width: 2,
            height: 2,
            data_ptr: source.as_ptr() as u64,
            stride: Some(12),
            components: Vec::new(),
        };
        let mut out = vec![9; 3];
        assert!(copy_packed(&info, PixelFormat::Rgba, &mut out));
        let expected: Vec<u8> = (0..8).chain(12..20).collect();
        assert_eq!(out, expected);
        assert!(!copy_packed(&info, PixelFormat::Bgra, &mut out), "not the format asked for");
    }

    #[test]
    fn i420_planes_are_packed_from_their_own_strides() {
        // 3 × 3: Y rows of 3 in a stride of 4, U and V rows of 2 in a stride of 3.
        let y: Vec<u8> = (0..12).collect();
        let u: Vec<u8> = (100..106).collect();
        let v: Vec<u8> = (200..206).collect();
        let plane = |data: &[u8], stride: u32| proto::video_buffer_info::ComponentInfo {
            data_ptr: data.as_ptr() as u64,
            stride,
            size: data.len() as u32,
        };
        let mut info = proto::VideoBufferInfo {
            r#type: proto::VideoBufferType::I420 as i32,
            width: 3,
            height: 3,
            data_ptr: y.as_ptr() as u64,
            stride: Some(4),
            components: vec![plane(&y, 4), plane(&u, 3), plane(&v, 3)],
        };
        let mut frame = ReceivedVideoFrame { width: 3, height: 3, format: PixelFormat::I420, ..Default::default() };
        assert!(copy_packed(&info, PixelFormat::I420, &mut frame.data));
        let (py, pu, pv) = frame.i420_planes().expect("three planes");
        assert_eq!(py, [0, 1, 2, 4, 5, 6, 8, 9, 10]);
        assert_eq!(pu, [100, 101, 103, 104]);
        assert_eq!(pv, [200, 201, 203, 204]);

        // A plane smaller than its rows say is refused, not read past.
        info.components[2].size = 4;
        assert!(!copy_packed(&info, PixelFormat::I420, &mut frame.data));
        info.components.pop();
        assert!(!copy_packed(&info, PixelFormat::I420, &mut frame.data), "two planes");
    }
}
