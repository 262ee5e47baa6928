//! The store's methods by concern, beside the core ones in `store/mod.rs`:
//! each opens a connection or a transaction and runs one operation of the
//! concern's module over it.

mod access;
mod alerts;
mod cluster;
mod profiles;
mod restore;
mod windows;
