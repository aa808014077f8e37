//! RAII for the library's handles.

use crate::engine::Engine;

/// A handle the library gave us; released with `livekit_ffi_drop_handle` exactly once, on drop.
pub(crate) struct OwnedHandle {
    engine: &'static Engine,
    id: u64,
}

impl OwnedHandle {
    pub(crate) fn new(engine: &'static Engine, id: u64) -> OwnedHandle {
        OwnedHandle { engine, id }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn engine(&self) -> &'static Engine {
        self.engine
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        tracing::trace!(handle = self.id, "releasing handle");
        self.engine.drop_handle(self.id);
    }
}

impl std::fmt::Debug for OwnedHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "OwnedHandle({})", self.id)
    }
}
