//! The outermost layer: gives each request an id (returned in `x-request-id`), a
//! tracing span, the per-request deadline, panic containment, and its metrics and one
//! log line. It never logs bodies, headers or keys: only method, route, status,
//! latency and the key's public id.
//!
//! The request's [`RequestContext`] is made here and read back once the handler
//! returns: a request the serving layer resolved to a model version is counted under
//! that version by its final status, so a deadline or a panic counts too; a chat stream
//! counts itself when it ends.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use http::HeaderValue;
use tracing::Instrument as _;

use super::AppState;
use super::error::{ApiError, ErrorKind, Family};
use crate::audit::AuditEvent;
use crate::metrics::{Outcome, Rejection, RouteLabel, RouteStatus};
use crate::serving::RequestContext;

/// The header that carries the request id back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
    let ctx = RequestContext::new();
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
        tracing::info_span!("request", request_id = %ctx.id(), method = method_label(req.method()), route = %route)
    } else {
        tracing::debug_span!("request", request_id = %ctx.id(), method = method_label(req.method()), route = %route)
    };
    req.extensions_mut().insert(ctx.clone());

    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let outcome = tokio::time::timeout(state.limits.request_timeout, run)
        .instrument(span.clone())
        .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(_panic)) => {
            span.in_scope(
                || tracing::error!(request_id = %ctx.id(), route = %route, "handler panicked"),
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
    if let Some(counters) = ctx.version() {
        if !ctx.outcome_deferred() {
            counters.record(Outcome::of(status));
        }
    }
    state
        .serving
        .telemetry
        .observe_request(&route, status, elapsed);
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
    let key_id = ctx.key_id();
    let latency_us = elapsed.as_micros() as u64;
    // A request without a valid key is counted, not recorded: anonymous traffic must
    // not fill the log and push admin records out through retention.
    if let (Some(audit), None) = (&state.audit, &key_id) {
        audit.count_unauthenticated();
    } else if let Some(audit) = &state.audit {
        use http_body::Body as _;
        audit
            .record(AuditEvent::Request {
                request_id: ctx.id().to_string(),
                key_id: key_id.map(str::to_string),
                route: route.clone(),
                model: ctx.answered_by().map(str::to_string),
                status,
                request_bytes,
                response_bytes: response.body().size_hint().exact().unwrap_or(0),
                latency_us,
                decision_sha256: ctx.decision().map(str::to_string),
            })
            .await;
    }
    let key_id = key_id.unwrap_or("-");
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(request_id = %ctx.id(), status, latency_us, key_id, "request failed");
        } else if state.limits.access_log {
            tracing::info!(status, latency_us, key_id, "request finished");
        } else {
            tracing::debug!(status, latency_us, key_id, "request finished");
        }
    });
    if let Ok(v) = HeaderValue::from_str(ctx.id()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
