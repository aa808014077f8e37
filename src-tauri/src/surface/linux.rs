//! GTK: each window's web view goes into a `GtkOverlay` the first time a viewer in it is placed,
//! and each shown share gets a `GtkDrawingArea` over its viewer's rectangle. The core hands every
//! new picture (BGRx, already scaled to the viewer) to [`ShellPainter`] on its watch thread,
//! which keeps the latest one per share and asks the main thread to redraw; the area paints it,
//! fitted and centred, on black.
//!
//! The area lets clicks through to the page (the viewer's buttons are below it, in its caption).
//! The page hides it (`place_share` with an empty rectangle) while a menu or dialog of its own
//! would be under it, since the page cannot draw over a native widget; the area keeps its last
//! picture meanwhile (a still screen sends no new one). `place_share` with no rectangle: the
//! viewer closed, and the area goes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use gtk::prelude::*;
use gtk::{cairo, glib};
use parley_core::client::frames::Painter;
use parley_core::client::{Client, ClientError, ErrorCode, ShareRect};
use tauri::{Manager as _, Runtime, WebviewWindow};

/// The latest picture of a shown share.
#[derive(Default)]
struct Latest {
    width: i32,
    height: i32,
    bgrx: Vec<u8>,
    /// Not yet copied into the area's image.
    fresh: bool,
    /// A redraw was asked for and has not run yet.
    queued: bool,
}

/// Written on the watch thread, read by the main thread as it draws.
static PICTURES: LazyLock<Mutex<HashMap<String, Latest>>> = LazyLock::new(Mutex::default);

fn pictures() -> std::sync::MutexGuard<'static, HashMap<String, Latest>> {
    PICTURES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A share shown in a window.
struct Surface {
    /// The label of the window it is in.
    window: String,
    area: gtk::DrawingArea,
}

thread_local! {
    /// (GTK's main thread.) Each window's overlay, by label, once it has one.
    static OVERLAYS: RefCell<HashMap<String, gtk::Overlay>> = RefCell::new(HashMap::new());
    /// (GTK's main thread.) Each shown share's surface, by identity.
    static SURFACES: RefCell<HashMap<String, Surface>> = RefCell::new(HashMap::new());
}

/// Keeps each new picture and asks the main thread to draw it.
struct ShellPainter;

impl Painter for ShellPainter {
    fn paint(&self, identity: &str, width: u32, height: u32, bgrx: &[u8]) {
        let mut pictures = pictures();
        let latest = pictures.entry(identity.to_string()).or_default();
        latest.width = width as i32;
        latest.height = height as i32;
        latest.bgrx.clear();
        latest.bgrx.extend_from_slice(bgrx);
        latest.fresh = true;
        if std::mem::replace(&mut latest.queued, true) {
            return;
        }
        let identity = identity.to_string();
        glib::idle_add_once(move || redraw(&identity));
    }
}

/// (Main thread.) Draws `identity`'s area again, with its latest picture.
fn redraw(identity: &str) {
    if let Some(latest) = pictures().get_mut(identity) {
        latest.queued = false;
    }
    SURFACES.with(|surfaces| {
        if let Some(surface) = surfaces.borrow().get(identity) {
            surface.area.queue_draw();
        }
    });
}

/// Has the core hand watched shares' pictures to the shell.
pub(crate) fn install(app: &tauri::AppHandle) {
    app.state::<Client>().frames().paint_with(Arc::new(ShellPainter));
}

/// Shows `identity`'s share over `rect` of `window`'s page, hides it there for now (an empty
/// rectangle), or takes it away (`None`).
///
/// Errors: the window's main thread could not be reached ([`ErrorCode::Internal`]).
pub(crate) fn place<R: Runtime>(
    window: &WebviewWindow<R>,
    identity: &str,
    rect: Option<ShareRect>,
) -> Result<(), ClientError> {
    let label = window.label().to_string();
    let who = identity.to_string();
    window
        .with_webview(move |webview| match rect {
            Some(rect) if !rect.is_empty() => show(&label, &webview.inner(), &who, rect),
            Some(_) => conceal(&label, &who),
            None => remove(&label, &who),
        })
        .map_err(|error| ClientError::new(ErrorCode::Internal, format!("placing {identity}'s picture: {error}")))
}

/// (Main thread.) The window `label` closed: its surfaces went with it.
pub(crate) fn forget(label: &str) {
    OVERLAYS.with(|overlays| overlays.borrow_mut().remove(label));
    SURFACES.with(|surfaces| {
        surfaces.borrow_mut().retain(|identity, surface| {
            let kept = surface.window != label;
            if !kept {
                pictures().remove(identity);
            }
            kept
        });
    });
}

/// (Main thread.) `identity`'s surface in window `label` over `rect`, made if need be.
fn show(label: &str, view: &webkit2gtk::WebView, identity: &str, rect: ShareRect) {
    let Some(overlay) = overlay_of(label, view) else { return };
    SURFACES.with(|surfaces| {
        let mut surfaces = surfaces.borrow_mut();
        // Moved to another window (popped out, or back): the old surface goes.
        if surfaces.get(identity).is_some_and(|surface| surface.window != label)
            && let Some(old) = surfaces.remove(identity)
        {
            destroy(&old.area);
        }
        let surface = surfaces
            .entry(identity.to_string())
            .or_insert_with(|| Surface { window: label.to_string(), area: new_area(&overlay, identity) });
        // A viewer scrolled partly out of the page keeps only its visible part.
        let (x, width) = clip(rect.x, rect.width);
        let (y, height) = clip(rect.y, rect.height);
        surface.area.set_margin_start(x);
        surface.area.set_margin_top(y);
        surface.area.set_size_request(width, height);
        surface.area.show();
        surface.area.queue_draw();
    });
}

