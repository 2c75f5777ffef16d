//! `GET /admin/health`: whether cofferd is ready (the map `/readyz` shows) and every
//! model version's scoring and chat requests by outcome since the daemon started, for
//! the fleet agent's health gate after an activation. Counts only grow; the agent takes
//! differences. Served versions that have answered nothing yet are listed at zero.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::AdminState;
use crate::metrics::OutcomeCounts;

/// One version's line in the report.
#[derive(Debug, Serialize)]
struct VersionHealth {
    model: String,
    version: String,
    #[serde(flatten)]
    counts: OutcomeCounts,
}

/// `GET /admin/health`: always 200; `ready` says whether cofferd is.
pub async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let mut counts: BTreeMap<(String, String), OutcomeCounts> =
        state.metrics.model_requests.snapshot();
    for (model, version, _) in state.models.served() {
        counts.entry((model, version)).or_default();
    }
    let models: Vec<VersionHealth> = counts
        .into_iter()
        .map(|((model, version), counts)| VersionHealth {
            model,
            version,
            counts,
        })
        .collect();
    Json(json!({
        "ready": state.readiness.is_ready(),
        "components": state.readiness.snapshot(),
        "models": models,
    }))
    .into_response()
}
