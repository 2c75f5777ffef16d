//! Admin handlers for the model lifecycle (`cofferctl models ...`): list and show,
//! import (the version's files streamed in the request body), verify (with progress as
//! NDJSON when asked), activate, rollback, pin, unpin, remove, gc and history.
//!
//! The import body is `u64 big-endian manifest length`, the manifest text, then each
//! file the manifest lists, in its order, exactly its declared size
//! (`coffer_admin_api::AdminClient::import` writes it).

use std::io::Read;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::{Buf as _, Bytes, BytesMut};
use coffer_admin_api::ErrorDetail;
use coffer_admin_api::models::{
    ActivateOptions, GcReport, History, ModelDetail, ModelEntry, ModelList, PinRequest, Pinned,
    Unpinned, Verified, VerifyLine, VerifyProgress, VersionDetail,
};
use coffer_admin_api::reports::{DriftAnswer, ShadowRequest};
use futures_util::StreamExt as _;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::caller::Peer;
use super::{AdminFailure, AdminState};
use crate::lifecycle::ManageError;
use crate::lifecycle::registry::RegistryError;
use coffer_models::store::StoreError;

/// The longest manifest accepted in an import body.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

fn actor(peer: &Peer) -> String {
    format!("uid {}", peer.uid)
}

fn failure(e: &ManageError) -> AdminFailure {
    use StatusCode as S;
    let (status, code) = match e {
        ManageError::Registry(r) => match r {
            RegistryError::NotFound(_) => (S::NOT_FOUND, "model_not_found"),
            RegistryError::Exists(_) => (S::CONFLICT, "version_exists"),
            RegistryError::WrongState { .. } => (S::CONFLICT, "wrong_state"),
            RegistryError::Pinned { .. } => (S::CONFLICT, "model_pinned"),
            RegistryError::NoPrevious { .. } => (S::CONFLICT, "no_previous_version"),
            RegistryError::SchemaTooNew { .. }
            | RegistryError::Storage(_)
            | RegistryError::Corrupt { .. } => (S::INTERNAL_SERVER_ERROR, "storage_error"),
        },
        ManageError::Store(s) => match s {
            StoreError::Manifest(_) => (S::BAD_REQUEST, "invalid_manifest"),
            StoreError::Short { .. }
            | StoreError::Long { .. }
            | StoreError::Hash { .. }
            | StoreError::Source { .. } => (S::BAD_REQUEST, "invalid_files"),
            StoreError::AlreadyInstalled { .. } => (S::CONFLICT, "version_exists"),
            StoreError::NotInstalled { .. } => (S::NOT_FOUND, "model_not_found"),
            StoreError::BadName { .. } => (S::BAD_REQUEST, "invalid_request"),
            StoreError::DiskFull { .. } => (S::INSUFFICIENT_STORAGE, "disk_full"),
            StoreError::Verify(_)
            | StoreError::NotLinked { .. }
            | StoreError::WrongPlace { .. } => (S::CONFLICT, "verification_failed"),
            _ => (S::INTERNAL_SERVER_ERROR, "store_error"),
        },
        ManageError::GateFailed { .. } => (S::UNPROCESSABLE_ENTITY, "gate_failed"),
        ManageError::SchemaChange { .. } => (S::CONFLICT, "schema_change"),
        ManageError::NoVariant(_) => (S::CONFLICT, "no_variant"),
        ManageError::Load { .. } => (S::INTERNAL_SERVER_ERROR, "load_failed"),
        ManageError::Worker(_) => (S::INTERNAL_SERVER_ERROR, "internal_error"),
        ManageError::Shadow(_) => (S::CONFLICT, "shadow_refused"),
        ManageError::NoShadow(_) => (S::NOT_FOUND, "no_shadow"),
        ManageError::BadRequest(_) => (S::BAD_REQUEST, "invalid_request"),
        ManageError::Decided(_) => (S::CONFLICT, "version_has_decisions"),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "model lifecycle operation failed");
    }
    AdminFailure {
        status,
        code,
        message: e.to_string(),
    }
}

fn answer<T: serde::Serialize>(result: Result<T, ManageError>, ok: StatusCode) -> Response {
    match result {
        Ok(v) => (ok, Json(v)).into_response(),
        Err(e) => failure(&e).into_response(),
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    AdminFailure {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message: message.into(),
    }
    .into_response()
}

/// `GET /admin/models`: every installed version, the active pointers and pins.
pub async fn list(State(state): State<Arc<AdminState>>) -> Response {
    let registry = state.models.registry();
    let result = (|| -> Result<ModelList, ManageError> {
        let versions = registry.list()?;
        let mut names: Vec<String> = versions.iter().map(|r| r.name.clone()).collect();
        names.dedup();
        let mut models = Vec::new();
        for name in names {
            models.push(ModelEntry {
                active: registry.active(&name)?,
                pinned: registry.pinned(&name)?,
                versions: versions
                    .iter()
                    .filter(|r| r.name == name)
                    .cloned()
                    .collect(),
                name,
            });
        }
        Ok(ModelList { models })
    })();
    answer(result, StatusCode::OK)
}

/// `GET /admin/models/{name}`: its versions, pointers and history.
pub async fn show_model(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Response {
    let registry = state.models.registry();
    let result = (|| -> Result<ModelDetail, ManageError> {
        let versions: Vec<_> = registry
            .list()?
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::NotFound(name.clone()).into());
        }
        Ok(ModelDetail {
            model: ModelEntry {
                active: registry.active(&name)?,
                pinned: registry.pinned(&name)?,
                versions,
                name: name.clone(),
            },
            history: registry.history(Some(&name), 50)?,
        })
    })();
    answer(result, StatusCode::OK)
}

