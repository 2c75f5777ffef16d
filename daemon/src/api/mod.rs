//! The public HTTPS API: the router, its shared state, and the layers every request
//! passes (observe → authenticate/authorise → rate limit → admit → handler).
//! Engines add their routes through [`ApiRoutes`] so this module stays the one place
//! where the public surface and its scopes are assembled.

mod body;
mod chat;
mod embeddings;
mod error;
mod guard;
mod observe;
mod oip;

/// The infer request parser, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub mod oip_fuzzing {
    pub use super::oip::{parse_and_encode_attributes, parse_and_validate};
}

/// The embeddings request parser, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub mod embeddings_fuzzing {
    pub use super::embeddings::parse_request;
}

/// The chat completions request parser, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub mod chat_fuzzing {
    pub use super::chat::parse_request;
}
mod routes;
mod stall;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

pub use body::read_limited;
pub use error::{ApiError, ErrorKind, Family};

use crate::access::admission::Admission;
use crate::access::keys::{KeyStore, RateLimiter, Scope};
use crate::metrics::Metrics;
use crate::monitoring::readiness::Readiness;
use crate::rate_spec::RateSpec;

/// Bounds that apply to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub retry_after: Duration,
    pub default_key_rate: Option<RateSpec>,
    /// Log every request at info level (otherwise debug; 5xx are always logged).
    pub access_log: bool,
    /// How long a streamed response may wait on a client that does not read.
    pub stream_stall_timeout: Duration,
}

/// What handlers and layers share.
#[derive(Debug)]
pub struct AppState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<RateLimiter>,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub limits: Limits,
    /// Which version answers a request, and the work handed to it.
    pub serving: crate::serving::Serving,
    /// Turns `response_format` schemas into grammars off the async workers.
    pub grammars: crate::chat::grammar::GrammarCompiler,
    /// SSE keep-alive interval of chat streams.
    pub chat_keep_alive: Duration,
    /// The audit log when per-request records are on.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The decision store and which models' decisions are kept.
    pub decisions: Option<Arc<crate::decisions::Decisions>>,
    /// Explanations that run off the async workers (KernelSHAP, long batches) run at
    /// most one per core plus one, first come first served: each then finishes in about
    /// its own compute time instead of sharing the cores by time slices with all the
    /// others, which spread their latencies (credit-mlp at 16 clients: p99 41-44 ms
    /// unbounded, 20-22 ms so, at 0.97x the req/s; docs/scoring.md).
    pub explain_slots: Arc<tokio::sync::Semaphore>,
}

/// Routes grouped by the scope they require.
#[derive(Debug, Default)]
pub struct ApiRoutes {
    groups: Vec<(Option<Scope>, Router<Arc<AppState>>)>,
}

impl ApiRoutes {
    /// Adds routes that need a key carrying `scope` (`None`: any valid key).
    pub fn add(mut self, scope: Option<Scope>, routes: Router<Arc<AppState>>) -> Self {
        self.groups.push((scope, routes));
        self
    }
}

/// The routes the foundation serves; engines add theirs with [`ApiRoutes::add`].
pub fn base_routes() -> ApiRoutes {
    ApiRoutes::default()
        .add(None, Router::new().route("/readyz", get(routes::readyz)))
        .add(
            Some(Scope::Metrics),
            Router::new().route("/metrics", get(routes::metrics)),
        )
        .add(Some(Scope::Chat), chat::routes())
        .add(Some(Scope::Embed), embeddings::routes())
        .add(
            Some(Scope::Score),
            Router::new()
                .route("/v2", get(routes::server_metadata))
                .merge(oip::routes()),
        )
}

/// Assembles the router: unauthenticated liveness, guarded groups, the shared layers.
pub fn router(state: Arc<AppState>, routes: ApiRoutes) -> Router {
    let mut app = Router::new().route("/healthz", get(routes::healthz));
    for (scope, group) in routes.groups {
        let guarded = group.route_layer(axum::middleware::from_fn_with_state(
            guard::Guard {
                state: Arc::clone(&state),
                scope,
            },
            guard::guard,
        ));
        app = app.merge(guarded);
    }
    app.fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            observe::observe,
        ))
        .with_state(state)
}
