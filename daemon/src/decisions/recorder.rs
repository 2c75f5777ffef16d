//! What the scoring API calls: whether a model's decisions are kept, and keeping one.
//! The decision's SHA-256 goes into the request's own audit record (the caller puts it
//! on the request context), so a decision costs no second audit record.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::record::{Decision, PlainTensor};
use super::store::{DecisionStore, StoreError};

#[derive(Debug)]
pub struct Decisions {
    pub store: Arc<DecisionStore>,
    models: BTreeSet<String>,
}

impl Decisions {
    pub fn new(store: Arc<DecisionStore>, models: BTreeSet<String>) -> Decisions {
        Decisions { store, models }
    }

    /// Whether every scoring request of `model` is recorded.
    pub fn records(&self, model: &str) -> bool {
        self.models.contains(model)
    }

    /// Keeps a decision and returns its SHA-256; an error means it was not kept (and
    /// must not be answered). The frame is handed to the store's writer thread, so this
    /// does not wait on the disk.
    pub fn record<T: PlainTensor>(&self, rec: &Decision<'_, T>) -> Result<String, StoreError> {
        self.store.record(rec)
    }
}
