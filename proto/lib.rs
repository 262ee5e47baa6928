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

/// The agent-link protocol version this build speaks (`Hello.protocol`,
/// `AssignmentSnapshot.controller_protocol`): 2 since peers announce it;
/// version 1 is the release before, whose peers announce 0.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest agent-link protocol version this build still speaks: the
/// previous release's, so agents and controllers are upgraded one at a
/// time, in any order.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// The encoded `FileDescriptorSet` of every `ward.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ward_descriptor.bin"));

#[cfg(test)]
mod roundtrip_tests;
