//! One accepted connection, from its handshake (TLS on the API port) to close, with a watchdog that holds it to
//! time bounds whatever protocol it speaks: the first request must begin within
//! `header_read_timeout` of the handshake (hyper's own header timer starts only once it
//! has chosen HTTP/1, and an HTTP/2 connection has none), a connection with no request in
//! flight is closed after `idle_timeout`, and one older than `max_connection_age` is asked
//! to close (HTTP/2 GOAWAY, HTTP/1 `Connection: close`) and cut `request_timeout` later.
//! A drain asks every connection to close the same way; the accept loop bounds it. A
//! full server evicts the connection idle the longest (`open_conns`): it closes at once.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use super::activity::{Activity, Tracked};
use super::listen::Open;
use super::open_conns::Registered;
use super::{ConnectionLimits, ConnectionMetrics};

/// Why the server ended a connection (the `reason` of `coffer_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request began within `header_read_timeout` of the handshake.
    NoRequest,
    /// No request in flight for `idle_timeout`.
    Idle,
    /// Older than `max_connection_age`.
    MaxAge,
    /// The daemon is draining.
    Drain,
    /// The TLS handshake (or the admin socket's opening step) failed or timed out.
    Handshake,
    /// Its client address already had `max_connections_per_address` open.
    PerAddressLimit,
    /// The server was full and this was the connection idle the longest.
    Evicted,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::NoRequest => "no_request",
            CloseReason::Idle => "idle",
            CloseReason::MaxAge => "max_age",
            CloseReason::Drain => "drain",
            CloseReason::Handshake => "handshake",
            CloseReason::PerAddressLimit => "per_address_limit",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// What one connection task needs.
pub struct Conn<O> {
    /// Readies the stream for HTTP (the TLS handshake).
    pub opener: O,
    pub builder: auto::Builder<TokioExecutor>,
    pub app: axum::Router,
    pub limits: ConnectionLimits,
    pub metrics: ConnectionMetrics,
    pub drain: watch::Receiver<bool>,
    /// Its place among the open connections (activity, eviction signal).
    pub registered: Registered,
}

/// How often the watchdog looks: a quarter of the shortest bound, within 50 ms – 1 s.
fn tick(limits: &ConnectionLimits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The reason to close now, if any.
fn due(activity: &Activity, limits: &ConnectionLimits) -> Option<CloseReason> {
    if !activity.has_requests() && activity.age() >= limits.header_read_timeout {
        Some(CloseReason::NoRequest)
    } else if activity.has_requests() && activity.idle_for() >= limits.idle_timeout {
        Some(CloseReason::Idle)
    } else if activity.age() >= limits.max_connection_age {
        Some(CloseReason::MaxAge)
    } else {
        None
    }
}

impl<O> Conn<O> {
    pub async fn run<S>(mut self, stream: S)
    where
        O: Open<S>,
    {
        let handshake = tokio::time::timeout(
            self.limits.tls_handshake_timeout,
            self.opener.open(stream, &self.app),
        );
        let evict = Arc::clone(&self.registered.evict);
        let handshake = tokio::select! {
            h = handshake => h,
            () = evict.notified() => {
                self.metrics.closed(CloseReason::Evicted);
                return;
            }
        };
        let (io, app) = match handshake {
            Ok(Some(opened)) => opened,
            Ok(None) => {
                self.metrics.closed(CloseReason::Handshake);
                return;
            }
            Err(_) => {
                tracing::debug!("handshake timed out");
                self.metrics.closed(CloseReason::Handshake);
                return;
            }
        };
        let activity = Arc::clone(&self.registered.activity);
        let service = TowerToHyperService::new(Tracked::new(app, Arc::clone(&activity)));
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut ticker = tokio::time::interval(tick(&self.limits));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closing = loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                _ = self.drain.changed() => break CloseReason::Drain,
                () = evict.notified() => break CloseReason::Evicted,
                _ = ticker.tick() => {
                    if let Some(reason) = due(&activity, &self.limits) {
                        break reason;
                    }
                }
            }
        };
        self.metrics.closed(closing);
        // One that never sent a request, or that makes room for a new client, goes at
        // once: there is nothing to finish, and the slot is wanted now.
        if matches!(closing, CloseReason::NoRequest | CloseReason::Evicted) {
            return;
        }
        connection.as_mut().graceful_shutdown();
        // A graceful close lets requests in flight finish; an idle connection has none.
        // The drain has its own bound (`shutdown_grace`, in the accept loop).
        let cut = match closing {
            CloseReason::Drain => None,
            CloseReason::MaxAge => Some(self.limits.request_timeout),
            _ => Some(Duration::from_secs(1)),
        };
        match cut {
            Some(after) => {
                let _ = tokio::time::timeout(after, connection.as_mut()).await;
            }
            None => {
                let _ = connection.as_mut().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 4,
            max_connections_per_address: 2,
            tls_handshake_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_millis(40),
            idle_timeout: Duration::from_millis(80),
            max_connection_age: Duration::from_millis(400),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_connection_without_a_request_is_due_after_the_header_timeout() {
        let a = Activity::new();
        assert_eq!(due(&a, &limits()), None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(due(&a, &limits()), Some(CloseReason::NoRequest));
    }

    #[test]
    fn ticks_stay_within_bounds() {
        assert_eq!(tick(&limits()), Duration::from_millis(50));
        let mut l = limits();
        l.header_read_timeout = Duration::from_secs(10);
        l.idle_timeout = Duration::from_secs(60);
        assert_eq!(tick(&l), Duration::from_secs(1));
    }
}
