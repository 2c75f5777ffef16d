//! The foundation's own handlers: liveness, readiness, metrics, the OpenAI model list,
//! the Open Inference Protocol's server metadata, and the 404/405 fallbacks in each
//! route family's error shape. Scoring routes are in `oip`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorKind, Family};

pub async fn healthz() -> Response {
    Json(json!({ "status": "live" })).into_response()
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let (ready, components) = readiness(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "ready": ready, "components": components });
    (status, Json(body)).into_response()
}

/// The readiness map, with `engines`: not ready while a served version's engine keeps
/// panicking (`engine_faults`).
pub fn readiness(state: &AppState) -> (bool, serde_json::Value) {
    let mut components = state.readiness.snapshot();
    let failing = failing_engines(state);
    let engines_ready = failing.is_empty();
    let detail = if engines_ready {
        "no engine failing".to_string()
    } else {
        format!(
            "failing (panicked {} times within {} s): {}",
            crate::engine_faults::FAILING_AFTER,
            crate::engine_faults::WINDOW.as_secs(),
            failing.join(", ")
        )
    };
    components.insert(
        "engines",
        crate::monitoring::readiness::ComponentState {
            ready: engines_ready,
            detail,
        },
    );
    let ready = components.values().all(|c| c.ready);
    (ready, json!(components))
}

/// `name@version` of every served version whose engine is failing.
fn failing_engines(state: &AppState) -> Vec<String> {
    let mut out = Vec::new();
    failing_in(&state.serving.scoring.load(), &mut out);
    failing_in(&state.serving.chat.load(), &mut out);
    out
}

fn failing_in<T: crate::served::Versioned>(
    served: &crate::served::Served<T>,
    out: &mut Vec<String>,
) {
    for (name, versions) in served.iter() {
        for (version, loaded) in &versions.versions {
            if loaded.faults().failing() {
                out.push(format!("{name}@{version}"));
            }
        }
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Open Inference Protocol server metadata; constant, so serialised once.
pub async fn server_metadata() -> Response {
    static BODY: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| {
        let value = json!({
            "name": "cofferd",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": []
        });
        bytes::Bytes::from(value.to_string())
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

pub async fn not_found(req: Request) -> Response {
    let family = Family::for_path(req.uri().path());
    ApiError::new(
        ErrorKind::NotFound,
        format!("no route for {}", req.uri().path()),
        family,
    )
    .into_response()
}

pub async fn method_not_allowed(req: Request) -> Response {
    let family = Family::for_path(req.uri().path());
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
        family,
    )
    .into_response()
}
