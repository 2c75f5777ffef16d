//! What model sync remembers across restarts (`STATE_DIR/sync/state.json`, written
//! atomically): the outcome of the last release tried for each model, so that a
//! version that failed its gates is not tried again until a newer release comes, and
//! the poll history (`coffer-agent sync-status` prints it). Downloads resume from
//! `STATE_DIR/sync/downloads/` and TUF's datastore is `STATE_DIR/sync/tuf/`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the last attempt at a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Serving, and through its health gate.
    Active,
    /// cofferd's evaluation gate refused it; not tried again.
    GateFailed,
    /// Activated, failed the health gate, rolled back; not tried again.
    RolledBack,
    /// cofferd refused it for a reason an admin must look at (e.g. a schema change);
    /// not tried again.
    Refused,
    /// The model is pinned on this appliance: pins win; looked at again each poll.
    Pinned,
    /// Something transient (download, cofferd unreachable); tried again next poll.
    Error,
    /// cofferd holds a version under this release's name whose manifest is not the
    /// signed one: not activated; looked at again each poll (an admin may remove it).
    Impostor,
    /// Downloaded and imported, not yet activated: outside `sync.change_window` or
    /// before the release's not-before time; looked at again each poll.
    AwaitingWindow,
    /// Halt keys are authorized but no current halt list could be read: nothing is
    /// activated until one can; looked at again each poll.
    AwaitingHaltList,
    /// The release is halted (`coffer-release halt`, or `watch` when its abort criteria
    /// tripped): neither downloaded nor activated; looked at again each poll.
    Halted,
}

impl OutcomeKind {
    /// Whether the same release is tried again on the next poll.
    pub fn retries(self) -> bool {
        matches!(
            self,
            OutcomeKind::Pinned
                | OutcomeKind::Error
                | OutcomeKind::Impostor
                | OutcomeKind::AwaitingWindow
                | OutcomeKind::AwaitingHaltList
                | OutcomeKind::Halted
        )
    }
}

/// The last attempt at a model's release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub version: String,
    pub seq: u64,
    pub kind: OutcomeKind,
    pub detail: String,
    /// RFC 3339.
    pub at: String,
}

/// The persisted sync state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub models: BTreeMap<String, Outcome>,
    /// Polls that ended in an error since the last good one.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Polls (ever) that ended because the host was too slow: a stall, the metadata
    /// deadline or the minimum rate.
    #[serde(default)]
    pub stalled_polls: u64,
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub last_success: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The halt list this site took last (`sync::halt_list`).
    #[serde(default)]
    pub halt_list: HaltSeen,
    /// How the last poll went, as the site report names it.
    #[serde(default)]
    pub last_poll: Option<PollHealth>,
}

/// What the site remembers of the halt list it took last: the authorized key set it was
/// signed under, its version (an older one is refused; a new key set starts afresh) and
/// the releases it halted (kept in force while no current list can be read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltSeen {
    pub keys: String,
    pub version: u64,
    pub halted: Vec<(String, String)>,
}

/// How a poll went: a state and, when it failed, a short reason from a closed set
/// (what the site report sends; `last_error` keeps the whole message on the site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollHealth {
    pub state: coffer_fleet::site::SyncState,
    pub reason: String,
}

pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl SyncState {
    pub fn path(sync_dir: &Path) -> PathBuf {
        sync_dir.join("state.json")
    }

    /// Reads the state; a missing file is a fresh state, a damaged one is set aside
    /// (`state.json.damaged`) with a warning rather than stopping sync for good.
    pub fn load(sync_dir: &Path) -> SyncState {
        let path = Self::path(sync_dir);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "sync state is damaged; starting afresh");
                    let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                    SyncState::default()
                }
            },
            Err(_) => SyncState::default(),
        }
    }

    pub fn save(&self, sync_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(sync_dir)?;
        let path = Self::path(sync_dir);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(sync_dir)?.sync_all()
    }

    /// Whether the release `seq` of `model` should be left alone: it failed in a way
    /// that retrying cannot fix.
    pub fn gave_up_on(&self, model: &str, seq: u64) -> bool {
        self.models
            .get(model)
            .is_some_and(|o| o.seq == seq && !o.kind.retries() && o.kind != OutcomeKind::Active)
    }

    pub fn record(
        &mut self,
        model: &str,
        version: &str,
        seq: u64,
        kind: OutcomeKind,
        detail: String,
    ) {
        self.models.insert(
            model.to_string(),
            Outcome {
                version: version.to_string(),
                seq,
                kind,
                detail,
                at: now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SyncState::default();
        s.record(
            "credit-lr",
            "2.0.0",
            2,
            OutcomeKind::RolledBack,
            "server errors 40%".into(),
        );
        s.save(dir.path()).unwrap();
        let back = SyncState::load(dir.path());
        assert_eq!(back, s);
        assert!(back.gave_up_on("credit-lr", 2));
        assert!(!back.gave_up_on("credit-lr", 3), "a newer release is tried");
        std::fs::write(SyncState::path(dir.path()), b"{not json").unwrap();
        assert_eq!(SyncState::load(dir.path()), SyncState::default());
        assert!(dir.path().join("state.json.damaged").exists());
    }

    #[test]
    fn transient_outcomes_retry() {
        let mut s = SyncState::default();
        s.record("m", "1", 1, OutcomeKind::Error, "host unreachable".into());
        assert!(!s.gave_up_on("m", 1));
        s.record("m", "1", 1, OutcomeKind::Pinned, "pinned to 0.9".into());
        assert!(!s.gave_up_on("m", 1));
        s.record("m", "1", 1, OutcomeKind::GateFailed, "AUC 0.5".into());
        assert!(s.gave_up_on("m", 1));
    }
}
