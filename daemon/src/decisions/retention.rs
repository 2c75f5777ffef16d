//! Retention of the decision store: hourly, the decisions older than the retention are
//! removed and, when any were, a `decisions_pruned` record goes into the audit chain (a
//! lasting record, carried forward and covered by the signed checkpoints), so that an
//! auditor can tell decisions pruned on schedule from decisions deleted.

use std::sync::Arc;
use std::time::Duration;

use super::store::DecisionStore;
use crate::audit::{AuditEvent, AuditLog};

/// How often the store is pruned.
const EVERY: Duration = Duration::from_secs(3600);

pub use super::record::now_ms;

/// Prunes once now; the audit record is written when something was removed.
pub fn prune_now(store: &DecisionStore, audit: Option<&AuditLog>) {
    match store.prune(now_ms()) {
        Ok((0, _)) => {}
        Ok((removed, before_ms)) => {
            tracing::info!(removed, before_ms, "decisions past their retention removed");
            if let Some(audit) = audit {
                audit.record_blocking(AuditEvent::DecisionsPruned { removed, before_ms });
            }
        }
        Err(e) => tracing::error!(error = %e, "pruning the decision store failed"),
    }
}

pub fn spawn(
    store: Arc<DecisionStore>,
    audit: Option<Arc<AuditLog>>,
) -> tokio::task::JoinHandle<()> {
    prune_now(&store, audit.as_deref());
    crate::periodic::every(EVERY, move || {
        let (store, audit) = (Arc::clone(&store), audit.clone());
        Box::new(move || prune_now(&store, audit.as_deref()))
    })
}
