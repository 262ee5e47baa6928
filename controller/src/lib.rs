//! `ward-controller`: owns the status database, alerting, time series,
//! cache invalidation and every read path (REST, gRPC, live events,
//! dashboard).
//!
//! Invariants: only this crate knows SQL; every read path reflects a
//! committed status change at once; every failure is counted and visible in
//! `/readyz` or the logs. No `unsafe` here.
#![forbid(unsafe_code)]

pub mod access;
pub mod agents;
pub mod api;
pub mod auth;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod config;
pub mod console;
pub mod grpc;
pub mod jobs;
pub mod ldap;
pub mod login;
pub mod notify;
pub mod retention;
pub mod state;
pub mod store;
pub mod time;
pub mod tls;
pub mod tsdb;
