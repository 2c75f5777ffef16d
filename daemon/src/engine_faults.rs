//! Engine panics contained (`coffer_engine::faults`, re-exported here), and where the
//! daemon reports them: [`AuditFaults`] records each one in the audit log.

use std::sync::Arc;

pub use coffer_engine::faults::*;

use crate::audit::{AuditEvent, AuditLog};

/// Contained engine panics are audited: the audit log as a [`FaultSink`].
#[derive(Debug, Clone)]
pub struct AuditFaults(pub Arc<AuditLog>);

impl AuditFaults {
    /// The audit log as the sink a [`FaultWatch`] reports to.
    pub fn sink(audit: Arc<AuditLog>) -> Arc<dyn FaultSink> {
        Arc::new(AuditFaults(audit))
    }
}

impl FaultSink for AuditFaults {
    fn engine_fault(&self, model: &str, version: &str, part: &'static str) {
        self.0.record_blocking(AuditEvent::EngineFault {
            model: model.to_string(),
            version: version.to_string(),
            part: part.to_string(),
        });
    }
}
