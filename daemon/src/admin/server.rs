//! Binding the admin Unix socket (stale socket replaced, mode 0660) and serving the
//! admin router on it, on the daemon's one accept loop (`server`), with a
//! per-connection credential check.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::StatusCode;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use super::caller::{AuditTarget, Peer};
use super::{AdminFailure, AdminState, PeerPolicy, health, keys, models};
use crate::audit::AuditEvent;
use crate::config::ServerConfig;
use crate::server::{ConnectionLimits, ConnectionMetrics, Drain, Open, ServeConfig};

/// Why the admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot bind the admin socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the socket, replacing a stale socket file but never another kind of file. A
/// missing socket directory (one level, such as `/run/coffer` outside systemd, whose
/// `RuntimeDirectory=` otherwise makes it) is created with mode 0750.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let err = |source| AdminError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(dir)
                .map_err(err)?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(AdminError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

async fn check_peer(req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    match peer {
        Some(Peer {
            role: Some(role), ..
        }) if role.allows(req.method(), &pattern) => next.run(req).await,
        Some(Peer {
            role: Some(role),
            uid,
        }) => AdminFailure {
            status: StatusCode::FORBIDDEN,
            code: "role_not_allowed",
            message: format!(
                "uid {uid} has the {} role, which may not make this call; list it in admin.allowed_users/allowed_groups for every call",
                role.as_str()
            ),
        }
        .into_response(),
        other => {
            let uid = other
                .map(|p| p.uid.to_string())
                .unwrap_or_else(|| "unknown".into());
            AdminFailure {
                status: StatusCode::FORBIDDEN,
                code: "peer_not_allowed",
                message: format!(
                    "uid {uid} may not use the admin socket: run as root or the service user, or list it in admin.allowed_users/allowed_groups (every call) or admin.agent_users/agent_groups (the agent's calls), by name or id"
                ),
            }
            .into_response()
        }
    }
}

fn router(state: Arc<AdminState>) -> Router {
    use coffer_admin_api::path::route;
    Router::new()
        .route(route::HEALTH, get(health::health))
        .route(route::KEYS, get(keys::list).post(keys::create))
        .route(route::KEY, delete(keys::revoke))
        .route(route::TELEMETRY, get(super::telemetry::batch))
        .route(route::TELEMETRY_ACK, post(super::telemetry::ack))
        .route(route::CHECKPOINTS, get(super::audit::checkpoints))
        .route(route::SYNC_EVENTS, post(super::sync_events::report))
        .route(route::MODELS, get(models::list).post(models::import))
        .route(route::MODELS_HISTORY, get(models::history))
        .route(route::STORE_GC, post(models::gc))
        .route(route::MODEL, get(models::show_model))
        .route(route::ROLLBACK, post(models::rollback))
        .route(route::DRIFT, get(models::drift))
        .route(
            route::SHADOW,
            get(models::shadow_report)
                .put(models::shadow_start)
                .delete(models::shadow_stop),
        )
        .route(route::PIN, put(models::pin).delete(models::unpin))
        .route(
            route::VERSION,
            get(models::show_version).delete(models::remove),
        )
        .route(route::ACTIVATE, post(models::activate))
        .route(route::VERIFY, post(models::verify))
        .route(route::DECISIONS, get(super::decisions::list))
        .route(route::DECISION, get(super::decisions::show))
        .route(route::DECISIONS_REPLAY, post(super::decisions::replay))
        .route(route::DECISIONS_EXPORT, get(super::decisions::export))
        .route(route::DECISION_KEYS, post(super::decisions::rotate_key))
        .layer(axum::middleware::from_fn(check_peer))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            audit_change,
        ))
        .with_state(state)
}

/// Every admin call that changes something (any method but GET), refused or not, every
/// read of the decision store, and every refused call, goes into the audit log with the
/// caller's uid and role and the answer's status. Key tokens never appear: they are in response bodies, which are not
/// recorded; nor does a path the caller made up (an unknown route is `unknown`).
async fn audit_change(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let refused = response.status() == StatusCode::FORBIDDEN;
    let reads_decisions = path.starts_with("/admin/decision");
    if method != http::Method::GET || refused || reads_decisions {
        if let Some(audit) = &state.audit {
            let (action, mut target) = audit_action(method.as_str(), &path);
            if let Some(t) = response.extensions().get::<AuditTarget>() {
                target = t.0.clone();
            }
            audit
                .record(AuditEvent::Admin {
                    uid: peer.map_or(u32::MAX, |p| p.uid),
                    role: peer.and_then(|p| p.role).map(|r| r.as_str().to_string()),
                    action,
                    target,
                    status: response.status().as_u16(),
                })
                .await;
        }
    }
    response
}

