//! `POST /admin/sync/events`: what the fleet agent's sync reports to cofferd, which
//! makes it a telemetry event for the fleet and an audit record on the appliance.

use serde::{Deserialize, Serialize};

/// The events an agent may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncEventKind {
    /// A poll failed.
    SyncFailure,
    /// A transfer was cut off as too slow.
    SyncStalled,
    /// cofferd holds a version under a released name that the release did not sign.
    ImpostorVersion,
}

impl SyncEventKind {
    pub const ALL: [SyncEventKind; 3] = [
        SyncEventKind::SyncFailure,
        SyncEventKind::SyncStalled,
        SyncEventKind::ImpostorVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncEventKind::SyncFailure => "sync_failure",
            SyncEventKind::SyncStalled => "sync_stalled",
            SyncEventKind::ImpostorVersion => "impostor_version",
        }
    }
}

/// One report. `event` stays a string on the wire so that cofferd can name an unknown
/// one in its refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncEvent {
    /// `sync_failure`, `sync_stalled` or `impostor_version`.
    pub event: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl SyncEvent {
    pub fn new(kind: SyncEventKind, model: Option<&str>, version: Option<&str>) -> SyncEvent {
        SyncEvent {
            event: kind.as_str().to_string(),
            model: model.map(str::to_string),
            version: version.map(str::to_string),
        }
    }

    /// The event's kind, when it is one cofferd knows.
    pub fn kind(&self) -> Option<SyncEventKind> {
        SyncEventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == self.event)
    }
}
