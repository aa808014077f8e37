//! Wayland capture: the xdg-desktop-portal ScreenCast portal picks the screen or window (the
//! desktop asks the user), and PipeWire carries its pictures.
//!
//! Wayland gives apps no way to read other windows; the portal is the way every Wayland desktop
//! offers (GNOME, KDE, wlroots). Opening a capturer:
//! 1. on a thread of its own, with its own D-Bus connection (`ashpd`, the portal client of the
//!    field): `CreateSession`, `SelectSources` (a monitor or a window, the cursor drawn in),
//!    `Start` (the desktop's dialog; the user may refuse), `OpenPipeWireRemote` (a socket to
//!    the PipeWire daemon that only reaches the granted stream). That thread then keeps the
//!    session open until the capturer is dropped, and notices when the desktop ends it;
//! 2. on a second thread, a PipeWire stream (`pipewire`, the PipeWire project's own Rust
//!    bindings) connected to the granted node through that socket, asking for 32-bit RGB
//!    pictures in shared memory. Each picture it receives replaces the latest one.
//!
//! [`Capturer::capture`] copies the latest picture (the desktop sends one only when something
//! changed, so a still screen repeats its last). A stream the desktop or the user ended is
//! [`CaptureError::TargetGone`]; a refused dialog is [`CaptureError::Refused`].

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ashpd::desktop::PersistMode;
use ashpd::desktop::screencast::{CursorMode, Screencast, SelectSourcesOptions, SourceType};
use pipewire as pw;
use pw::spa;

use crate::{CaptureError, Capturer, Frame, Target, TargetKind};

/// How long the user has to answer the desktop's dialog.
const DIALOG_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the first picture may take once the stream is granted.
const FIRST_PICTURE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this is a Wayland session, where only the portal can capture. `PARLEY_CAPTURE=x11`
/// or `=portal` overrides it (XWayland sees only X11 apps, so X11 is not the default there).
pub(crate) fn active() -> bool {
    match std::env::var("PARLEY_CAPTURE").as_deref() {
        Ok("portal") => true,
        Ok("x11") => false,
        _ => std::env::var_os("WAYLAND_DISPLAY").is_some_and(|display| !display.is_empty()),
    }
}

/// What there is to pick on Wayland: a screen or a window, which the desktop's dialog names.
pub(crate) fn list_targets() -> Vec<Target> {
    let choice = |kind: TargetKind, id: u64, name: &str| Target { kind, id, name: name.into(), width: 0, height: 0 };
    vec![
        choice(TargetKind::Screen, 0, "a screen (the desktop asks which)"),
        choice(TargetKind::Window, 1, "a window (the desktop asks which)"),
    ]
}

/// What the PipeWire thread shares with the capturer.
#[derive(Default)]
struct Latest {
    frame: Frame,
    /// Pictures received so far.
    count: u64,
    /// Why the stream ended, once it did.
    ended: Option<String>,
}

struct Shared {
    latest: Mutex<Latest>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn end(&self, why: String) {
        let mut latest = self.lock();
        latest.ended.get_or_insert(why);
        self.arrived.notify_all();
    }
}

/// A granted stream: the socket to PipeWire and the node to read.
struct Granted {
    remote: OwnedFd,
    node: u32,
}

