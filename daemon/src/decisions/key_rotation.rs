//! The store's own key rotation: once the current key has sealed its share of records
//! (2^32, the limit NIST SP 800-38D sets for AES-GCM with random nonces) a new key seals
//! from then on. Each such rotation is logged and goes into the audit chain as a
//! `decision_key_rotated` record (kept past the audit log's retention, like an admin's
//! rotation), so the key history an auditor reads is complete.

use std::sync::{Arc, RwLock};

use super::keyring::Keyring;
use crate::audit::{AuditEvent, AuditLog};

/// Records one key seals before a new key takes over (the nonces are a random start and
/// a counter, safer than random nonces, so this is a bound, not a cliff).
pub const ROTATE_AFTER: u64 = 1 << 32;
/// How many more records a failed rotation waits before it is tried again.
const RETRY_AFTER: u64 = 1 << 16;

/// When the store rotates its key by itself, and where that is recorded.
#[derive(Debug)]
pub struct AutoRotation {
    after: u64,
    audit: Option<Arc<AuditLog>>,
}

impl AutoRotation {
    pub fn new(after: u64) -> AutoRotation {
        AutoRotation { after, audit: None }
    }

    /// Rotations go into `audit` from now on.
    pub fn audited_by(&mut self, audit: Option<Arc<AuditLog>>) {
        self.audit = audit;
    }

    /// Whether the current key has sealed its share (read under the lock sealing takes).
    pub fn due(&self, ring: &Keyring) -> bool {
        ring.sealed_under_current() >= self.after
    }

    /// Rotates the key once it has sealed its share. A failure is logged and tried again
    /// [`RETRY_AFTER`] records later; the decision that found it due is kept either way.
    /// The audit record is written after the keyring is unlocked.
    pub fn rotate_when_due(&self, keyring: &RwLock<Keyring>) {
        let event = {
            let mut ring = keyring
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sealed = ring.sealed_under_current();
            if sealed < self.after {
                return; // another thread rotated first
            }
            let previous = ring.current().to_string();
            match ring.rotate() {
                Ok(key_id) => {
                    tracing::info!(old_key = %previous, key_id = %key_id, sealed, "the decision key sealed its share of records: a new key seals from now on");
                    AuditEvent::DecisionKeyRotated {
                        previous,
                        key_id,
                        sealed,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, key_id = %previous, sealed, "the decision key is due for rotation and a new key could not be made; tried again later");
                    ring.set_sealed(self.after.saturating_sub(RETRY_AFTER));
                    return;
                }
            }
        };
        if let Some(audit) = &self.audit {
            audit.record_blocking(event);
        }
    }
}
