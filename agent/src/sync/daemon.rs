//! cofferd's admin API as model sync needs it, over the admin socket: import a version
//! directory (streamed, as `cofferctl models import` does), list models, activate, roll
//! back, and read health. Answers are mapped by pure functions (`*_from`) that the
//! tests drive without a daemon. The wire format is docs/models.md's "Admin API".

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::body::Frame;
use serde::Deserialize;

use crate::transport::{self, HttpError};

/// Bytes per body frame of an import.
const CHUNK: usize = 256 * 1024;

/// Why an admin call did not give the answer sync wanted.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cofferd admin socket: {0}")]
    Http(#[from] HttpError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The version directory does not match its manifest.
    #[error(transparent)]
    Version(#[from] coffer_models::VerifyError),
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
    #[error("cofferd's answer to {call} is not what was expected: {detail}")]
    BadAnswer { call: &'static str, detail: String },
}

/// How an import ended, when cofferd took the request.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    /// Installed and through its gate: the version record cofferd answered.
    Imported(serde_json::Value),
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
    /// `(version, sha256 of its manifest)`, lowercase hex, for each version cofferd
    /// reported one.
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

/// `GET /admin/health`, the parts sync reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    pub models: Vec<ModelCounts>,
}

/// Request outcomes of one served version, counted since cofferd started.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelCounts {
    pub model: String,
    pub version: String,
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub client_error: u64,
    #[serde(default)]
    pub server_error: u64,
}

/// Imports the version directory `version_dir` (`manifest.toml` and the files it
/// lists): the body is the manifest's length (u64 big-endian), the manifest, then each
/// file in manifest order, read on a blocking thread a chunk at a time. `timeout`
/// covers the upload and cofferd's gate.
pub async fn import(
    socket: &Path,
    version_dir: &Path,
    timeout: Duration,
) -> Result<ImportOutcome, DaemonError> {
    use http_body_util::StreamBody;

    let coffer_models::import_body::ImportBody { head, files, .. } =
        coffer_models::import_body::prepare(version_dir)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let reader = tokio::task::spawn_blocking(move || send_files(head, files, &tx));
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let path = "/admin/models";
    let sent = transport::admin_body(
        socket,
        Method::POST,
        path,
        "application/octet-stream",
        body,
        timeout,
    )
    .await;
    match sent {
        Ok(reply) => import_from(reply.status, &reply.body),
        Err(e) => {
            // A file that could not be read explains the broken request best. The
            // connection is gone, so the reader stops at its next send.
            let read = tokio::time::timeout(Duration::from_secs(1), reader).await;
            match read {
                Ok(Ok(Err(read_error))) => Err(read_error),
                _ => Err(e.into()),
            }
        }
    }
}

