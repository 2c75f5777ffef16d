//! cofferd's admin API as model sync needs it, through the one admin client
//! ([`coffer_admin_api::AdminClient`]): import a version directory (streamed, as
//! `cofferctl models import` does), list models, activate, roll back, read health and
//! report sync events. Refusals that decide a release's outcome (pinned, gate failed,
//! version exists) are mapped by pure functions that the tests drive without a daemon.

use std::path::Path;
use std::time::Duration;

use coffer_admin_api::models::{ActivateOptions, ModelEntry, VersionRecord, VersionState};
use coffer_admin_api::sync::{SyncEvent as SyncReport, SyncEventKind};
use coffer_admin_api::{AdminClient, ClientError};
use http::StatusCode;

/// Request outcomes of one served version, counted since cofferd started.
pub use coffer_admin_api::health::VersionHealth as ModelCounts;

/// Why an admin call did not give the answer sync wanted.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cofferd admin socket: {0}")]
    Admin(#[source] ClientError),
    #[error("cofferd refused: the model is pinned ({message})")]
    Pinned { message: String },
    #[error("cofferd refused: the evaluation gate failed ({message})")]
    GateFailed { message: String },
    #[error("cofferd answered {status} {code}: {message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
}

impl From<ClientError> for DaemonError {
    /// Refusals by their stable code; everything else (unreachable, a broken answer,
    /// an unreadable file) as it is.
    fn from(e: ClientError) -> DaemonError {
        match e {
            ClientError::Refused {
                status,
                code,
                message,
            } => match (status, code.as_str()) {
                (StatusCode::CONFLICT, "model_pinned") => DaemonError::Pinned { message },
                (StatusCode::UNPROCESSABLE_ENTITY, "gate_failed") => {
                    DaemonError::GateFailed { message }
                }
                _ => DaemonError::Refused {
                    status,
                    code,
                    message,
                },
            },
            other => DaemonError::Admin(other),
        }
    }
}

/// How an import ended, when cofferd took the request.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    /// Installed and through its gate: the version record cofferd answered.
    Imported(Box<VersionRecord>),
    /// cofferd has this name@version already (in whatever state: see [`models`]).
    AlreadyInstalled,
    /// Installed, but its evaluation gate failed; cofferd keeps it as `failed`.
    GateFailed { message: String },
}

/// One model as `GET /admin/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub name: String,
    pub active: Option<String>,
    pub pinned: Option<String>,
    /// `(version, state)`, state as cofferd names it (`staged`, `evaluating`,
    /// `ready`, `active`, `retired`, `failed`).
    pub versions: Vec<(String, String)>,
    /// `(version, sha256 of its manifest)`, lowercase hex.
    pub manifests: Vec<(String, String)>,
}

impl ModelStatus {
    /// The sha256 of the manifest cofferd holds for `version`.
    pub fn manifest_sha256(&self, version: &str) -> Option<&str> {
        self.manifests
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, sha)| sha.as_str())
    }
}

impl From<ModelEntry> for ModelStatus {
    fn from(m: ModelEntry) -> ModelStatus {
        ModelStatus {
            manifests: m
                .versions
                .iter()
                .map(|r| (r.version.clone(), r.manifest_sha256.clone()))
                .collect(),
            versions: m
                .versions
                .into_iter()
                .map(|r| (r.version, r.state.as_str().to_string()))
                .collect(),
            name: m.name,
            active: m.active,
            pinned: m.pinned,
        }
    }
}

/// `GET /admin/health`, the parts sync reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    pub models: Vec<ModelCounts>,
}

fn client(socket: &Path, timeout: Duration) -> AdminClient {
    AdminClient::new(socket).with_timeout(timeout)
}

/// Imports the version directory `version_dir` (`manifest.toml` and the files it
/// lists). `timeout` covers the upload and cofferd's gate.
pub async fn import(
    socket: &Path,
    version_dir: &Path,
    timeout: Duration,
) -> Result<ImportOutcome, DaemonError> {
    import_outcome(
        client(socket, timeout)
            .import(version_dir, false, None)
            .await,
    )
}

/// Maps the answer to an import. cofferd answers 201 with the record also when the
/// gate failed (state `failed`, the reason in `reason`).
pub(crate) fn import_outcome(
    answer: Result<VersionRecord, ClientError>,
) -> Result<ImportOutcome, DaemonError> {
    match answer {
        Ok(record) if record.state == VersionState::Failed => Ok(ImportOutcome::GateFailed {
            message: record.reason.unwrap_or_default(),
        }),
        Ok(record) => Ok(ImportOutcome::Imported(Box::new(record))),
        Err(e) => match DaemonError::from(e) {
            DaemonError::GateFailed { message } => Ok(ImportOutcome::GateFailed { message }),
            DaemonError::Refused { status, code, .. }
                if status == StatusCode::CONFLICT && code == "version_exists" =>
            {
                Ok(ImportOutcome::AlreadyInstalled)
            }
            other => Err(other),
        },
    }
}

/// Every model with its versions and pointers.
pub async fn models(socket: &Path, timeout: Duration) -> Result<Vec<ModelStatus>, DaemonError> {
    let list = client(socket, timeout).models().await?;
    Ok(list.models.into_iter().map(ModelStatus::from).collect())
}

/// What sync reports to cofferd (`POST /admin/sync/events`): it becomes a telemetry
/// event for the fleet and an audit record on the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// A poll failed.
    Failure,
    /// A transfer was cut off as too slow.
    Stalled,
    /// cofferd holds a version under a released name that the release did not sign.
    Impostor,
}

impl SyncEvent {
    fn kind(self) -> SyncEventKind {
        match self {
            SyncEvent::Failure => SyncEventKind::SyncFailure,
            SyncEvent::Stalled => SyncEventKind::SyncStalled,
            SyncEvent::Impostor => SyncEventKind::ImpostorVersion,
        }
    }
}

