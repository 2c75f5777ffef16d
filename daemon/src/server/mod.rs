//! The accept loop, one for every socket cofferd serves HTTP on (the TLS API port, the
//! admin Unix socket; `listen`): bounded connections (in all and per client address; a full server
//! evicts the connection idle the longest for a new one), HTTP/1.1 and
//! HTTP/2 on the same port (ALPN on the API port), and per-connection time bounds (`connection`: TLS
//! handshake, first request, idle, age; hyper's header-read deadline against slowloris),
//! and a graceful drain: once `shutdown` resolves the listener is closed (new connections
//! are refused), open connections are asked to close and finish their in-flight requests,
//! and the drain is cut off after `grace`.

mod activity;
mod connection;
mod listen;
mod open_conns;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, watch};

pub use connection::CloseReason;
pub use listen::{Listen, Open, TlsOpen};

use crate::counted::Counted;
use crate::metrics::{Metrics, ReasonLabel};
use open_conns::OpenConns;

/// Per-connection bounds.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connection_age: Duration,
    /// How long a connection past its age may take to finish its requests.
    pub request_timeout: Duration,
}

/// `coffer_connections_open` and `coffer_connections_closed_total{reason}`.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed: Family<ReasonLabel, Counter>,
}

impl ConnectionMetrics {
    /// The API port's: `coffer_connections_open`, `coffer_connections_closed_total`.
    pub fn register(metrics: &Metrics) -> Self {
        Self::register_as(
            metrics,
            "connections",
            "TLS connections open on the API port",
        )
    }

    /// The admin socket's: `coffer_admin_connections_*`.
    pub fn register_admin(metrics: &Metrics) -> Self {
        Self::register_as(
            metrics,
            "admin_connections",
            "Connections open on the admin socket",
        )
    }

    fn register_as(metrics: &Metrics, prefix: &str, open_help: &str) -> Self {
        let m = ConnectionMetrics {
            open: Gauge::default(),
            closed: Family::default(),
        };
        metrics.with_registry(|r| {
            r.register(format!("{prefix}_open"), open_help, m.open.clone());
            r.register(
                format!("{prefix}_closed"),
                "Connections the server ended, by reason (no_request, idle, max_age, drain, handshake, per_address_limit, evicted)",
                m.closed.clone(),
            );
        });
        m
    }

    fn closed(&self, reason: CloseReason) {
        self.closed
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished within the grace period.
    Complete,
    /// The grace period ran out with connections still open.
    TimedOut,
}

fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// What `serve` runs: the app and how its connections are bounded and counted.
#[derive(Debug)]
pub struct ServeConfig {
    pub app: Router,
    pub limits: ConnectionLimits,
    pub metrics: ConnectionMetrics,
    /// How long the drain may take.
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains. `opener` readies
/// each accepted stream (the TLS handshake).
pub async fn serve<L, O>(
    listener: L,
    opener: O,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Drain
where
    L: Listen,
    O: Open<L::Stream>,
{
    let ServeConfig {
        app,
        limits,
        metrics,
        grace,
    } = config;
    let builder = http_builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Counted::new(limits.max_connections_per_address);
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let open = Arc::new(OpenConns::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One address may hold at most its share; the rest are closed before any TLS.
        let Some(address_slot) = Counted::take(&per_address, &peer) else {
            metrics.closed(CloseReason::PerAddressLimit);
            drop(stream);
            continue;
        };
        // Full: the connection idle the longest makes room. With every connection busy
        // nobody is evicted, and this wait stops the accept loop (the kernel queues).
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                open.evict_idlest();
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    () = &mut shutdown => break,
                }
            }
        };
        let conn = connection::Conn {
            opener: opener.clone(),
            builder: builder.clone(),
            app: app.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            drain: drain_rx.clone(),
            registered: OpenConns::register(&open),
        };
        let open = metrics.open.clone();
        open.inc();
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            conn.run(stream).await;
            open.dec();
        });
    }
    drop(listener);
    tracing::info!("listener closed; draining open connections");
    let _ = drain_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(grace, slots.acquire_many(all)).await {
        Ok(_) => Drain::Complete,
        Err(_) => Drain::TimedOut,
    }
}
