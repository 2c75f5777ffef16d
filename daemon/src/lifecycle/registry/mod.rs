//! The model registry in sled: every installed model version and its state, one active
//! pointer per model name, pins, and the history of every change with who and when.
//! Each change is one sled transaction over the registry's trees, flushed before it
//! returns, so a crash leaves the registry before or after a change, never between.
//!
//! The store's files are the truth for what is installed (`docs/models.md`): start-up
//! reconciles the registry with the store ([`Registry::reconcile`]) instead of refusing.
//!
//! This module owns the record types, the error and the [`Registry`] handle; `schema`
//! opens and migrates it, `tx` holds the transaction and encoding helpers every change
//! goes through, `changes` the state changes (import, gate, activate, pin, remove),
//! `queries` the reads, and `reconcile` the start-up repair against the store.

mod changes;
mod queries;
mod reconcile;
mod schema;
#[cfg(test)]
mod test_support;
mod tx;

use std::time::{SystemTime, UNIX_EPOCH};

/// The registry's schema version; [`Registry::open`] migrates older ones.
pub const SCHEMA_VERSION: u32 = 1;

/// The records are the admin API's own: the registry stores exactly what
/// `GET /admin/models` shows.
pub use coffer_admin_api::models::{HistoryEntry, VersionRecord, VersionState as State};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0} is already installed")]
    Exists(String),
    #[error("{0} is not installed")]
    NotFound(String),
    #[error("{id} is {state}; {what}")]
    WrongState {
        id: String,
        state: &'static str,
        what: String,
    },
    #[error("{name} is pinned to {version}; unpin it first")]
    Pinned { name: String, version: String },
    #[error("{name} has no earlier version to roll back to")]
    NoPrevious { name: String },
    #[error("the registry's schema is version {found}, newer than this cofferd ({known})")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("registry storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("registry record {key} is corrupt: {problem}")]
    Corrupt { key: String, problem: String },
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What start-up found when it compared the registry with the store.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Versions whose evaluation was interrupted, back to `staged`.
    pub interrupted: Vec<String>,
    /// Versions whose files are gone, now `failed` (active pointers to them cleared).
    pub missing: Vec<String>,
    /// Store directories without a record: the caller registers them.
    pub orphans: Vec<(String, String)>,
}

/// The registry's trees.
#[derive(Debug, Clone)]
pub struct Registry {
    db: sled::Db,
    meta: sled::Tree,
    versions: sled::Tree,
    active: sled::Tree,
    pins: sled::Tree,
    history: sled::Tree,
}
