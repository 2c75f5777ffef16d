//! Rotating the decision store's key: by itself once the current key has sealed its
//! share of records (2^32, the limit NIST SP 800-38D sets for AES-GCM with random
//! nonces), or when an admin asks. Every rotation is logged and goes into the audit chain
//! as a `decision_key_rotated` record (kept past the audit log's retention), so the key
//! history an auditor reads is complete whoever made the key.

use std::sync::{Arc, RwLock};

use super::keyring::{KeyError, Keyring};
use crate::audit::{AuditEvent, AuditLog};

/// Records one key seals before a new key takes over (the nonces are a random start and
/// a counter, safer than random nonces, so this is a bound, not a cliff).
pub const ROTATE_AFTER: u64 = 1 << 32;
/// How many more records a failed rotation waits before it is tried again.
const RETRY_AFTER: u64 = 1 << 16;

/// When the store rotates its key by itself, and where every rotation is recorded.
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
    pub fn rotate_when_due(&self, keyring: &RwLock<Keyring>) {
        let done = {
            let mut ring = write(keyring);
            if !self.due(&ring) {
                return; // another thread rotated first
            }
            let done = rotate(&mut ring, "limit");
            if let Err(e) = &done {
                tracing::error!(error = %e, key_id = %ring.current(), sealed = ring.sealed_under_current(), "the decision key is due for rotation and a new key could not be made; tried again later");
                ring.set_sealed(self.after.saturating_sub(RETRY_AFTER));
            }
            done
        };
        if let Ok((_, event)) = done {
            self.record(event);
        }
    }

    /// Rotates the key now (an admin's request); returns the new key's id.
    pub fn rotate_now(&self, keyring: &RwLock<Keyring>) -> Result<String, KeyError> {
        let (key_id, event) = rotate(&mut write(keyring), "admin")?;
        self.record(event);
        Ok(key_id)
    }

    /// Writes the record (after the keyring is unlocked). On the runtime (an automatic
    /// rotation happens on the request's async worker) it is handed to a task, which
    /// waits off the workers if the audit writer is behind; elsewhere it is sent here.
    fn record(&self, event: AuditEvent) {
        let Some(audit) = &self.audit else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let audit = Arc::clone(audit);
                runtime.spawn(async move { audit.record(event).await });
            }
            Err(_) => audit.record_blocking(event),
        }
    }
}

fn write(keyring: &RwLock<Keyring>) -> std::sync::RwLockWriteGuard<'_, Keyring> {
    keyring
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes a new key and logs it; returns its id and the audit record that says so.
/// `reason`: `limit` (the store's own, the key sealed its share) or `admin` (asked for).
fn rotate(ring: &mut Keyring, reason: &str) -> Result<(String, AuditEvent), KeyError> {
    let sealed = ring.sealed_under_current();
    let previous = ring.current().to_string();
    let key_id = ring.rotate()?;
    tracing::info!(old_key = %previous, key_id = %key_id, sealed, reason, "a new decision key seals from now on");
    let event = AuditEvent::DecisionKeyRotated {
        previous,
        key_id: key_id.clone(),
        sealed,
        reason: reason.to_string(),
    };
    Ok((key_id, event))
}
