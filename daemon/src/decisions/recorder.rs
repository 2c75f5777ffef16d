//! What the scoring API calls: whether a model's decisions are kept, and keeping one
//! (sealed into the store off the async threads, then its hash into the audit chain).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::record::DecisionRecord;
use super::store::{DecisionStore, StoreError};
use crate::audit::{AuditEvent, AuditLog};

#[derive(Debug)]
pub struct Decisions {
    pub store: Arc<DecisionStore>,
    models: BTreeSet<String>,
    audit: Option<Arc<AuditLog>>,
}

impl Decisions {
    pub fn new(
        store: Arc<DecisionStore>,
        models: BTreeSet<String>,
        audit: Option<Arc<AuditLog>>,
    ) -> Decisions {
        Decisions {
            store,
            models,
            audit,
        }
    }

    /// Whether every scoring request of `model` is recorded.
    pub fn records(&self, model: &str) -> bool {
        self.models.contains(model)
    }

    /// Keeps a decision; an error means it was not kept (and must not be answered).
    pub async fn record(&self, rec: DecisionRecord) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        let (request_id, model, version) = (
            rec.request_id.clone(),
            rec.model.clone(),
            rec.version.clone(),
        );
        let sha256 = tokio::task::spawn_blocking(move || store.record(&rec))
            .await
            .map_err(|e| StoreError::Malformed(format!("recording stopped: {e}")))??;
        if let Some(audit) = &self.audit {
            audit
                .record(AuditEvent::Decision {
                    request_id,
                    model,
                    version,
                    sha256,
                })
                .await;
        }
        Ok(())
    }
}
