//! What a connection is doing, for its watchdog (`connection`): how many requests are in
//! flight on it and since when it has had none. [`Tracked`] wraps the router for one
//! connection: a request counts from the moment hyper hands it over until its response
//! body is finished or dropped, whichever protocol carries it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use http::Request;
use tower::Service;

/// One connection's activity.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `opened` when the last request ended.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether any request has begun on this connection.
    pub fn has_requests(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.age().saturating_sub(since)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(now, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router for one connection, counting its requests in [`Activity`].
#[derive(Debug, Clone)]
pub struct Tracked {
    inner: Router,
    activity: Arc<Activity>,
}

impl Tracked {
    pub fn new(inner: Router, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<B> Service<Request<B>> for Tracked
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <Router as Service<Request<B>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let in_flight = self.activity.begin();
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| crate::held_body::holding(body, in_flight)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_counts_only_without_requests_in_flight() {
        let a = Activity::new();
        assert!(!a.has_requests());
        let r = a.begin();
        assert!(a.has_requests());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(r);
        std::thread::sleep(Duration::from_millis(30));
        let idle = a.idle_for();
        assert!(
            idle >= Duration::from_millis(25) && idle < a.age(),
            "{idle:?}"
        );
    }
}
