//! `POST /admin/sync/events`: the fleet agent reports what its model sync could not do
//! (a failed poll, a transfer cut off as too slow, an impostor version it refused to
//! activate), so that it reaches the fleet through the telemetry spool as a lifecycle
//! event and stays in the audit log (the admin middleware records the call with the
//! agent's uid and role; this handler names the event and model version as its
//! target). Only fixed event codes and checked names are taken: no free text.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use coffer_admin_api::sync::{SyncEvent, SyncEventKind};
use coffer_privacy::telemetry::{EventKind, RecordBody};
use http::StatusCode;

use super::caller::AuditTarget;
use super::{AdminFailure, AdminState};

fn invalid(message: String) -> Response {
    AdminFailure {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message,
    }
    .into_response()
}

/// The telemetry event a sync report becomes.
fn event_kind(kind: SyncEventKind) -> EventKind {
    match kind {
        SyncEventKind::SyncFailure => EventKind::SyncFailure,
        SyncEventKind::SyncStalled => EventKind::SyncStalled,
        SyncEventKind::ImpostorVersion => EventKind::ImpostorVersion,
    }
}

/// A model or version name as releases spell them.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
}

pub async fn report(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<SyncEvent>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return invalid(format!("bad sync event: {}", e.body_text())),
    };
    let Some(event) = req.kind().map(event_kind) else {
        return invalid(format!(
            "unknown sync event {:?}: one of sync_failure, sync_stalled, impostor_version",
            req.event.chars().take(64).collect::<String>()
        ));
    };
    for name in [&req.model, &req.version].into_iter().flatten() {
        if !plain_name(name) {
            return invalid(
                "model and version names are limited to [A-Za-z0-9.+_-], 128 bytes".into(),
            );
        }
    }
    if let Some(spool) = &state.spool {
        if let Err(e) = spool.push(RecordBody::Event {
            event,
            model: req.model.clone(),
            version: req.version.clone(),
        }) {
            tracing::warn!(error = %e, "sync event not spooled");
        }
    }
    let target = match (&req.model, &req.version) {
        (Some(m), Some(v)) => format!("{} {m}@{v}", event.as_str()),
        (Some(m), None) => format!("{} {m}", event.as_str()),
        _ => event.as_str().to_string(),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditTarget(target));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sync_events_and_plain_names_are_taken() {
        let kind = |event: &str| {
            SyncEvent {
                event: event.into(),
                model: None,
                version: None,
            }
            .kind()
            .map(event_kind)
        };
        assert_eq!(kind("sync_stalled"), Some(EventKind::SyncStalled));
        assert_eq!(kind("impostor_version"), Some(EventKind::ImpostorVersion));
        assert_eq!(kind("activation"), None);
        assert_eq!(kind("Sync_Failure"), None);
        assert!(plain_name("credit-lr") && plain_name("2.0.0+build.1"));
        assert!(!plain_name("a b") && !plain_name("") && !plain_name(&"x".repeat(129)));
    }
}