/// Feeds the import body into `tx`; stops quietly when the request is gone.
fn send_files(
    head: Vec<u8>,
    files: Vec<PathBuf>,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) -> Result<(), DaemonError> {
    if tx
        .blocking_send(Ok(Frame::data(Bytes::from(head))))
        .is_err()
    {
        return Ok(());
    }
    for path in files {
        let failed = |source: std::io::Error| DaemonError::Read {
            path: path.clone(),
            source,
        };
        let fail = |e: std::io::Error| {
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
            failed(e)
        };
        let mut file = std::fs::File::open(&path).map_err(fail)?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Every model with its versions and pointers.
pub async fn models(socket: &Path, timeout: Duration) -> Result<Vec<ModelStatus>, DaemonError> {
    let reply = transport::admin(socket, Method::GET, "/admin/models", None, timeout).await?;
    models_from(reply.status, &reply.body)
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
    fn code(self) -> &'static str {
        match self {
            SyncEvent::Failure => "sync_failure",
            SyncEvent::Stalled => "sync_stalled",
            SyncEvent::Impostor => "impostor_version",
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
    let body = serde_json::json!({ "event": event.code(), "model": model, "version": version });
    let reply = transport::admin(
        socket,
        Method::POST,
        "/admin/sync/events",
        Some(body),
        timeout,
    )
    .await?;
    change_from(reply.status, &reply.body)
}

/// Activates `name@version` (cofferd runs its gate first if it has not run).
pub async fn activate(
    socket: &Path,
    name: &str,
    version: &str,
    timeout: Duration,
) -> Result<(), DaemonError> {
    let path = format!(
        "/admin/models/{}/versions/{}/activate",
        segment(name),
        segment(version)
    );
    let reply = transport::admin(socket, Method::POST, &path, None, timeout).await?;
    change_from(reply.status, &reply.body)
}

/// Makes the previous version of `name` active again.
pub async fn rollback(socket: &Path, name: &str, timeout: Duration) -> Result<(), DaemonError> {
    let path = format!("/admin/models/{}/rollback", segment(name));
    let reply = transport::admin(socket, Method::POST, &path, None, timeout).await?;
    change_from(reply.status, &reply.body)
}

/// Readiness and per-version request outcomes.
pub async fn health(socket: &Path, timeout: Duration) -> Result<Health, DaemonError> {
    let reply = transport::admin(socket, Method::GET, "/admin/health", None, timeout).await?;
    health_from(reply.status, &reply.body)
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// The `{"error": {"code", "message"}}` of a refusal (`("", body text)` when it is
/// not one).
fn refusal(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (String::new(), String::from_utf8_lossy(body).into_owned()),
    }
}

fn refused(status: StatusCode, body: &[u8]) -> DaemonError {
    let (code, message) = refusal(body);
    match (status, code.as_str()) {
        (StatusCode::CONFLICT, "model_pinned") => DaemonError::Pinned { message },
        (StatusCode::UNPROCESSABLE_ENTITY, "gate_failed") => DaemonError::GateFailed { message },
        _ => DaemonError::Refused {
            status,
            code,
            message,
        },
    }
}

fn bad(call: &'static str, e: serde_json::Error) -> DaemonError {
    DaemonError::BadAnswer {
        call,
        detail: e.to_string(),
    }
}

/// Maps the answer to an import. cofferd answers 201 with the record also when the
/// gate failed (`"state": "failed"`, the reason in `reason`).
pub(crate) fn import_from(status: StatusCode, body: &[u8]) -> Result<ImportOutcome, DaemonError> {
    if status == StatusCode::CREATED {
        let record: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| bad("import", e))?;
        if record["state"] == "failed" {
            let message = record["reason"].as_str().unwrap_or_default().to_string();
            return Ok(ImportOutcome::GateFailed { message });
        }
        return Ok(ImportOutcome::Imported(record));
    }
    match refused(status, body) {
        DaemonError::GateFailed { message } => Ok(ImportOutcome::GateFailed { message }),
        DaemonError::Refused { code, .. }
            if status == StatusCode::CONFLICT && code == "version_exists" =>
        {
            Ok(ImportOutcome::AlreadyInstalled)
        }
        other => Err(other),
    }
}

#[derive(Debug, Deserialize)]
struct ModelsBody {
    models: Vec<ModelWire>,
}

#[derive(Debug, Deserialize)]
struct ModelWire {
    name: String,
    active: Option<String>,
    pinned: Option<String>,
    #[serde(default)]
    versions: Vec<RecordWire>,
}

#[derive(Debug, Deserialize)]
struct RecordWire {
    version: String,
    state: String,
    #[serde(default)]
    manifest_sha256: Option<String>,
}

/// Maps the answer to `GET /admin/models`.
pub(crate) fn models_from(
    status: StatusCode,
    body: &[u8],
) -> Result<Vec<ModelStatus>, DaemonError> {
    if status != StatusCode::OK {
        return Err(refused(status, body));
    }
    let parsed: ModelsBody = serde_json::from_slice(body).map_err(|e| bad("models", e))?;
    Ok(parsed
        .models
        .into_iter()
        .map(|m| ModelStatus {
            name: m.name,
            active: m.active,
            pinned: m.pinned,
            manifests: m
                .versions
                .iter()
                .filter_map(|r| Some((r.version.clone(), r.manifest_sha256.clone()?)))
                .collect(),
            versions: m
                .versions
                .into_iter()
                .map(|r| (r.version, r.state))
                .collect(),
        })
        .collect())
}

/// Maps the answer to an activation or a rollback.
pub(crate) fn change_from(status: StatusCode, body: &[u8]) -> Result<(), DaemonError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(refused(status, body))
    }
}

#[derive(Debug, Deserialize)]
struct HealthBody {
    ready: bool,
    #[serde(default)]
    models: Vec<ModelCounts>,
}

