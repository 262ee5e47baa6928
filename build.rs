//! Compiles `proto/ward/v1/*.proto` into Rust with protox (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed) and tonic-prost-build.
//! Also writes the encoded descriptor set, which the controller serves
//! through gRPC reflection.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "proto/ward/v1/common.proto",
    "proto/ward/v1/agent_link.proto",
    "proto/ward/v1/inventory.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("ward_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `AgentLink.Connect` would collide with the generated `connect(dst)`
        // constructor; clients are built from a configured `Channel` instead.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