/// Reports `event` (for `model@version` where it concerns one).
pub async fn report(
    socket: &Path,
    event: SyncEvent,
    model: Option<&str>,
    version: Option<&str>,
    timeout: Duration,
) -> Result<(), DaemonError> {
    let report = SyncReport::new(event.kind(), model, version);
    Ok(client(socket, timeout).report_sync_event(&report).await?)
}

/// Activates `name@version` (cofferd runs its gate first if it has not run).
pub async fn activate(
    socket: &Path,
    name: &str,
    version: &str,
    timeout: Duration,
) -> Result<(), DaemonError> {
    client(socket, timeout)
        .activate(name, version, ActivateOptions::default())
        .await?;
    Ok(())
}

/// Makes the previous version of `name` active again.
pub async fn rollback(socket: &Path, name: &str, timeout: Duration) -> Result<(), DaemonError> {
    client(socket, timeout).rollback(name).await?;
    Ok(())
}

/// Readiness and per-version request outcomes.
pub async fn health(socket: &Path, timeout: Duration) -> Result<Health, DaemonError> {
    let report = client(socket, timeout).health().await?;
    Ok(Health {
        ready: report.ready,
        models: report.models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_models::{Format, Kind};

    fn refusal(status: StatusCode, code: &str, message: &str) -> ClientError {
        ClientError::Refused {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    fn record(version: &str, state: VersionState, reason: Option<&str>) -> VersionRecord {
        VersionRecord {
            name: "credit-lr".into(),
            version: version.into(),
            kind: Kind::Score,
            format: Format::Onnx,
            state,
            reason: reason.map(str::to_string),
            variant: None,
            manifest_sha256: "ab".into(),
            bytes: 10,
            installed_at: 1,
            updated_at: 2,
            allow_schema_change: false,
        }
    }

    #[test]
    fn import_answers_map_to_outcomes() {
        let ready = record("2.0.0", VersionState::Ready, Some("AUC 0.77 (floor 0.75)"));
        assert_eq!(
            import_outcome(Ok(ready.clone())).unwrap(),
            ImportOutcome::Imported(Box::new(ready))
        );
        assert_eq!(
            import_outcome(Ok(record("2.0.0", VersionState::Failed, Some("AUC 0.6")))).unwrap(),
            ImportOutcome::GateFailed {
                message: "AUC 0.6".into()
            }
        );
        assert_eq!(
            import_outcome(Err(refusal(
                StatusCode::CONFLICT,
                "version_exists",
                "credit-lr@2.0.0 exists"
            )))
            .unwrap(),
            ImportOutcome::AlreadyInstalled
        );
        assert_eq!(
            import_outcome(Err(refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "gate_failed",
                "AUC too low"
            )))
            .unwrap(),
            ImportOutcome::GateFailed {
                message: "AUC too low".into()
            }
        );
        match import_outcome(Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_files",
            "weights.onnx: sha256 differs",
        ))) {
            Err(DaemonError::Refused {
                status,
                code,
                message,
            }) => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(code, "invalid_files");
                assert_eq!(message, "weights.onnx: sha256 differs");
            }
            other => panic!("{other:?}"),
        }
        // A 409 that is not version_exists is a refusal.
        assert!(matches!(
            import_outcome(Err(refusal(StatusCode::CONFLICT, "schema_change", "input x gone"))),
            Err(DaemonError::Refused { code, .. }) if code == "schema_change"
        ));
        assert!(matches!(
            import_outcome(Err(ClientError::Timeout(Duration::from_secs(1)))),
            Err(DaemonError::Admin(ClientError::Timeout(_)))
        ));
    }

    #[test]
    fn models_list_maps_pointers_states_and_manifests() {
        let entry = ModelEntry {
            name: "credit-lr".into(),
            active: Some("2.0.0".into()),
            pinned: None,
            versions: vec![
                record("1.0.0", VersionState::Retired, None),
                record("2.0.0", VersionState::Active, Some("ok")),
            ],
        };
        let status = ModelStatus::from(entry);
        assert_eq!(
            status.versions,
            vec![
                ("1.0.0".into(), "retired".into()),
                ("2.0.0".into(), "active".into())
            ]
        );
        assert_eq!(status.manifest_sha256("2.0.0"), Some("ab"));
        assert_eq!(status.manifest_sha256("3.0.0"), None);
        assert_eq!(status.active.as_deref(), Some("2.0.0"));
    }

    #[test]
    fn activation_and_rollback_refusals_are_typed() {
        assert!(matches!(
            DaemonError::from(refusal(StatusCode::CONFLICT, "model_pinned", "pinned to 1.0.0")),
            DaemonError::Pinned { message } if message == "pinned to 1.0.0"
        ));
        assert!(matches!(
            DaemonError::from(refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "gate_failed",
                "AUC"
            )),
            DaemonError::GateFailed { .. }
        ));
        assert!(matches!(
            DaemonError::from(refusal(StatusCode::CONFLICT, "no_previous_version", "none")),
            DaemonError::Refused { code, .. } if code == "no_previous_version"
        ));
        // The same code under another status is not the typed refusal.
        assert!(matches!(
            DaemonError::from(refusal(StatusCode::BAD_REQUEST, "model_pinned", "odd")),
            DaemonError::Refused { .. }
        ));
    }

    #[test]
    fn sync_events_are_reported_by_their_wire_names() {
        assert_eq!(SyncEvent::Failure.kind().as_str(), "sync_failure");
        assert_eq!(SyncEvent::Stalled.kind().as_str(), "sync_stalled");
        assert_eq!(SyncEvent::Impostor.kind().as_str(), "impostor_version");
    }
}
