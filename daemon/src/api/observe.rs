//! The outermost layer: gives each request an id (returned in `x-request-id`), a
//! tracing span, the per-request deadline, panic containment, and its metrics and one
//! log line. It never logs bodies, headers or keys: only method, route, status,
//! latency and the key's public id.
//!
//! A request a handler resolved to a model version ([`resolve_model`]) is counted here
//! under that version by its final status, so a deadline or a panic counts too; a chat
//! stream counts itself when it ends ([`OutcomeDeferred`]). The version travels in a
//! task-local slot, not a request extension: nothing is allocated per request for it.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use http::HeaderValue;
use rand::RngCore as _;
use tracing::Instrument as _;

use super::AppState;
use super::error::{ApiError, ErrorKind, Family};
use super::guard::KeyId;
use crate::audit::AuditEvent;
use crate::metrics::{Outcome, Rejection, RouteLabel, RouteStatus, VersionRequests};

/// The model version that answered a request (`name@version`), for the audit record.
#[derive(Debug, Clone)]
pub struct ServedModel(pub String);

tokio::task_local! {
    /// The model version the request served by this task is for (see [`resolve_model`]).
    static MODEL_OUTCOME: RefCell<Option<VersionRequests>>;
}

/// Marks the request being handled as one for the version these counters belong to
/// (first call wins); `observe` counts it under them by the final status. Outside a
/// request (a test calling a handler directly) it does nothing.
pub fn resolve_model(counters: &VersionRequests) {
    let _ = MODEL_OUTCOME.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(counters.clone());
        }
    });
}

/// On a response whose body counts its own outcome (a chat stream, at its end).
#[derive(Debug, Clone, Copy)]
pub struct OutcomeDeferred;

/// The header that carries the request id back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's id: 16 random hex digits.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    fn generate() -> Self {
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        RequestId(crate::hex_text::lower_hex(&bytes))
    }
}

/// A request's method as the log may show it: a standard method's name, else `other`
/// (an extension method is any token a client chose).
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

pub async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::generate();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let family = Family::for_path(req.uri().path());
    let request_bytes = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // The span costs a few per cent of throughput at info level: it is at info only when
    // access logging is on. 5xx lines carry the request id themselves.
    let span = if state.limits.access_log {
        tracing::info_span!("request", request_id = %id.0, method = method_label(req.method()), route = %route)
    } else {
        tracing::debug_span!("request", request_id = %id.0, method = method_label(req.method()), route = %route)
    };
    req.extensions_mut().insert(id.clone());

    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let (outcome, model_outcome) = MODEL_OUTCOME
        .scope(RefCell::new(None), async {
            let outcome = tokio::time::timeout(state.limits.request_timeout, run).await;
            (outcome, MODEL_OUTCOME.with(|slot| slot.borrow_mut().take()))
        })
        .instrument(span.clone())
        .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(_panic)) => {
            span.in_scope(
                || tracing::error!(request_id = %id.0, route = %route, "handler panicked"),
            );
            ApiError::new(ErrorKind::Internal, "", family).into_response()
        }
        Err(_elapsed) => {
            state.metrics.reject(Rejection::Deadline);
            ApiError::new(
                ErrorKind::Deadline,
                format!(
                    "the request did not finish within the server's deadline of {}",
                    humantime::format_duration(state.limits.request_timeout)
                ),
                family,
            )
            .into_response()
        }
    };

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(counters) = &model_outcome {
        if response.extensions().get::<OutcomeDeferred>().is_none() {
            counters.record(Outcome::of(status));
        }
    }
    state.telemetry.observe_request(&route, status, elapsed);
    state
        .metrics
        .requests
        .get_or_create(&RouteStatus {
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    let key_id = response.extensions().get::<KeyId>().map(|k| k.0.clone());
    let latency_us = elapsed.as_micros() as u64;
    // A request without a valid key is counted, not recorded: anonymous traffic must
    // not fill the log and push admin records out through retention.
    if let (Some(audit), None) = (&state.audit, &key_id) {
        audit.count_unauthenticated();
    } else if let Some(audit) = &state.audit {
        use http_body::Body as _;
        audit
            .record(AuditEvent::Request {
                request_id: id.0.clone(),
                key_id: key_id.clone(),
                route: route.clone(),
                model: response
                    .extensions()
                    .get::<ServedModel>()
                    .map(|m| m.0.clone()),
                status,
                request_bytes,
                response_bytes: response.body().size_hint().exact().unwrap_or(0),
                latency_us,
            })
            .await;
    }
    let key_id = key_id.as_deref().unwrap_or("-");
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(request_id = %id.0, status, latency_us, key_id, "request failed");
        } else if state.limits.access_log {
            tracing::info!(status, latency_us, key_id, "request finished");
        } else {
            tracing::debug!(status, latency_us, key_id, "request finished");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