/// `GET /admin/models/{name}/versions/{version}`: the record, manifest and history.
pub async fn show_version(
    State(state): State<Arc<AdminState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let models = &state.models;
    let result = (|| -> Result<VersionDetail, ManageError> {
        let record = models
            .registry()
            .get(&name, &version)?
            .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version}")))?;
        let manifest = models.manifest(&name, &version).ok();
        let history: Vec<_> = models
            .history(Some(&name), 200)?
            .into_iter()
            .filter(|h| h.version.as_deref() == Some(version.as_str()))
            .collect();
        Ok(VersionDetail {
            record,
            manifest,
            history,
        })
    })();
    answer(result, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    name: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// `GET /admin/models-history?name=&limit=`.
pub async fn history(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    answer(
        state
            .models
            .history(q.name.as_deref(), q.limit.clamp(1, 10_000))
            .map(|history| History { history }),
        StatusCode::OK,
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    allow_schema_change: bool,
}

/// A blocking reader over body chunks forwarded by an async task.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// `POST /admin/models?allow_schema_change=`: imports the streamed version, then runs
/// its gate. 201 with the record (`ready`, or `failed` with the gate's reason).
pub async fn import(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Response {
    let mut stream = body.into_data_stream();
    let mut head = BytesMut::new();
    let mut manifest_len: Option<u64> = None;
    loop {
        if manifest_len.is_none() && head.len() >= 8 {
            let len = head.get_u64();
            if len == 0 || len > MAX_MANIFEST_BYTES {
                return bad_request(format!(
                    "the import body must start with the manifest's length (1 to {MAX_MANIFEST_BYTES} bytes), got {len}"
                ));
            }
            manifest_len = Some(len);
        }
        if let Some(len) = manifest_len {
            if head.len() as u64 >= len {
                break;
            }
        }
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return bad_request(format!("the import body broke off: {e}")),
            None => return bad_request("the import body ended inside its manifest"),
        }
    }
    let len = manifest_len.unwrap_or(0) as usize;
    let rest = head.split_off(len).freeze();
    let Ok(manifest_text) = String::from_utf8(head.to_vec()) else {
        return bad_request("the manifest is not UTF-8");
    };
    // For the audit trail: the id the manifest claims (checked by the import itself).
    let target = coffer_models::Manifest::parse(&manifest_text)
        .map(|m| m.id())
        .unwrap_or_else(|_| "unparsable manifest".into());
    let (tx, rx) = mpsc::channel(16);
    // Forwards the body to the import; once the import stops reading (a refusal), the
    // rest is read and dropped, so that the client gets to read the answer (HTTP/1.1
    // clients write the whole body before they look at the response).
    let forward = tokio::spawn(async move {
        let mut open = rest.is_empty() || tx.send(Ok(rest)).await.is_ok();
        while let Some(chunk) = stream.next().await {
            if !open {
                continue;
            }
            let item = chunk.map_err(std::io::Error::other);
            let broken = item.is_err();
            open = tx.send(item).await.is_ok() && !broken;
            if broken {
                return;
            }
        }
    });
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let result = state
        .models
        .import(
            manifest_text,
            Box::new(reader),
            Box::new(|_| {}),
            &actor(&peer),
            q.allow_schema_change,
        )
        .await;
    let _ = forward.await;
    let mut response = answer(result, StatusCode::CREATED);
    response
        .extensions_mut()
        .insert(super::caller::AuditTarget(target));
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    progress: bool,
}

/// `POST /admin/models/{name}/versions/{version}/verify[?progress=true]`. With
/// `progress`, the answer is NDJSON: `{"progress": {...}}` lines, then one
/// `{"result": ...}` or `{"error": ...}` line. The status (200) is sent before the
/// outcome is known, so the outcome gets an audit record of its own
/// (`models.verify.result`, with the status the call without progress would answer).
pub async fn verify(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path((name, version)): Path<(String, String)>,
    Query(q): Query<VerifyQuery>,
) -> Response {
    let models = Arc::clone(&state.models);
    if !q.progress {
        let result = models
            .verify(&name, &version, Box::new(|_| {}), &actor(&peer))
            .await;
        return answer(
            result.map(|record| Verified { ok: true, record }),
            StatusCode::OK,
        );
    }
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let progress_tx = tx.clone();
    let who = actor(&peer);
    let audit = state.audit.clone();
    let (uid, role) = (peer.uid, peer.role.map(|r| r.as_str().to_string()));
    tokio::spawn(async move {
        let progress = Box::new(move |p: coffer_models::store::Progress<'_>| {
            let _ = progress_tx.send(ndjson(&VerifyLine::Progress(VerifyProgress {
                file: p.file.to_string(),
                done: p.done,
                total: p.total,
            })));
        });
        let (line, status) = match models.verify(&name, &version, progress, &who).await {
            Ok(record) => (
                VerifyLine::Result(Verified { ok: true, record }),
                StatusCode::OK,
            ),
            Err(e) => {
                let f = failure(&e);
                (
                    VerifyLine::Error(ErrorDetail {
                        code: f.code.into(),
                        message: f.message,
                    }),
                    f.status,
                )
            }
        };
        let _ = tx.send(ndjson(&line));
        if let Some(audit) = audit {
            audit
                .record(crate::audit::AuditEvent::Admin {
                    uid,
                    role,
                    action: "models.verify.result".into(),
                    target: format!("{name}@{version}"),
                    status: status.as_u16(),
                })
                .await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(Bytes::from(line)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// One NDJSON line.
fn ndjson(line: &VerifyLine) -> String {
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    text
}

/// `POST /admin/models/{name}/versions/{version}/activate`.
pub async fn activate(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    // The body is optional: none (or empty) means no options.
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        ActivateOptions::default()
    } else {
        match serde_json::from_slice::<ActivateOptions>(&body) {
            Ok(b) => b,
            Err(e) => return bad_request(format!("bad activation options: {e}")),
        }
    };
    answer(
        state
            .models
            .activate(
                &name,
                &version,
                &actor(&peer),
                options.allow_schema_change,
                options.require_shadow,
            )
            .await,
        StatusCode::OK,
    )
}

/// `POST /admin/models/{name}/rollback`.
pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
) -> Response {
    answer(
        state.models.rollback(&name, &actor(&peer)).await,
        StatusCode::OK,
    )
}

/// `PUT /admin/models/{name}/pin` with `{"version": ...}`.
pub async fn pin(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    body: Result<Json<PinRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return bad_request("the body must be {\"version\": \"...\"}");
    };
    answer(
        state
            .models
            .pin(&name, &body.version, &actor(&peer))
            .await
            .map(|()| Pinned {
                name: name.clone(),
                pinned: body.version.clone(),
            }),
        StatusCode::OK,
    )
}

/// `DELETE /admin/models/{name}/pin`.
pub async fn unpin(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
) -> Response {
    answer(
        state
            .models
            .unpin(&name, &actor(&peer))
            .await
            .map(|unpinned| Unpinned {
                name: name.clone(),
                unpinned,
            }),
        StatusCode::OK,
    )
}

/// `DELETE /admin/models/{name}/versions/{version}`.
pub async fn remove(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    answer(
        state.models.remove(&name, &version, &actor(&peer)).await,
        StatusCode::OK,
    )
}

/// `POST /admin/model-store/gc`.
pub async fn gc(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
) -> Response {
    answer(
        state.models.gc(&actor(&peer)).await.map(|r| GcReport {
            blobs_removed: r.blobs_removed,
            bytes_freed: r.bytes_freed,
            staging_removed: r.staging_removed,
        }),
        StatusCode::OK,
    )
}

/// `GET /admin/models/{name}/drift`: PSI of the score and every feature, per window,
/// for each served version of the model.
pub async fn drift(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let served = state.models.scoring.load();
    let Some(versions) = served.get(&name) else {
        return failure(&ManageError::Registry(RegistryError::NotFound(format!(
            "{name} (no scoring version of it is served)"
        ))))
        .into_response();
    };
    let reports: Vec<_> = versions
        .versions
        .values()
        .filter_map(|m| m.drift.as_ref().map(|d| d.report()))
        .collect();
    if reports.is_empty() {
        return AdminFailure {
            status: StatusCode::NOT_FOUND,
            code: "no_drift_reference",
            message: format!("{name}'s manifest has no [drift] reference distributions"),
        }
        .into_response();
    }
    Json(DriftAnswer {
        model: name,
        versions: reports,
    })
    .into_response()
}

/// `PUT /admin/models/{name}/shadow` with `{"version", "fraction"}`.
pub async fn shadow_start(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    body: Result<Json<ShadowRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return bad_request("the body must be {\"version\": \"...\", \"fraction\": 0.1}");
    };
    answer(
        state
            .models
            .start_shadow(&name, &body.version, body.fraction, &actor(&peer))
            .await,
        StatusCode::OK,
    )
}

/// `GET /admin/models/{name}/shadow`: the running comparison.
pub async fn shadow_report(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Response {
    answer(state.models.shadow_report(&name), StatusCode::OK)
}

/// `DELETE /admin/models/{name}/shadow`: stops it; answers the final report.
pub async fn shadow_stop(
    State(state): State<Arc<AdminState>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
) -> Response {
    answer(
        state.models.stop_shadow(&name, &actor(&peer)).await,
        StatusCode::OK,
    )
}
