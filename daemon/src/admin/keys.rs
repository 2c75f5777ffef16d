//! Admin handlers for API keys: create (the token is in this one response only), list
//! and revoke (effective on the key's next request).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use coffer_admin_api::keys::{CreateKey, CreatedKey, KeyView, Rate};
use http::StatusCode;

use super::{AdminFailure, AdminState};
use crate::access::keys::{KeyError, KeyRecord, NewKey, RateSpec, Scope};

/// A key as the admin API shows it: no hash, no secret.
fn view(r: &KeyRecord) -> KeyView {
    KeyView {
        name: r.name.clone(),
        id: r.id.clone(),
        scopes: r.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        rate: r.rate.map(|r| Rate {
            per_second: r.per_second,
            burst: r.burst,
        }),
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }
}

fn bad_request(message: String) -> AdminFailure {
    AdminFailure {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message,
    }
}

fn task_failed() -> AdminFailure {
    AdminFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal_error",
        message: "the operation did not complete; see the daemon's log".into(),
    }
}

fn failure(e: KeyError) -> AdminFailure {
    let (status, code) = match &e {
        KeyError::NameTaken(_) => (StatusCode::CONFLICT, "key_exists"),
        KeyError::NotFound(_) => (StatusCode::NOT_FOUND, "key_not_found"),
        KeyError::AlreadyRevoked(_) => (StatusCode::CONFLICT, "key_revoked"),
        KeyError::BadName(_) | KeyError::NoScopes => (StatusCode::BAD_REQUEST, "invalid_request"),
        KeyError::Storage(_) | KeyError::Corrupt { .. } => {
            tracing::error!(error = %e, "key store failure");
            (StatusCode::INTERNAL_SERVER_ERROR, "storage_error")
        }
    };
    AdminFailure {
        status,
        code,
        message: e.to_string(),
    }
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return bad_request(format!("bad key request: {}", e.body_text())).into_response();
        }
    };
    let scopes = match req
        .scopes
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<Scope>, _>>()
    {
        Ok(mut s) => {
            s.sort();
            s.dedup();
            s
        }
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    let rate = match req.rate.as_deref().map(str::parse::<RateSpec>).transpose() {
        Ok(r) => r.map(|r| r.with_burst(req.burst)),
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    if req.burst == Some(0) {
        return bad_request("burst must be at least 1".into()).into_response();
    }
    if req.burst.is_some() && rate.is_none() {
        return bad_request("burst needs a rate (--rate)".into()).into_response();
    }
    let new = NewKey {
        name: req.name,
        scopes,
        rate,
    };
    let keys = Arc::clone(&state.keys);
    match tokio::task::spawn_blocking(move || keys.create(new)).await {
        Ok(Ok((record, token))) => {
            tracing::info!(key_name = %record.name, key_id = %record.id, "admin: API key created");
            let created = CreatedKey {
                key: view(&record),
                token: token.expose().to_string(),
            };
            (StatusCode::CREATED, Json(created)).into_response()
        }
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => task_failed().into_response(),
    }
}

pub async fn list(State(state): State<Arc<AdminState>>) -> Response {
    match state.keys.list() {
        Ok(records) => Json(records.iter().map(view).collect::<Vec<_>>()).into_response(),
        Err(e) => failure(e).into_response(),
    }
}

pub async fn revoke(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let keys = Arc::clone(&state.keys);
    match tokio::task::spawn_blocking(move || keys.revoke(&name)).await {
        Ok(Ok(record)) => {
            state.limiter.forget(&record.id);
            tracing::info!(key_name = %record.name, key_id = %record.id, "admin: API key revoked");
            Json(view(&record)).into_response()
        }
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => task_failed().into_response(),
    }
}