/// Maps the answer to `GET /admin/health`. A 503 that carries the health body is an
/// answer (not ready), not a refusal.
pub(crate) fn health_from(status: StatusCode, body: &[u8]) -> Result<Health, DaemonError> {
    if status != StatusCode::OK && status != StatusCode::SERVICE_UNAVAILABLE {
        return Err(refused(status, body));
    }
    match serde_json::from_slice::<HealthBody>(body) {
        Ok(h) => Ok(Health {
            ready: h.ready,
            models: h.models,
        }),
        Err(_) if status != StatusCode::OK => Err(refused(status, body)),
        Err(e) => Err(bad("health", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        body(json!({ "error": { "code": code, "message": message } }))
    }

    fn record(state: &str, reason: Option<&str>) -> serde_json::Value {
        json!({
            "name": "credit-lr", "version": "2.0.0", "kind": "score", "format": "onnx",
            "state": state, "reason": reason, "variant": null, "manifest_sha256": "ab",
            "bytes": 10, "installed_at": 1, "updated_at": 2, "allow_schema_change": false
        })
    }

    #[test]
    fn import_answers_map_to_outcomes() {
        let ready = record("ready", Some("AUC 0.77 (floor 0.75)"));
        assert_eq!(
            import_from(StatusCode::CREATED, &body(ready.clone())).unwrap(),
            ImportOutcome::Imported(ready)
        );
        assert_eq!(
            import_from(
                StatusCode::CREATED,
                &body(record("failed", Some("AUC 0.6")))
            )
            .unwrap(),
            ImportOutcome::GateFailed {
                message: "AUC 0.6".into()
            }
        );
        let exists = error("version_exists", "credit-lr@2.0.0 exists");
        assert_eq!(
            import_from(StatusCode::CONFLICT, &exists).unwrap(),
            ImportOutcome::AlreadyInstalled
        );
        let gate = error("gate_failed", "AUC too low");
        assert_eq!(
            import_from(StatusCode::UNPROCESSABLE_ENTITY, &gate).unwrap(),
            ImportOutcome::GateFailed {
                message: "AUC too low".into()
            }
        );
        let files = error("invalid_files", "weights.onnx: sha256 differs");
        match import_from(StatusCode::BAD_REQUEST, &files) {
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
        let schema = error("schema_change", "input x gone");
        assert!(matches!(
            import_from(StatusCode::CONFLICT, &schema),
            Err(DaemonError::Refused { code, .. }) if code == "schema_change"
        ));
        assert!(matches!(
            import_from(StatusCode::CREATED, b"not json"),
            Err(DaemonError::BadAnswer { .. })
        ));
    }

    #[test]
    fn models_list_maps_pointers_and_states() {
        let mut retired = record("retired", None);
        retired["version"] = json!("1.0.0");
        let answer = body(json!({ "models": [
            { "name": "credit-lr", "active": "2.0.0", "pinned": null,
              "versions": [retired, record("active", Some("ok"))] },
            { "name": "chat", "active": null, "pinned": "0.1.0", "versions": [] }
        ]}));
        let models = models_from(StatusCode::OK, &answer).unwrap();
        assert_eq!(
            models,
            vec![
                ModelStatus {
                    name: "credit-lr".into(),
                    active: Some("2.0.0".into()),
                    pinned: None,
                    versions: vec![
                        ("1.0.0".into(), "retired".into()),
                        ("2.0.0".into(), "active".into())
                    ],
                    manifests: vec![("1.0.0".into(), "ab".into()), ("2.0.0".into(), "ab".into())],
                },
                ModelStatus {
                    name: "chat".into(),
                    active: None,
                    pinned: Some("0.1.0".into()),
                    versions: vec![],
                    manifests: vec![],
                },
            ]
        );
        assert!(matches!(
            models_from(StatusCode::OK, b"{}"),
            Err(DaemonError::BadAnswer { .. })
        ));
        assert!(matches!(
            models_from(StatusCode::FORBIDDEN, &error("peer_not_allowed", "uid 5")),
            Err(DaemonError::Refused {
                status: StatusCode::FORBIDDEN,
                ..
            })
        ));
    }

    #[test]
    fn activation_and_rollback_refusals_are_typed() {
        assert!(change_from(StatusCode::OK, &body(record("active", None))).is_ok());
        assert!(matches!(
            change_from(StatusCode::CONFLICT, &error("model_pinned", "pinned to 1.0.0")),
            Err(DaemonError::Pinned { message }) if message == "pinned to 1.0.0"
        ));
        assert!(matches!(
            change_from(StatusCode::UNPROCESSABLE_ENTITY, &error("gate_failed", "AUC")),
            Err(DaemonError::GateFailed { message }) if message == "AUC"
        ));
        assert!(matches!(
            change_from(StatusCode::CONFLICT, &error("no_previous_version", "none")),
            Err(DaemonError::Refused { status: StatusCode::CONFLICT, code, .. })
                if code == "no_previous_version"
        ));
        // A body that is not an error object still gives a refusal with its text.
        assert!(matches!(
            change_from(StatusCode::BAD_GATEWAY, b"upstream"),
            Err(DaemonError::Refused { code, message, .. })
                if code.is_empty() && message == "upstream"
        ));
    }

    #[test]
    fn health_parses_counts_and_ignores_the_rest() {
        let answer = body(json!({
            "ready": true,
            "components": { "gpu": "ok", "audit": { "state": "ok" } },
            "models": [
                { "model": "credit-lr", "version": "2.0.0", "ok": 120, "client_error": 3,
                  "server_error": 1, "p99_ms": 4.5 }
            ],
            "uptime_s": 30
        }));
        let health = health_from(StatusCode::OK, &answer).unwrap();
        assert_eq!(
            health,
            Health {
                ready: true,
                models: vec![ModelCounts {
                    model: "credit-lr".into(),
                    version: "2.0.0".into(),
                    ok: 120,
                    client_error: 3,
                    server_error: 1,
                }],
            }
        );
        let not_ready = body(json!({ "ready": false, "components": {}, "models": [] }));
        assert!(
            !health_from(StatusCode::SERVICE_UNAVAILABLE, &not_ready)
                .unwrap()
                .ready
        );
        assert!(matches!(
            health_from(StatusCode::NOT_FOUND, b""),
            Err(DaemonError::Refused {
                status: StatusCode::NOT_FOUND,
                ..
            })
        ));
        assert!(matches!(
            health_from(StatusCode::OK, b"{\"models\": []}"),
            Err(DaemonError::BadAnswer { .. })
        ));
    }

    const MANIFEST: &str = "name = \"c\"\nversion = \"1\"\nkind = \"chat\"\nformat = \"gguf\"\n\
        [[files]]\npath = \"m.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 600000\nrole = \"model\"\n\
        [[files]]\npath = \"a.gguf\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 5\nrole = \"model\"\n";

    /// A version directory whose files are listed in another order than their names.
    fn version_dir() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("manifest.toml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("m.gguf"), &big).unwrap();
        std::fs::write(dir.path().join("a.gguf"), b"tail!").unwrap();
        let mut want = (MANIFEST.len() as u64).to_be_bytes().to_vec();
        want.extend_from_slice(MANIFEST.as_bytes());
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tail!");
        (dir, want)
    }

    /// A one-connection admin socket that records the request and answers 201.
    async fn fake_cofferd(socket: &Path) -> tokio::task::JoinHandle<(String, Bytes)> {
        use http_body_util::BodyExt as _;
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tx = std::sync::Mutex::new(Some(tx));
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.lock().unwrap().take();
                    async move {
                        let target = format!("{} {}", req.method(), req.uri());
                        let body = req.into_body().collect().await?.to_bytes();
                        if let Some(tx) = tx {
                            let _ = tx.send((target, body));
                        }
                        let answer = record("ready", Some("no evaluation gate in the manifest"));
                        let mut response = http::Response::new(http_body_util::Full::new(
                            Bytes::from(answer.to_string()),
                        ));
                        *response.status_mut() = StatusCode::CREATED;
                        Ok::<_, hyper::Error>(response)
                    }
                });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
                .unwrap();
            rx.await.unwrap()
        })
    }

    #[tokio::test]
    async fn import_streams_the_manifest_then_the_files_in_manifest_order() {
        let (dir, want) = version_dir();
        let socket = dir.path().join("admin.sock");
        let server = fake_cofferd(&socket).await;
        let outcome = import(&socket, dir.path(), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(outcome, ImportOutcome::Imported(r) if r["state"] == "ready"));
        let (target, body) = server.await.unwrap();
        assert_eq!(target, "POST /admin/models");
        assert_eq!(body.len(), want.len());
        assert!(
            body == want,
            "the body differs from the expected import body"
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("credit-lr"), "credit-lr");
        assert_eq!(segment("1.0.0+build.7"), "1.0.0%2Bbuild.7");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