struct PortalCapturer {
    what: &'static str,
    shared: Arc<Shared>,
    /// Dropping it closes the portal session.
    close_session: Option<tokio::sync::oneshot::Sender<()>>,
    stop_stream: pw::channel::Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    let (sources, what) = match target.kind {
        TargetKind::Screen => (SourceType::Monitor, "screen"),
        TargetKind::Window => (SourceType::Window, "window"),
    };
    let shared = Arc::new(Shared { latest: Mutex::default(), arrived: Condvar::new() });
    let (granted_tx, granted_rx) = mpsc::channel();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel();
    let ended = shared.clone();
    let portal = std::thread::Builder::new()
        .name("parley-portal".into())
        .spawn(move || run_portal(sources, granted_tx, close_rx, &ended))
        .map_err(|error| unavailable(what, format!("cannot start the portal thread: {error}")))?;
    let granted = match granted_rx.recv_timeout(DIALOG_TIMEOUT) {
        Ok(Ok(granted)) => granted,
        Ok(Err(error)) => {
            let _ = portal.join();
            return Err(error);
        }
        Err(_) => {
            let _ = close_tx.send(());
            return Err(CaptureError::Refused(format!(
                "the desktop's screen-share dialog was not answered within {} s",
                DIALOG_TIMEOUT.as_secs()
            )));
        }
    };
    let (stop_tx, stop_rx) = pw::channel::channel();
    let (connected_tx, connected_rx) = mpsc::channel();
    let receiving = shared.clone();
    let stream = std::thread::Builder::new()
        .name("parley-pipewire".into())
        .spawn(move || {
            if let Err(error) = run_stream(granted, stop_rx, &receiving, &connected_tx) {
                let _ = connected_tx.send(Err(error));
            }
        })
        .map_err(|error| unavailable(what, format!("cannot start the PipeWire thread: {error}")))?;
    let capturer = PortalCapturer {
        what,
        shared,
        close_session: Some(close_tx),
        stop_stream: stop_tx,
        threads: vec![portal, stream],
    };
    match connected_rx.recv() {
        Ok(Ok(())) => Ok(Box::new(capturer)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(unavailable(what, "the PipeWire thread ended while connecting".into())),
    }
}

fn unavailable(what: &str, reason: String) -> CaptureError {
    CaptureError::Unavailable { target: what.to_string(), reason }
}

/// Says what a portal error means to the user.
fn portal_error(error: ashpd::Error) -> CaptureError {
    match error {
        ashpd::Error::Response(ashpd::desktop::ResponseError::Cancelled) => {
            CaptureError::Refused("the screen share was cancelled in the desktop's dialog".into())
        }
        ashpd::Error::Response(ashpd::desktop::ResponseError::Other) => {
            CaptureError::Refused("the desktop did not allow the screen share".into())
        }
        ashpd::Error::Portal(ashpd::PortalError::NotAllowed(why)) => {
            CaptureError::Refused(format!("the desktop did not allow the screen share: {why}"))
        }
        ashpd::Error::Zbus(zbus::Error::MethodError(name, ..))
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.UnknownInterface"
                || name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod" =>
        {
            CaptureError::Unsupported(
                "this desktop offers no ScreenCast portal (install xdg-desktop-portal and your desktop's backend)"
                    .into(),
            )
        }
        ashpd::Error::Zbus(error) => {
            CaptureError::Unsupported(format!("the desktop portal cannot be reached over D-Bus: {error}"))
        }
        error => CaptureError::Unsupported(format!("the ScreenCast portal failed: {error}")),
    }
}

/// The portal thread: asks for a stream, hands it over, then keeps the session open until
/// told to close it or the desktop closes it (which ends the capture).
fn run_portal(
    sources: SourceType,
    granted: mpsc::Sender<Result<Granted, CaptureError>>,
    close: tokio::sync::oneshot::Receiver<()>,
    shared: &Shared,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = granted.send(Err(unavailable("screen", format!("cannot start the portal runtime: {error}"))));
            return;
        }
    };
    runtime.block_on(async move {
        // A connection of our own: ashpd's shared one would belong to whichever runtime made it.
        let connection = match zbus::Connection::session().await {
            Ok(connection) => connection,
            Err(error) => {
                let error =
                    CaptureError::Unsupported(format!("no D-Bus session bus to reach the desktop portal: {error}"));
                let _ = granted.send(Err(error));
                return;
            }
        };
        let opened = async {
            let proxy = Screencast::with_connection(connection).await?;
            let session = proxy.create_session(Default::default()).await?;
            Ok::<_, ashpd::Error>((proxy, session))
        };
        let (proxy, session) = match opened.await {
            Ok(opened) => opened,
            Err(error) => {
                let _ = granted.send(Err(portal_error(error)));
                return;
            }
        };
        let asked = async {
            proxy
                .select_sources(
                    &session,
                    SelectSourcesOptions::default()
                        .set_cursor_mode(CursorMode::Embedded)
                        .set_sources(ashpd::enumflags2::BitFlags::from(sources))
                        .set_multiple(false)
                        .set_persist_mode(PersistMode::DoNot),
                )
                .await?
                .response()?;
            let streams = proxy.start(&session, None, Default::default()).await?.response()?;
            let node = streams.streams().first().map(|stream| stream.pipe_wire_node_id()).ok_or_else(|| {
                ashpd::Error::Portal(ashpd::PortalError::NotAllowed("the desktop granted no stream".into()))
            })?;
            let remote = proxy.open_pipe_wire_remote(&session, Default::default()).await?;
            Ok::<_, ashpd::Error>(Granted { remote, node })
        };
        match asked.await {
            Ok(stream) => {
                tracing::info!(node = stream.node, "the desktop granted a screen-share stream");
                let _ = granted.send(Ok(stream));
            }
            Err(error) => {
                // A refused or failed session is closed at once, not left to the bus.
                if let Err(error) = session.close().await {
                    tracing::debug!(%error, "closing the refused screen-cast session");
                }
                let _ = granted.send(Err(portal_error(error)));
                return;
            }
        }
        let closed = async {
            match session.receive_closed().await {
                Ok(mut closed) => {
                    use futures_util::StreamExt as _;
                    closed.next().await;
                }
                // Without the signal the session still ends with the stream.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = close => {
                if let Err(error) = session.close().await {
                    tracing::debug!(%error, "closing the screen-cast session");
                }
            }
            () = closed => shared.end("the desktop ended the screen share".into()),
        }
    });
}

