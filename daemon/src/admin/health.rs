//! `GET /admin/health`: whether cofferd is ready (the map `/readyz` shows) and every
//! model version's scoring and chat requests by outcome since the daemon started, for
//! the fleet agent's health gate after an activation. Counts only grow; the agent takes
//! differences. Served versions that have answered nothing yet are listed at zero.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use coffer_admin_api::health::{HealthReport, OutcomeCounts, VersionHealth};

use super::AdminState;

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
    Json(HealthReport {
        ready: state.readiness.is_ready(),
        components: state
            .readiness
            .snapshot()
            .into_iter()
            .map(|(name, c)| (name.to_string(), c))
            .collect(),
        models,
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        gpu: Some(state.gpu.summary().to_string()),
    })
    .into_response()
}
