//! The only module with `unsafe`: loading `liblivekit_ffi` and crossing its C ABI.
//!
//! The library exports four functions (see `livekit_ffi.h` in the wheel and the Python SDK's
//! `_ffi_client.py`):
//!
//! * `livekit_ffi_initialize(callback, capture_logs, sdk, sdk_version)`
//! * `livekit_ffi_request(req_ptr, req_len, &res_ptr, &res_len) -> handle` — the response buffer
//!   belongs to the returned handle, which must be dropped once the bytes are copied;
//! * `livekit_ffi_drop_handle(handle) -> bool`;
//! * `livekit_ffi_dispose()`.
//!
//! Everything else in the crate works on copied bytes and plain integers. The library is loaded
//! once per process and never unloaded: its threads call back into us until the process exits.

#![allow(unsafe_code)] // reason: this module is the FFI boundary (STYLE.md: unsafe lives in one module)

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

type Callback = extern "C" fn(data: *const u8, len: usize);
type InitializeFn = unsafe extern "C" fn(cb: Callback, capture_logs: bool, sdk: *const c_char, version: *const c_char);
type RequestFn = unsafe extern "C" fn(data: *const u8, len: usize, res_ptr: *mut *const u8, res_len: *mut usize) -> u64;
type DropHandleFn = unsafe extern "C" fn(handle: u64) -> bool;
type DisposeFn = unsafe extern "C" fn();

/// The loaded library and its entry points. Lives for the rest of the process.
pub(crate) struct Native {
    path: PathBuf,
    request: RequestFn,
    drop_handle: DropHandleFn,
    dispose: DisposeFn,
    disposed: AtomicBool,
    // Keeps the code behind the function pointers mapped; never dropped (held in a static).
    _library: libloading::Library,
}

/// Where the raw event bytes go; set once, before `livekit_ffi_initialize`.
static EVENT_SINK: OnceLock<Sender<Vec<u8>>> = OnceLock::new();