/// The PipeWire thread: reads the granted node until told to stop or the stream ends.
fn run_stream(
    granted: Granted,
    stop: pw::channel::Receiver<()>,
    shared: &Arc<Shared>,
    connected: &mpsc::Sender<Result<(), CaptureError>>,
) -> Result<(), CaptureError> {
    let failed = |step: &str, error: pw::Error| unavailable("screen", format!("PipeWire: {step}: {error}"));
    pw::init();
    let main_loop = pw::main_loop::MainLoopRc::new(None).map_err(|error| failed("a main loop", error))?;
    let context = pw::context::ContextRc::new(&main_loop, None).map_err(|error| failed("a context", error))?;
    let core = context.connect_fd_rc(granted.remote, None).map_err(|error| failed("connecting", error))?;
    let stream = pw::stream::StreamBox::new(
        &core,
        "parley-screen-share",
        pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Screen",
        },
    )
    .map_err(|error| failed("a stream", error))?;
    let on_state = shared.clone();
    let on_frame = shared.clone();
    let _listener = stream
        .add_local_listener_with_user_data(spa::param::video::VideoInfoRaw::default())
        .state_changed(move |_, _, _, state| match state {
            pw::stream::StreamState::Error(why) => on_state.end(format!("the desktop's stream failed: {why}")),
            pw::stream::StreamState::Unconnected => on_state.end("the desktop ended the screen share".into()),
            _ => {}
        })
        .param_changed(|_, format, id, param| {
            if let Some(param) = param
                && id == spa::param::ParamType::Format.as_raw()
                && let Err(error) = format.parse(param)
            {
                tracing::warn!(%error, "the desktop's stream format cannot be read");
            }
        })
        .process(move |stream, format| {
            if let Some(mut buffer) = stream.dequeue_buffer()
                && let Some(data) = buffer.datas_mut().first_mut()
            {
                receive(data, format, &on_frame);
            }
        })
        .register()
        .map_err(|error| failed("listening", error))?;
    let format = format_pod().map_err(|error| unavailable("screen", format!("PipeWire: a format: {error}")))?;
    let mut params = [spa::pod::Pod::from_bytes(&format)
        .ok_or_else(|| unavailable("screen", "PipeWire: the format cannot be read back".into()))?];
    stream
        .connect(
            spa::utils::Direction::Input,
            Some(granted.node),
            pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut params,
        )
        .map_err(|error| failed("connecting the stream", error))?;
    let _stop = stop.attach(main_loop.loop_(), {
        let main_loop = main_loop.clone();
        move |()| main_loop.quit()
    });
    let _ = connected.send(Ok(()));
    main_loop.run();
    Ok(())
}

