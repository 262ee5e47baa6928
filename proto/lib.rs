//! The `ward.v1` protocol between agents and the controller, generated at
//! build time from `proto/ward/v1/*.proto` (see the root `build.rs`).
//!
//! This crate holds only generated types and the encoded descriptor set; it
//! must never grow logic. Behaviour belongs to `ward-agent` and
//! `ward-controller`.
#![forbid(unsafe_code)]

/// Generated messages and services of package `ward.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("ward.v1");
}

/// The encoded `FileDescriptorSet` of every `ward.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ward_descriptor.bin"));

#[cfg(test)]
mod roundtrip_tests;
