//! The decision store through the admin socket (`cofferctl decisions`): show one by
//! request id, list by model and time, replay with the recorded version (outputs must be
//! the recorded ones bit for bit), export (redacted: attribute values and inputs
//! withheld) and key rotation. Admin role only; the server's audit layer records every
//! one of these calls, reads included.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use coffer_admin_api::decisions::{
    DecisionDetail, DecisionList, DecisionRecords, KeyRotated, ReplayReport, ReplayRequest,
};
use http::StatusCode;
use serde::Deserialize;

use super::{AdminFailure, AdminState};
use crate::decisions::{DecisionRecord, Header, KeyError, RecordedTensor, StoreError};

/// Most decisions one list, export or replay call covers.
const MAX_LIMIT: usize = 10_000;

fn failure(e: &StoreError) -> AdminFailure {
    let (status, code) = match e {
        StoreError::Altered(_) | StoreError::Key(KeyError::Open) => {
            (StatusCode::CONFLICT, "decision_altered")
        }
        StoreError::Key(KeyError::Unknown(_)) => (StatusCode::CONFLICT, "decision_key_missing"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "decision_store_error"),
    };
    tracing::error!(error = %e, "decision store");
    AdminFailure {
        status,
        code,
        message: e.to_string(),
    }
}

fn detail((h, rec): (Header, DecisionRecord), redacted: bool) -> DecisionDetail {
    let mut rec = rec;
    if redacted {
        if let Some(attrs) = &mut rec.attributes {
            for v in attrs.values_mut() {
                *v = serde_json::Value::String("[REDACTED]".into());
            }
        }
    }
    let mut record = serde_json::to_value(&rec).unwrap_or_default();
    if redacted {
        if let Some(inputs) = record
            .get_mut("inputs")
            .and_then(serde_json::Value::as_array_mut)
        {
            for t in inputs {
                t["data"] = serde_json::Value::String("[REDACTED]".into());
            }
        }
    }
    DecisionDetail { summary: h, record }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: e.to_string(),
        })?
        .map_err(|e| failure(&e))
}

/// `GET /admin/decisions/{request_id}`.
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Path(request_id): Path<String>,
) -> Response {
    let store = Arc::clone(&state.decisions);
    let id = request_id.clone();
    match blocking(move || store.get(&id)).await {
        Ok(found) if found.is_empty() => AdminFailure {
            status: StatusCode::NOT_FOUND,
            code: "decision_not_found",
            message: format!(
                "no decision is recorded under request id {request_id:?} (or it has expired)"
            ),
        }
        .into_response(),
        Ok(found) => Json(DecisionRecords {
            redacted: false,
            decisions: found.into_iter().map(|d| detail(d, false)).collect(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    since_ms: u64,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    redacted: bool,
}

fn default_limit() -> usize {
    1000
}

/// `GET /admin/decisions?model=M&since_ms=T&limit=N`.
pub async fn list(State(state): State<Arc<AdminState>>, Query(q): Query<RangeQuery>) -> Response {
    let store = Arc::clone(&state.decisions);
    let limit = q.limit.min(MAX_LIMIT);
    match blocking(move || store.list(q.model.as_deref(), q.since_ms, limit)).await {
        Ok(headers) => Json(DecisionList { decisions: headers }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /admin/decisions-export?...&redacted=true`.
pub async fn export(State(state): State<Arc<AdminState>>, Query(q): Query<RangeQuery>) -> Response {
    let store = Arc::clone(&state.decisions);
    let limit = q.limit.min(MAX_LIMIT);
    let redacted = q.redacted;
    match blocking(move || store.open_range(q.model.as_deref(), q.since_ms, limit)).await {
        Ok(found) => Json(DecisionRecords {
            redacted,
            decisions: found.into_iter().map(|d| detail(d, redacted)).collect(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/decision-keys`.
pub async fn rotate_key(State(state): State<Arc<AdminState>>) -> Response {
    let store = Arc::clone(&state.decisions);
    match blocking(move || {
        let key_id = store.rotate_key()?;
        Ok((key_id, store.key_ids()))
    })
    .await
    {
        Ok((key_id, keys)) => Json(KeyRotated { key_id, keys }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/decisions-replay`: re-scores each recorded decision with the version
/// that made it (the served instance, or loaded from the model store for the replay)
/// and compares every output bit for bit.
pub async fn replay(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<ReplayRequest>,
) -> Response {
    let store = Arc::clone(&state.decisions);
    let limit = request.limit.min(MAX_LIMIT);
    let model = request.model.clone();
    let found =
        match blocking(move || store.open_range(model.as_deref(), request.since_ms, limit)).await {
            Ok(f) => f,
            Err(e) => return e.into_response(),
        };
    let models = Arc::clone(&state.models);
    let report = tokio::task::spawn_blocking(move || replay_blocking(&models, found)).await;
    match report {
        Ok(r) => Json(r).into_response(),
        Err(e) => AdminFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: e.to_string(),
        }
        .into_response(),
    }
}

fn engine_for(
    models: &crate::lifecycle::ModelManager,
    name: &str,
    version: &str,
) -> Option<Arc<dyn coffer_score::ScoreEngine>> {
    if let Some(loaded) = models
        .scoring
        .load()
        .get(name)
        .and_then(|m| m.versions.get(version).cloned())
    {
        return Some(Arc::clone(&loaded.engine));
    }
    let dir =
        coffer_models::VersionDir::open(&models.store().version_dir(name, version).ok()?).ok()?;
    coffer_score::load_engine(&dir).ok()
}

fn replay_blocking(
    models: &crate::lifecycle::ModelManager,
    found: Vec<(Header, DecisionRecord)>,
) -> ReplayReport {
    let mut engines: BTreeMap<(String, String), Option<Arc<dyn coffer_score::ScoreEngine>>> =
        BTreeMap::new();
    let mut report = ReplayReport {
        replayed: 0,
        identical: 0,
        differing: Vec::new(),
        unavailable: Vec::new(),
    };
    for (_, rec) in found {
        let engine = engines
            .entry((rec.model.clone(), rec.version.clone()))
            .or_insert_with(|| engine_for(models, &rec.model, &rec.version))
            .clone();
        let inputs: Option<Vec<crate::tensor::Tensor>> =
            rec.inputs.iter().map(RecordedTensor::tensor).collect();
        let (Some(engine), Some(inputs)) = (engine, inputs) else {
            report.unavailable.push(rec.request_id);
            continue;
        };
        report.replayed += 1;
        let rows = inputs.first().map_or(0, crate::tensor::Tensor::rows);
        let same = match engine.run(inputs, rows) {
            Ok(outputs) => rec.outputs.iter().all(|want| {
                outputs
                    .iter()
                    .find(|o| o.name == want.name)
                    .is_some_and(|o| RecordedTensor::of(o) == *want)
            }),
            Err(_) => false,
        };
        if same {
            report.identical += 1;
        } else {
            report.differing.push(rec.request_id);
        }
    }
    report
}
