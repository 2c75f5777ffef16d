//! Admin handlers for API keys: create (the token is in this one response only), list
//! and revoke (effective on the key's next request).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AdminFailure, AdminState};
use crate::keys::{KeyError, KeyRecord, NewKey, RateSpec, Scope};

/// The body of `POST /admin/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A key as the admin API shows it: no hash, no secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyView {
    pub name: String,
    pub id: String,
    pub scopes: Vec<Scope>,
    pub rate: Option<RateSpec>,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        Self {
            name: r.name.clone(),
            id: r.id.clone(),
            scopes: r.scopes.clone(),
            rate: r.rate,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
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
            let mut view = serde_json::to_value(KeyView::from(&record)).unwrap_or_default();
            view["token"] = serde_json::Value::String(token.expose().to_string());
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => task_failed().into_response(),
    }
}

pub async fn list(State(state): State<Arc<AdminState>>) -> Response {
    match state.keys.list() {
        Ok(records) => Json(records.iter().map(KeyView::from).collect::<Vec<_>>()).into_response(),
        Err(e) => failure(e).into_response(),
    }
}

pub async fn revoke(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Response {
    let keys = Arc::clone(&state.keys);
    match tokio::task::spawn_blocking(move || keys.revoke(&name)).await {
        Ok(Ok(record)) => {
            state.limiter.forget(&record.id);
            tracing::info!(key_name = %record.name, key_id = %record.id, "admin: API key revoked");
            Json(KeyView::from(&record)).into_response()
        }
        Ok(Err(e)) => failure(e).into_response(),
        Err(_) => task_failed().into_response(),
    }
}