/// A start and length clipped to begin at 0, as GTK sizes take them.
fn clip(start: i32, length: u32) -> (i32, i32) {
    let length = i32::try_from(length).unwrap_or(i32::MAX);
    if start >= 0 { (start, length) } else { (0, (length + start).max(1)) }
}

/// (Main thread.) Hides `identity`'s surface in window `label` for now, its picture kept.
fn conceal(label: &str, identity: &str) {
    SURFACES.with(|surfaces| {
        if let Some(surface) = surfaces.borrow().get(identity).filter(|surface| surface.window == label) {
            surface.area.hide();
        }
    });
}

/// (Main thread.) Takes `identity`'s surface away if it is in window `label` (a viewer closing
/// in one window must not take away the same share just placed in another).
fn remove(label: &str, identity: &str) {
    SURFACES.with(|surfaces| {
        let mut surfaces = surfaces.borrow_mut();
        if surfaces.get(identity).is_some_and(|surface| surface.window == label) {
            if let Some(surface) = surfaces.remove(identity) {
                destroy(&surface.area);
            }
            pictures().remove(identity);
        }
    });
}

fn destroy(area: &gtk::DrawingArea) {
    if let Some(parent) = area.parent().and_then(|parent| parent.downcast::<gtk::Container>().ok()) {
        parent.remove(area);
    }
}

/// (Main thread.) The overlay window `label`'s web view sits in, put in the first time: the web
/// view moves from the window's box into it, where the surfaces can go over it.
fn overlay_of(label: &str, view: &webkit2gtk::WebView) -> Option<gtk::Overlay> {
    if let Some(overlay) = OVERLAYS.with(|overlays| overlays.borrow().get(label).cloned()) {
        return Some(overlay);
    }
    let Some(parent) = view.parent().and_then(|parent| parent.downcast::<gtk::Box>().ok()) else {
        tracing::warn!(window = label, "the web view is not in a box: pictures cannot be painted over it");
        return None;
    };
    let focused = view.has_focus();
    parent.remove(view);
    let overlay = gtk::Overlay::new();
    overlay.add(view);
    parent.pack_start(&overlay, true, true, 0);
    overlay.show_all();
    if focused {
        view.grab_focus();
    }
    OVERLAYS.with(|overlays| overlays.borrow_mut().insert(label.to_string(), overlay.clone()));
    Some(overlay)
}

/// (Main thread.) A new area on `overlay` that paints `identity`'s latest picture.
fn new_area(overlay: &gtk::Overlay, identity: &str) -> gtk::DrawingArea {
    let area = gtk::DrawingArea::new();
    area.set_halign(gtk::Align::Start);
    area.set_valign(gtk::Align::Start);
    let image: Rc<RefCell<Option<cairo::ImageSurface>>> = Rc::default();
    let identity = identity.to_string();
    area.connect_draw(move |area, cr| {
        let mut image = image.borrow_mut();
        if let Some(latest) = pictures().get_mut(&identity).filter(|latest| latest.fresh) {
            latest.fresh = false;
            take(&mut image, latest);
        }
        // Nothing until the first picture: the page's "waiting for…" shows through.
        if let Some(image) = image.as_ref() {
            cr.set_source_rgb(0.0, 0.0, 0.0);
            let _ = cr.paint();
            let (width, height) = (f64::from(area.allocated_width()), f64::from(area.allocated_height()));
            let (picture_width, picture_height) = (f64::from(image.width()), f64::from(image.height()));
            let scale = f64::min(width / picture_width, height / picture_height);
            cr.translate((width - picture_width * scale) / 2.0, (height - picture_height * scale) / 2.0);
            cr.scale(scale, scale);
            if cr.set_source_surface(image, 0.0, 0.0).is_ok() {
                cr.source().set_filter(cairo::Filter::Good);
                let _ = cr.paint();
            }
        }
        glib::Propagation::Stop
    });
    overlay.add_overlay(&area);
    overlay.set_overlay_pass_through(&area, true);
    area.show();
    area
}

/// Copies `latest` into `image`, a new image when the size changed.
fn take(image: &mut Option<cairo::ImageSurface>, latest: &Latest) {
    if !image.as_ref().is_some_and(|image| image.width() == latest.width && image.height() == latest.height) {
        *image = cairo::ImageSurface::create(cairo::Format::Rgb24, latest.width, latest.height).ok();
    }
    let Some(image) = image.as_mut() else { return };
    let stride = image.stride() as usize;
    let row = latest.width as usize * 4;
    image.flush();
    if let Ok(mut data) = image.data() {
        for (y, line) in latest.bgrx.chunks_exact(row).enumerate() {
            data[y * stride..][..row].copy_from_slice(line);
        }
    }
    image.mark_dirty();
}