/// Runs on the library's threads. It must not block, allocate more than the copy, or unwind:
/// it copies the event and hands it to the dispatcher thread.
extern "C" fn on_event(data: *const u8, len: usize) {
    if data.is_null() {
        return;
    }
    // SAFETY: the library passes a buffer of `len` bytes that stays valid for the duration of
    // this call; we copy it before returning.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
    // A closed receiver means the process is shutting down; the event is of no use then, but
    // it is counted so that a lost event is never silent.
    if let Some(sink) = EVENT_SINK.get()
        && sink.send(bytes).is_err()
    {
        UNDELIVERED_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Events the library sent after our dispatcher stopped (process shutdown).
pub(crate) static UNDELIVERED_EVENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Native {
    /// Loads the library at `path` and resolves its entry points.
    pub(crate) fn load(path: &Path) -> Result<Native, String> {
        // SAFETY: loading a shared library runs its initialisers. liblivekit_ffi is LiveKit's
        // own build (pinned by sha256 in pinned.toml) whose initialisers are Rust statics only.
        let library = unsafe { libloading::Library::new(path) }.map_err(|error| error.to_string())?;
        // SAFETY (all four): the symbol types match the C declarations in the wheel's
        // `livekit_ffi.h` and the Python SDK's ctypes argtypes; the pointers stay valid because
        // `library` is stored alongside them and never dropped.
        let request = unsafe { symbol::<RequestFn>(&library, b"livekit_ffi_request\0") }?;
        let drop_handle = unsafe { symbol::<DropHandleFn>(&library, b"livekit_ffi_drop_handle\0") }?;
        let dispose = unsafe { symbol::<DisposeFn>(&library, b"livekit_ffi_dispose\0") }?;
        // Resolved now so that a library without it fails here rather than at initialisation.
        let _initialize = unsafe { symbol::<InitializeFn>(&library, b"livekit_ffi_initialize\0") }?;
        Ok(Native {
            path: path.to_path_buf(),
            request,
            drop_handle,
            dispose,
            disposed: AtomicBool::new(false),
            _library: library,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Registers the event callback and starts the library's runtime. Call once per process.
    pub(crate) fn initialize(&self, sink: Sender<Vec<u8>>, sdk_version: &str) -> Result<(), String> {
        if EVENT_SINK.set(sink).is_err() {
            return Err("the LiveKit FFI library was already initialised in this process".into());
        }
        let sdk = CString::new("rust").map_err(|error| error.to_string())?;
        let version = CString::new(sdk_version).map_err(|error| error.to_string())?;
        // SAFETY: the symbol was resolved with the right signature in `load` and the library is
        // still mapped (`self` holds it). The strings outlive the call; the library copies them.
        unsafe {
            let initialize = symbol::<InitializeFn>(&self._library, b"livekit_ffi_initialize\0")?;
            initialize(on_event, true, sdk.as_ptr(), version.as_ptr());
        }
        Ok(())
    }

    /// Sends one encoded `FfiRequest` and returns the encoded `FfiResponse`.
    pub(crate) fn request(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        if self.disposed.load(Ordering::Acquire) {
            return Err("the LiveKit engine has been shut down".into());
        }
        let mut response_ptr: *const u8 = std::ptr::null();
        let mut response_len: usize = 0;
        // SAFETY: `request` is a valid slice for the duration of the call; the out-pointers point
        // to live locals. The library writes a pointer to a buffer owned by the returned handle.
        let handle = unsafe { (self.request)(request.as_ptr(), request.len(), &mut response_ptr, &mut response_len) };
        if handle == 0 || response_ptr.is_null() {
            return Err("the LiveKit engine rejected a request (invalid handle)".into());
        }
        // SAFETY: the response buffer stays valid until its handle is dropped, just below.
        let response = unsafe { std::slice::from_raw_parts(response_ptr, response_len) }.to_vec();
        self.drop_handle(handle);
        Ok(response)
    }

    /// Releases a handle the library gave us. Returns false if the library did not know it.
    pub(crate) fn drop_handle(&self, handle: u64) -> bool {
        if handle == 0 || self.disposed.load(Ordering::Acquire) {
            return true;
        }
        // SAFETY: plain integer argument; the function is thread-safe per the FFI contract.
        unsafe { (self.drop_handle)(handle) }
    }

    /// Stops the library's runtime. Later requests fail and handle drops become no-ops, because
    /// the library released everything itself.
    pub(crate) fn dispose(&self) {
        if !self.disposed.swap(true, Ordering::AcqRel) {
            // SAFETY: no arguments; called at most once thanks to the swap above.
            unsafe { (self.dispose)() }
        }
    }
}

/// Copies `len` i16 samples that the library owns at `ptr` into `out` (replacing its contents).
///
/// Callers must hold the handle that owns the buffer (an `OwnedAudioFrameBuffer`) until this
/// returns; `frame::AudioFrame::from_owned` is the only caller and does.
pub(crate) fn copy_samples(ptr: u64, len: usize, out: &mut Vec<i16>) {
    out.clear();
    if ptr == 0 || len == 0 {
        return;
    }
    // SAFETY: the library allocated `len` i16 samples at `ptr` (an `AudioFrameBufferInfo` with
    // samples_per_channel × num_channels = len), aligned for i16, and keeps them alive while the
    // owning handle (held by the caller) is not dropped.
    let samples = unsafe { std::slice::from_raw_parts(ptr as usize as *const i16, len) };
    out.extend_from_slice(samples);
}

/// Copies `len` bytes that the library owns at `ptr` (an `OwnedBuffer`'s data).
///
/// Callers must hold the owning handle until this returns.
pub(crate) fn copy_bytes(ptr: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    append_rows(ptr, len, len, 1, &mut out);
    out
}

/// Appends `rows` rows of `row` bytes each to `out`, packed, from the library's memory at `ptr`
/// where they lie `stride` bytes apart (`stride >= row`): a plane of a received video frame.
/// Nothing is read for a null `ptr` or an empty plane.
///
/// Callers must hold the owning handle until this returns, and the library must own at least
/// `stride × (rows − 1) + row` bytes at `ptr` (the callers check this against the sizes the
/// library reported).
pub(crate) fn append_rows(ptr: u64, stride: usize, row: usize, rows: usize, out: &mut Vec<u8>) {
    if ptr == 0 || row == 0 || rows == 0 || stride < row {
        return;
    }
    let len = stride * (rows - 1) + row;
    // SAFETY: the library allocated at least `len` bytes at `ptr` (a video buffer's plane: its
    // stride × rows, checked by the caller) and keeps them alive while the owning handle (held
    // by the caller) is not dropped.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len) };
    out.reserve(row * rows);
    if stride == row {
        out.extend_from_slice(bytes);
    } else {
        for line in bytes.chunks(stride) {
            out.extend_from_slice(&line[..row]);
        }
    }
}

/// Resolves one symbol as a plain function pointer.
///
/// # Safety
/// `T` must be the symbol's true function-pointer type.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &[u8]) -> Result<T, String> {
    // SAFETY: forwarded to the caller (see the function's contract).
    let symbol = unsafe { library.get::<T>(name) }.map_err(|error| {
        let printable = String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned();
        format!("missing symbol {printable}: {error}")
    })?;
    Ok(*symbol)
}

/// Moves one thread of this process (by its kernel thread id) to the ordinary time-sharing
/// policy (`SCHED_OTHER`) at `nice`. Used on the library's own threads (see `threads.rs`).
#[cfg(target_os = "linux")]
pub(crate) fn make_thread_ordinary(thread: i32, nice: i32) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which only reads it; a
    // thread id that no longer exists fails with ESRCH rather than touching anything else.
    if unsafe { libc::sched_setscheduler(thread, libc::SCHED_OTHER, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no pointers; on Linux PRIO_PROCESS with a thread id sets that one thread's nice.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