/// The audit trail's name for an admin call and what it acted on (`name@version` for
/// model versions).
fn audit_action(method: &str, path: &str) -> (String, String) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["admin", "keys"]) => ("keys.create".into(), String::new()),
        ("DELETE", ["admin", "keys", name]) => ("keys.revoke".into(), (*name).into()),
        ("POST", ["admin", "telemetry", "ack"]) => ("telemetry.ack".into(), String::new()),
        ("POST", ["admin", "sync", "events"]) => ("sync.report".into(), String::new()),
        ("POST", ["admin", "models"]) => ("models.import".into(), String::new()),
        ("POST", ["admin", "model-store", "gc"]) => ("models.gc".into(), String::new()),
        ("POST", ["admin", "models", name, "rollback"]) => {
            ("models.rollback".into(), (*name).into())
        }
        ("PUT", ["admin", "models", name, "pin"]) => ("models.pin".into(), (*name).into()),
        ("DELETE", ["admin", "models", name, "pin"]) => ("models.unpin".into(), (*name).into()),
        ("PUT", ["admin", "models", name, "shadow"]) => ("models.shadow".into(), (*name).into()),
        ("DELETE", ["admin", "models", name, "shadow"]) => {
            ("models.shadow_stop".into(), (*name).into())
        }
        ("DELETE", ["admin", "models", name, "versions", version]) => {
            ("models.remove".into(), format!("{name}@{version}"))
        }
        ("POST", ["admin", "models", name, "versions", version, action]) => {
            (format!("models.{action}"), format!("{name}@{version}"))
        }
        ("GET", ["admin", "keys"]) => ("keys.list".into(), String::new()),
        ("GET", ["admin", "decisions"]) => ("decisions.list".into(), String::new()),
        ("GET", ["admin", "decisions", id]) => ("decisions.show".into(), (*id).into()),
        ("GET", ["admin", "decisions-export"]) => ("decisions.export".into(), String::new()),
        ("POST", ["admin", "decisions-replay"]) => ("decisions.replay".into(), String::new()),
        ("POST", ["admin", "decision-keys"]) => ("decisions.rotate_key".into(), String::new()),
        ("GET", ["admin", rest @ ..]) => (
            format!("read.{}", rest.first().copied().unwrap_or("")),
            String::new(),
        ),
        _ => ("unknown".into(), String::new()),
    }
}

/// How the admin socket's connections are bounded: by the API port's handshake,
/// first-request and idle timeouts, with its own counts, and with room for the admin
/// API's long calls (an import streaming a large model, a verify): a call in flight is
/// never cut for its connection's age, a connection with nothing in flight is closed.
pub fn connection_limits(server: &ServerConfig) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 64,
        // One uid (a user that can reach the socket but has no role, say) cannot take
        // every slot from root and the agent; when all are taken the idlest goes.
        max_connections_per_address: 16,
        tls_handshake_timeout: server.tls_handshake_timeout,
        header_read_timeout: server.header_read_timeout,
        idle_timeout: server.idle_timeout,
        max_connection_age: Duration::from_secs(24 * 3600),
        request_timeout: Duration::from_secs(24 * 3600),
    }
}

/// The admin socket's opening step: reads the peer's credentials and serves the
/// router with the [`Peer`] on every request (`check_peer` refuses one without a role).
#[derive(Clone)]
struct PeerCheck {
    app: Router,
    policy: PeerPolicy,
}

impl Open<UnixStream> for PeerCheck {
    type Io = UnixStream;

    async fn open(&self, stream: UnixStream, _app: &Router) -> Option<(UnixStream, Router)> {
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                role: self.policy.role(cred.uid(), cred.gid()),
                uid: cred.uid(),
            },
            Err(_) => Peer {
                role: None,
                uid: u32::MAX,
            },
        };
        if peer.role.is_none() {
            tracing::warn!(uid = peer.uid, "admin socket: peer refused");
        }
        Some((stream, self.app.clone().layer(axum::Extension(peer))))
    }
}

/// Serves the admin API until `shutdown` resolves, then drains within the server's
/// `shutdown_grace`, on the accept loop the API port uses (bounds in
/// [`connection_limits`]).
pub fn serve<F: Future<Output = ()>>(
    listener: UnixListener,
    state: Arc<AdminState>,
    policy: PeerPolicy,
    server: &ServerConfig,
    metrics: ConnectionMetrics,
    shutdown: F,
) -> impl Future<Output = Drain> + use<F> {
    let app = router(state);
    let opener = PeerCheck {
        app: app.clone(),
        policy,
    };
    let config = ServeConfig {
        app,
        limits: connection_limits(server),
        metrics,
        grace: server.shutdown_grace,
    };
    crate::server::serve(listener, opener, config, shutdown)
}
