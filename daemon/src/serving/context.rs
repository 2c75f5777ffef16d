//! What one API request accumulates on its way through the layers, in one place. The
//! outermost layer (`api::observe`) makes it and puts it on the request; the key guard
//! records the key, the serving layer the model version the request is for and the one
//! that answered, a streamed answer that it counts its own outcome. When the handler
//! returns, the outer layer reads it back for the metrics, the audit record and the log
//! line. Before it there were a task-local and three response extensions, each a side
//! channel of its own.
//!
//! Each field is written once (first write wins) and read after the handler: a
//! `OnceLock` per field, shared by an `Arc`, one allocation per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::metrics::VersionRequests;

/// One request's context; clones share it.
#[derive(Debug, Clone)]
pub struct RequestContext(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: String,
    key_id: OnceLock<String>,
    counters: OnceLock<VersionRequests>,
    answered_by: OnceLock<String>,
    decision_sha256: OnceLock<String>,
    outcome_deferred: AtomicBool,
}

impl RequestContext {
    /// A new request's context, with a fresh id (a UUIDv7, `crate::request_id`).
    pub fn new() -> RequestContext {
        RequestContext(Arc::new(Inner {
            id: crate::request_id::new(),
            key_id: OnceLock::new(),
            counters: OnceLock::new(),
            answered_by: OnceLock::new(),
            decision_sha256: OnceLock::new(),
            outcome_deferred: AtomicBool::new(false),
        }))
    }

    /// The context the outer layer put on `req`; a handler called without it (a test
    /// calling it directly) gets a fresh one that nobody reads.
    pub fn of<B>(req: &http::Request<B>) -> RequestContext {
        req.extensions()
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default()
    }

    /// The SHA-256 of the decision this request's answer was recorded as (docs/decisions.md),
    /// for its audit record.
    pub fn set_decision(&self, sha256: String) {
        let _ = self.0.decision_sha256.set(sha256);
    }

    pub fn decision(&self) -> Option<&str> {
        self.0.decision_sha256.get().map(String::as_str)
    }

    /// The request's id (returned in `x-request-id`).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The public id of the key the request authenticated with.
    pub fn set_key_id(&self, key_id: &str) {
        let _ = self.0.key_id.set(key_id.to_string());
    }

    pub fn key_id(&self) -> Option<&str> {
        self.0.key_id.get().map(String::as_str)
    }

    /// The request is for the version these counters belong to (first call wins): it
    /// counts under them by its final status, whichever version answers it.
    pub fn set_version(&self, counters: &VersionRequests) {
        let _ = self.0.counters.get_or_init(|| counters.clone());
    }

    /// The counters of the version the request is for, once one is set.
    pub fn version(&self) -> Option<&VersionRequests> {
        self.0.counters.get()
    }

    /// The version that answers (`name@version`), for the audit record.
    pub fn set_answered_by(&self, id: String) {
        let _ = self.0.answered_by.set(id);
    }

    pub fn answered_by(&self) -> Option<&str> {
        self.0.answered_by.get().map(String::as_str)
    }

    /// The response body counts the outcome itself when it ends (a chat stream).
    pub fn defer_outcome(&self) {
        self.0.outcome_deferred.store(true, Ordering::Relaxed);
    }

    pub fn outcome_deferred(&self) -> bool {
        self.0.outcome_deferred.load(Ordering::Relaxed)
    }
}

impl Default for RequestContext {
    fn default() -> Self {
        RequestContext::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time_and_differ() {
        let a = RequestContext::new();
        let b = RequestContext::new();
        assert!(crate::request_id::time_ms(a.id()).is_some(), "{}", a.id());
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn the_first_write_of_each_field_wins_and_clones_share_it() {
        let ctx = RequestContext::new();
        let seen_by_handler = ctx.clone();
        seen_by_handler.set_key_id("k1");
        seen_by_handler.set_key_id("k2");
        seen_by_handler.set_answered_by("credit@1".into());
        seen_by_handler.set_answered_by("credit@2".into());
        assert_eq!(ctx.key_id(), Some("k1"));
        assert_eq!(ctx.answered_by(), Some("credit@1"));
        assert!(!ctx.outcome_deferred());
        seen_by_handler.defer_outcome();
        assert!(ctx.outcome_deferred());
    }

    #[test]
    fn a_request_without_a_context_gets_a_detached_one() {
        let req = http::Request::new(());
        let detached = RequestContext::of(&req);
        detached.set_key_id("k");
        assert_eq!(RequestContext::of(&req).key_id(), None);
        let mut req = http::Request::new(());
        let ctx = RequestContext::new();
        req.extensions_mut().insert(ctx.clone());
        RequestContext::of(&req).set_key_id("k");
        assert_eq!(ctx.key_id(), Some("k"));
    }
}
