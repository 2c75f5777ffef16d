//! The admin API on a Unix socket (mode 0660): key management, the telemetry spool,
//! models, decisions kept on the box, the audit log's signed checkpoints and the health
//! report for the fleet agent. Only peers that pass the credential check ([`PeerPolicy`]) are served;
//! the rest get a 403 that says why. JSON in, JSON out; `cofferctl` is its client.

pub mod accounts;
mod audit;
mod caller;
mod decisions;
mod health;
mod keys;
mod models;

mod server;
mod sync_events;
mod telemetry;

pub use crate::access::peers::{PeerIds, PeerPolicy, Role};
pub use server::{AdminError, bind, serve};

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::access::keys::{KeyStore, RateLimiter};

/// What admin handlers share.
#[derive(Debug)]
pub struct AdminState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<RateLimiter>,
    /// The telemetry spool; `None` when telemetry is off.
    pub spool: Option<Arc<crate::telemetry::Spool>>,
    /// The audit log; `None` when audit is off.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// The model lifecycle.
    pub models: Arc<crate::lifecycle::ModelManager>,
    /// Readiness and request outcomes per model version, for `GET /admin/health`.
    pub readiness: Arc<crate::monitoring::readiness::Readiness>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Decisions kept on the box (`cofferctl decisions`).
    pub decisions: Arc<crate::decisions::DecisionStore>,
    /// The GPUs' health, summed up in `GET /admin/health`.
    pub gpu: Arc<crate::monitoring::gpu::GpuHealth>,
}

/// An admin API error: status, stable code and message.
#[derive(Debug)]
pub struct AdminFailure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl IntoResponse for AdminFailure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(coffer_admin_api::ErrorBody::new(self.code, self.message)),
        )
            .into_response()
    }
}
