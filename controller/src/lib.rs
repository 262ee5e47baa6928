//! `ward-controller`: owns the status database, alerting, time series,
//! cache invalidation and every read path (REST, gRPC, live events,
//! dashboard).
//!
//! Layers, each importing only those below it: the edges (`cli`, `api`,
//! `grpc`, `jobs`, `notify`, `tls`, `login`, `access`) → `services` (one
//! struct per concern, assembled by `services::App`) → `store` (the only
//! SQL), `cache`, `tsdb`, `agents`, `auth` and the rules in `ward-domain`.
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
pub mod services;
pub mod store;
pub mod time;
pub mod tls;
pub mod tsdb;