/// Copies one received picture into the shared latest frame as BGRA with packed rows.
fn receive(data: &mut spa::buffer::Data, format: &spa::param::video::VideoInfoRaw, shared: &Shared) {
    use spa::param::video::VideoFormat;
    let (width, height) = (format.size().width, format.size().height);
    let swap = match format.format() {
        VideoFormat::BGRx | VideoFormat::BGRA => false,
        VideoFormat::RGBx | VideoFormat::RGBA => true,
        _ => return,
    };
    let chunk = data.chunk();
    let (offset, size) = (chunk.offset() as usize, chunk.size() as usize);
    let stride = match usize::try_from(chunk.stride()) {
        Ok(stride) if stride > 0 => stride,
        _ => width as usize * 4,
    };
    let Some(bytes) = data.data() else { return };
    let Some(bytes) = bytes.get(offset..offset.saturating_add(size).min(bytes.len())) else { return };
    let row = width as usize * 4;
    if width == 0 || height == 0 || bytes.len() < stride * (height as usize - 1) + row {
        return;
    }
    let mut latest = shared.lock();
    latest.frame.resize(width, height);
    for (packed, source) in latest.frame.data.chunks_exact_mut(row).zip(bytes.chunks(stride)) {
        packed.copy_from_slice(&source[..row]);
        if swap {
            for pixel in packed.chunks_exact_mut(4) {
                pixel.swap(0, 2);
            }
        }
    }
    latest.count += 1;
    shared.arrived.notify_all();
}

/// The formats we take: 32-bit RGB in any size and rate (the desktop picks).
fn format_pod() -> Result<Vec<u8>, spa::pod::serialize::GenError> {
    use spa::param::format::{FormatProperties, MediaSubtype, MediaType};
    use spa::param::video::VideoFormat;
    use spa::utils::{Fraction, Rectangle};
    let object = spa::pod::object!(
        spa::utils::SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        spa::pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        spa::pod::property!(
            FormatProperties::VideoFormat,
            Choice,
            Enum,
            Id,
            VideoFormat::BGRx,
            VideoFormat::BGRx,
            VideoFormat::BGRA,
            VideoFormat::RGBx,
            VideoFormat::RGBA
        ),
        spa::pod::property!(
            FormatProperties::VideoSize,
            Choice,
            Range,
            Rectangle,
            Rectangle { width: 1280, height: 720 },
            Rectangle { width: 1, height: 1 },
            Rectangle { width: 8192, height: 8192 }
        ),
        spa::pod::property!(
            FormatProperties::VideoFramerate,
            Choice,
            Range,
            Fraction,
            Fraction { num: 30, denom: 1 },
            Fraction { num: 0, denom: 1 },
            Fraction { num: 240, denom: 1 }
        ),
    );
    let (cursor, _) = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(object),
    )?;
    Ok(cursor.into_inner())
}

impl Capturer for PortalCapturer {
    fn size(&self) -> (u32, u32) {
        let latest = self.shared.lock();
        (latest.frame.width, latest.frame.height)
    }

    fn capture(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let deadline = Instant::now() + FIRST_PICTURE_TIMEOUT;
        let mut latest = self.shared.lock();
        while latest.count == 0 && latest.ended.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unavailable(self.what, "the desktop sent no picture of it".into()));
            }
            latest = self.shared.arrived.wait_timeout(latest, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        if let Some(why) = &latest.ended {
            tracing::info!(why, "the screen-cast stream ended");
            return Err(CaptureError::TargetGone(self.what.to_string()));
        }
        frame.resize(latest.frame.width, latest.frame.height);
        frame.data.copy_from_slice(&latest.frame.data);
        Ok(())
    }
}

impl Drop for PortalCapturer {
    fn drop(&mut self) {
        let _ = self.stop_stream.send(());
        if let Some(close) = self.close_session.take() {
            let _ = close.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
