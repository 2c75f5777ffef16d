//! The model lifecycle calls: the version record (as the registry keeps it and every
//! call shows it), listings, history, activation and rollback, pins, removal, store
//! gc and file verification (with its NDJSON progress lines).

use coffer_models::{Format, Kind, Manifest};
use serde::{Deserialize, Serialize};

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Installed and verified, not evaluated yet.
    Staged,
    /// Its evaluation gate is running.
    Evaluating,
    /// Passed its gate; may be activated.
    Ready,
    /// Serves requests for its name.
    Active,
    /// Was active; kept for rollback.
    Retired,
    /// Failed its gate or lost its files; `reason` says why.
    Failed,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Staged => "staged",
            VersionState::Evaluating => "evaluating",
            VersionState::Ready => "ready",
            VersionState::Active => "active",
            VersionState::Retired => "retired",
            VersionState::Failed => "failed",
        }
    }
}

/// One installed model version. cofferd's registry stores exactly this record, so what
/// the API shows is what the appliance keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub format: Format,
    pub state: VersionState,
    /// Why it failed, or the last gate's summary.
    pub reason: Option<String>,
    /// The variant it serves (or would serve) on this host.
    pub variant: Option<String>,
    pub manifest_sha256: String,
    pub bytes: u64,
    /// Unix milliseconds.
    pub installed_at: u64,
    pub updated_at: u64,
    /// Imported with `--allow-schema-change`.
    #[serde(default)]
    pub allow_schema_change: bool,
}

impl VersionRecord {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One lifecycle change, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// Who: `uid N` for admin socket callers, `cofferd` for the daemon itself.
    pub actor: String,
    pub action: String,
    pub name: String,
    pub version: Option<String>,
    pub detail: String,
}

/// One model in `GET /admin/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    /// The active version.
    pub active: Option<String>,
    /// The pinned version.
    pub pinned: Option<String>,
    pub versions: Vec<VersionRecord>,
}

/// `GET /admin/models`: every installed version, the active pointers and pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub models: Vec<ModelEntry>,
}

/// `GET /admin/models/{name}`: a model's versions, pointers and recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDetail {
    #[serde(flatten)]
    pub model: ModelEntry,
    pub history: Vec<HistoryEntry>,
}

/// `GET /admin/models/{name}/versions/{version}`: the record, the manifest (absent
/// when its file cannot be read) and the version's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDetail {
    pub record: VersionRecord,
    pub manifest: Option<Manifest>,
    pub history: Vec<HistoryEntry>,
}

/// `GET /admin/models-history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub history: Vec<HistoryEntry>,
}

/// The optional body of `POST .../versions/{version}/activate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateOptions {
    /// Accept inputs that differ from the active version's.
    #[serde(default)]
    pub allow_schema_change: bool,
    /// Refuse unless this version passed shadow evaluation (`scoring.shadow_min_*`).
    #[serde(default)]
    pub require_shadow: bool,
}

/// The outcome of an activation or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub name: String,
    pub version: String,
    pub previous: Option<String>,
    pub variant: Option<String>,
    /// False when the version was already active (nothing changed).
    pub changed: bool,
}

/// The body of `PUT /admin/models/{name}/pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    pub version: String,
}

/// The answer to a pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub name: String,
    pub pinned: String,
}

/// The answer to an unpin: the version that was pinned, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpinned {
    pub name: String,
    pub unpinned: Option<String>,
}

/// `POST /admin/model-store/gc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub staging_removed: usize,
}

/// A version whose files all matched their manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub ok: bool,
    pub record: VersionRecord,
}

/// How far a verification has read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyProgress {
    pub file: String,
    pub done: u64,
    pub total: u64,
}

/// One NDJSON line of `POST .../verify?progress=true`: progress lines, then one result
/// or error line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLine {
    Progress(VerifyProgress),
    Result(Verified),
    Error(crate::ErrorDetail),
}
