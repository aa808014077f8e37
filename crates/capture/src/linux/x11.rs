//! X11 capture through `x11rb` (the X protocol in pure Rust: no C library to build against).
//!
//! A screen is its root window; a window is read directly (`GetImage` in `ZPixmap` format, which
//! on every 24/32-bit TrueColor server is BGRX in memory). Each capture is one `GetImage` round
//! trip (about 3.7 MB for 1280 × 720), whose reply x11rb allocates; MIT-SHM would avoid that
//! copy but needs a shared memory mapping, which safe Rust cannot make here. Windows come from
//! the window manager's `_NET_CLIENT_LIST`, or without one (a bare Xvfb) the root's mapped,
//! named children.

use x11rb::connection::Connection;
use x11rb::errors::{ConnectionError, ReplyError};
use x11rb::protocol::ErrorKind;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, ImageFormat, ImageOrder, MapState, Window};
use x11rb::rust_connection::RustConnection;

use crate::{CaptureError, Capturer, Frame, Target, TargetKind};

/// Connects to `DISPLAY`, saying clearly when there is none.
fn connect() -> Result<(RustConnection, usize), CaptureError> {
    match std::env::var_os("DISPLAY") {
        Some(display) if !display.is_empty() => {}
        _ => return Err(CaptureError::NoDisplay("DISPLAY is not set".into())),
    }
    x11rb::connect(None).map_err(|error| CaptureError::NoDisplay(format!("cannot connect to the X server: {error}")))
}

fn lost(error: ConnectionError) -> CaptureError {
    CaptureError::NoDisplay(format!("the X server connection failed: {error}"))
}

/// Maps a request's failure: a missing window is [`CaptureError::TargetGone`], a window that
/// cannot be read now (unmapped, off screen) [`CaptureError::Unavailable`].
fn failed(error: ReplyError, target: &str) -> CaptureError {
    match error {
        ReplyError::ConnectionError(error) => lost(error),
        ReplyError::X11Error(error) => match error.error_kind {
            ErrorKind::Window | ErrorKind::Drawable => CaptureError::TargetGone(target.to_string()),
            ErrorKind::Match => CaptureError::Unavailable {
                target: target.to_string(),
                reason: "it is not fully visible on the screen (unmapped, minimised or off screen)".into(),
            },
            kind => CaptureError::Unavailable { target: target.to_string(), reason: format!("X error {kind:?}") },
        },
    }
}

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    let (connection, _) = connect()?;
    let mut targets = Vec::new();
    for (index, screen) in connection.setup().roots.iter().enumerate() {
        targets.push(Target {
            kind: TargetKind::Screen,
            id: index as u64,
            name: format!("screen {index}"),
            width: u32::from(screen.width_in_pixels),
            height: u32::from(screen.height_in_pixels),
        });
    }
    for screen in connection.setup().roots.iter() {
        for window in top_level_windows(&connection, screen.root)? {
            let Some(name) = window_name(&connection, window)? else { continue };
            let Ok(geometry) = connection.get_geometry(window).map_err(lost)?.reply() else { continue };
            targets.push(Target {
                kind: TargetKind::Window,
                id: u64::from(window),
                name,
                width: u32::from(geometry.width),
                height: u32::from(geometry.height),
            });
        }
    }
    Ok(targets)
}

/// The window manager's client list, or the root's mapped children without one.
fn top_level_windows(connection: &RustConnection, root: Window) -> Result<Vec<Window>, CaptureError> {
    let client_list = intern(connection, b"_NET_CLIENT_LIST")?;
    let listed = connection
        .get_property(false, root, client_list, AtomEnum::WINDOW, 0, 4096)
        .map_err(lost)?
        .reply()
        .map_err(|error| failed(error, "screen"))?;
    if let Some(windows) = listed.value32().map(Iterator::collect::<Vec<_>>)
        && !windows.is_empty()
    {
        return Ok(windows);
    }
    let children = connection.query_tree(root).map_err(lost)?.reply().map_err(|error| failed(error, "screen"))?;
    let mut mapped = Vec::new();
    for child in children.children {
        // A child that vanished meanwhile is simply left out.
        if let Ok(attributes) = connection.get_window_attributes(child).map_err(lost)?.reply()
            && attributes.map_state == MapState::VIEWABLE
            && !attributes.override_redirect
        {
            mapped.push(child);
        }
    }
    Ok(mapped)
}

