//! End-to-end tests of the `parley` CLI against a real LiveKit server started per test.
//!
//! The server comes from `cargo xtask setup`; a missing server or FFI library fails these tests
//! (it never skips them). Audio tests run one at a time: several real-time clients per test
//! already load the two cores of a CI machine.

mod bad_input;
mod browser;
mod controls;
mod devices;
mod interop;
mod lifecycle;
mod moderation;
mod profiles;
mod share;
mod support;
mod talk;
#[cfg(target_os = "linux")]
mod wayland;
mod windows;
