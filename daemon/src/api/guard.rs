//! The guard in front of every authenticated route: bearer key (401), scope (403),
//! declared body size (413), per-key rate (429) and global admission (503), in that
//! order, so that a refused request costs as little as possible.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;

use super::AppState;
use super::body::too_large;
use super::error::{ApiError, ErrorKind, Family};
use crate::access::admission::AdmissionError;
use crate::access::keys::Scope;
use crate::metrics::Rejection;
use crate::serving::RequestContext;

/// The guard's configuration for one route group.
#[derive(Debug, Clone)]
pub struct Guard {
    pub state: Arc<AppState>,
    pub scope: Option<Scope>,
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let family = Family::for_path(req.uri().path());
    let state = &g.state;
    let reject = |reason: Rejection, error: ApiError| {
        state.metrics.reject(reason);
        error.into_response()
    };
    let Some(key) = bearer(&req).and_then(|t| state.keys.authenticate(t)) else {
        return reject(
            Rejection::Unauthenticated,
            ApiError::new(
                ErrorKind::Unauthenticated,
                "missing, unknown or revoked API key: send 'Authorization: Bearer <key>'",
                family,
            ),
        );
    };
    RequestContext::of(&req).set_key_id(&key.id);
    if let Some(scope) = g.scope {
        if !key.allows(scope) {
            return reject(
                Rejection::Forbidden,
                ApiError::new(
                    ErrorKind::Forbidden,
                    format!("this API key lacks the '{scope}' scope this route needs"),
                    family,
                ),
            );
        }
    }
    if declared_length(&req).is_some_and(|n| n > state.limits.max_body_bytes) {
        return reject(
            Rejection::TooLarge,
            too_large(state.limits.max_body_bytes, family),
        );
    }
    let rate = key.rate.or(state.limits.default_key_rate);
    if let Err(wait) = state.limiter.check(&key.id, rate) {
        return reject(
            Rejection::RateLimited,
            ApiError::new(
                ErrorKind::RateLimited { retry_after: wait },
                "this API key's request rate is exceeded; retry after the time in Retry-After",
                family,
            ),
        );
    }
    let admitted = match state.admission.admit(&key.id).await {
        Ok(a) => a,
        Err(e) => {
            let message = match e {
                AdmissionError::QueueFull => {
                    "the server is at capacity; retry after the time in Retry-After"
                }
                AdmissionError::QueueTimeout => {
                    "the server stayed at capacity while this request waited; retry later"
                }
            };
            return reject(
                Rejection::Overloaded,
                ApiError::new(
                    ErrorKind::Overloaded {
                        retry_after: state.limits.retry_after,
                    },
                    message,
                    family,
                ),
            );
        }
    };
    let response = next.run(req).await;
    // A response whose body is all there (its size is known) frees the slot now: a client
    // that reads it slowly, or never, holds its connection, not the server's capacity. A
    // stream holds the slot until it ends, or until it stalls on its client (`stall`).
    if http_body::Body::size_hint(response.body())
        .exact()
        .is_some()
    {
        drop(admitted);
        return response;
    }
    let stall = state.limits.stream_stall_timeout;
    let stalled = state.metrics.streams_stalled.clone();
    response.map(|body| super::stall::guard(body, admitted, stall, stalled))
}