fn intern(connection: &RustConnection, name: &[u8]) -> Result<u32, CaptureError> {
    let reply = connection.intern_atom(false, name).map_err(lost)?.reply().map_err(|error| failed(error, "screen"))?;
    Ok(reply.atom)
}

/// `_NET_WM_NAME` (UTF-8), else `WM_NAME`; `None` for an unnamed or vanished window.
fn window_name(connection: &RustConnection, window: Window) -> Result<Option<String>, CaptureError> {
    let net_name = intern(connection, b"_NET_WM_NAME")?;
    for property in [net_name, AtomEnum::WM_NAME.into()] {
        let Ok(reply) = connection.get_property(false, window, property, AtomEnum::ANY, 0, 1024).map_err(lost)?.reply()
        else {
            return Ok(None);
        };
        if !reply.value.is_empty() {
            return Ok(Some(String::from_utf8_lossy(&reply.value).into_owned()));
        }
    }
    Ok(None)
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    let (connection, _) = connect()?;
    let setup = connection.setup();
    if setup.image_byte_order != ImageOrder::LSB_FIRST {
        return Err(CaptureError::Unsupported("an X server with most-significant-byte-first images".into()));
    }
    let (drawable, name) = match target.kind {
        TargetKind::Screen => {
            let screen =
                setup.roots.get(target.id as usize).ok_or_else(|| CaptureError::NotFound(target.to_string()))?;
            (screen.root, format!("screen {}", target.id))
        }
        TargetKind::Window => {
            let window = u32::try_from(target.id).map_err(|_| CaptureError::NotFound(target.to_string()))?;
            (window, format!("window {:#x}", target.id))
        }
    };
    let mut capturer = X11Capturer { connection, drawable, name, width: 0, height: 0 };
    capturer.refresh_size()?;
    Ok(Box::new(capturer))
}

struct X11Capturer {
    connection: RustConnection,
    drawable: Window,
    /// What errors call the target (`window 0x400001`).
    name: String,
    width: u32,
    height: u32,
}

impl X11Capturer {
    fn refresh_size(&mut self) -> Result<(), CaptureError> {
        let geometry = self
            .connection
            .get_geometry(self.drawable)
            .map_err(lost)?
            .reply()
            .map_err(|error| failed(error, &self.name))?;
        let bits = self
            .connection
            .setup()
            .pixmap_formats
            .iter()
            .find(|format| format.depth == geometry.depth)
            .map(|format| format.bits_per_pixel);
        if bits != Some(32) {
            return Err(CaptureError::Unsupported(format!(
                "a {} of depth {} ({bits:?} bits a pixel; only 24/32-bit colour is)",
                self.name, geometry.depth
            )));
        }
        (self.width, self.height) = (u32::from(geometry.width), u32::from(geometry.height));
        Ok(())
    }
}

impl Capturer for X11Capturer {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn capture(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        // One round trip per frame tells a resized window (and a closed one: BadDrawable).
        self.refresh_size()?;
        let image = self
            .connection
            .get_image(ImageFormat::Z_PIXMAP, self.drawable, 0, 0, self.width as u16, self.height as u16, !0)
            .map_err(lost)?
            .reply()
            .map_err(|error| failed(error, &self.name))?;
        frame.resize(self.width, self.height);
        // 32 bits a pixel pad every row to itself: the rows are packed.
        let length = frame.data.len();
        if image.data.len() < length {
            return Err(CaptureError::Unavailable {
                target: self.name.clone(),
                reason: format!("the X server sent {} bytes for a {length}-byte picture", image.data.len()),
            });
        }
        frame.data.copy_from_slice(&image.data[..length]);
        Ok(())
    }
}
