//! Admin handlers for the telemetry spool: the agent reads the oldest batch and
//! acknowledges it once its sink has accepted it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use coffer_admin_api::telemetry::{Ack, Acked};
use http::StatusCode;
use http::Uri;

use super::{AdminFailure, AdminState};
use crate::telemetry::{Spool, SpoolError};

/// Records per batch unless `?max=N` asks otherwise (1 to 10,000).
const DEFAULT_MAX: usize = 500;

fn batch_size(uri: &Uri) -> Result<usize, AdminFailure> {
    let Some(query) = uri.query() else {
        return Ok(DEFAULT_MAX);
    };
    let mut max = DEFAULT_MAX;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let parsed = pair
            .strip_prefix("max=")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=10_000).contains(n));
        max = parsed.ok_or_else(|| AdminFailure {
            status: StatusCode::BAD_REQUEST,
            code: "bad_query",
            message: format!("'{pair}': the only parameter is max, a number from 1 to 10000"),
        })?;
    }
    Ok(max)
}

fn spool(state: &AdminState) -> Result<&Arc<Spool>, AdminFailure> {
    state.spool.as_ref().ok_or_else(|| AdminFailure {
        status: StatusCode::CONFLICT,
        code: "telemetry_disabled",
        message: "telemetry is off (telemetry.enabled = false)".into(),
    })
}

fn failure(e: SpoolError) -> AdminFailure {
    match e {
        SpoolError::BadBatchId(_) => AdminFailure {
            status: StatusCode::BAD_REQUEST,
            code: "bad_batch_id",
            message: e.to_string(),
        },
        _ => {
            tracing::error!(error = %e, "telemetry spool failed");
            AdminFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "spool_failed",
                message: "the telemetry spool could not be read or written; see the daemon log"
                    .into(),
            }
        }
    }
}

/// A spool task that panicked or was cancelled.
fn unfinished(what: &str) -> AdminFailure {
    AdminFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "spool_failed",
        message: format!("{what} did not finish"),
    }
}

/// `GET /admin/telemetry?max=N`: the oldest records, not removed until acknowledged.
pub async fn batch(State(state): State<Arc<AdminState>>, uri: Uri) -> Response {
    let max = match batch_size(&uri) {
        Ok(n) => n,
        Err(f) => return f.into_response(),
    };
    let result = match spool(&state) {
        Ok(s) => {
            let s = Arc::clone(s);
            tokio::task::spawn_blocking(move || s.batch(max)).await
        }
        Err(f) => return f.into_response(),
    };
    match result {
        Ok(Ok(batch)) => Json(batch).into_response(),
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => unfinished("the batch read").into_response(),
    }
}

/// `POST /admin/telemetry/ack` with `{"batch_id": "FIRST-LAST"}`.
pub async fn ack(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<Ack>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let ack = match body {
        Ok(Json(ack)) => ack,
        Err(e) => {
            return AdminFailure {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                message: format!("bad acknowledgement: {}", e.body_text()),
            }
            .into_response();
        }
    };
    let spool = match spool(&state) {
        Ok(s) => Arc::clone(s),
        Err(f) => return f.into_response(),
    };
    match tokio::task::spawn_blocking(move || spool.ack(&ack.batch_id)).await {
        Ok(Ok(removed)) => Json(Acked { removed }).into_response(),
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => unfinished("the acknowledgement").into_response(),
    }
}
