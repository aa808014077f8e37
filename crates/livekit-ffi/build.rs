//! Generates the protobuf types from `proto/livekit_ffi.binpb`, the FileDescriptorSet that
//! `cargo xtask setup` extracts from the pinned `livekit` wheel (and verifies against it), so the
//! Rust types always match the shipped library. `compile_fds` needs no `protoc`.

use prost::Message;

fn main() {
    let path = "proto/livekit_ffi.binpb";
    println!("cargo:rerun-if-changed={path}");
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("reading {path}: {error}"));
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice())
        .unwrap_or_else(|error| panic!("decoding {path}: {error}"));
    prost_build::Config::new().compile_fds(set).unwrap_or_else(|error| panic!("generating Rust from {path}: {error}"));
}
