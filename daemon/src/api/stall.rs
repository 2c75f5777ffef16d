//! A streamed response held to a send deadline. A stream's admission slot lives as long
//! as the stream, so a client that stops reading (an HTTP/2 flow-control window left at
//! zero, an HTTP/1.1 client whose socket buffer is full) would keep it for ever. Whenever
//! the stream has handed a frame over, or has not yet been asked for one, it waits on the
//! client; if it waits longer than `stream_stall_timeout`, a watchdog drops the stream's
//! body (for a chat completion that drops its receiver, which cancels the generation and
//! frees its engine slot) and its admission slot. The next time the client reads, the
//! stream ends with an error.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use prometheus_client::metrics::counter::Counter;

use crate::access::admission::Admitted;

/// A stream's shared state, between its body and its watchdog.
struct Shared {
    body: Mutex<Option<Body>>,
    admitted: Mutex<Option<Admitted>>,
    started: Instant,
    /// Milliseconds after `started` since when the stream has waited on the client; 0:
    /// the client is waiting on the stream.
    waiting_since_ms: AtomicU64,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// `body` with `admitted`, ended when it waits on its client for longer than `stall`.
pub fn guard(body: Body, admitted: Admitted, stall: Duration, stalled: Counter) -> Body {
    let shared = Arc::new(Shared {
        body: Mutex::new(Some(body)),
        admitted: Mutex::new(Some(admitted)),
        started: Instant::now(),
        waiting_since_ms: AtomicU64::new(1),
    });
    tokio::spawn(watch(Arc::downgrade(&shared), stall, stalled));
    Body::new(Guarded(shared))
}

async fn watch(shared: Weak<Shared>, stall: Duration, stalled: Counter) {
    let tick = (stall / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let Some(s) = shared.upgrade() else { return };
        let since = s.waiting_since_ms.load(Ordering::Acquire);
        if since != 0 && s.now_ms().saturating_sub(since) >= stall.as_millis() as u64 {
            let body = s.body.lock().unwrap_or_else(|e| e.into_inner()).take();
            let admitted = s.admitted.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop((body, admitted));
            stalled.inc();
            tracing::debug!(
                stall_ms = stall.as_millis() as u64,
                "a streamed response stalled on its client; ended"
            );
            return;
        }
    }
}

struct Guarded(Arc<Shared>);

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let s = &self.0;
        let mut body = s.body.lock().unwrap_or_else(|e| e.into_inner());
        let Some(inner) = body.as_mut() else {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the stream stalled on its client and was ended",
            ))));
        };
        let polled = Pin::new(inner).poll_frame(cx);
        let waiting = match &polled {
            // A frame goes to the client: from here the stream waits on it.
            Poll::Ready(Some(Ok(_))) => s.now_ms(),
            _ => 0,
        };
        s.waiting_since_ms.store(waiting, Ordering::Release);
        if let Poll::Ready(None) = polled {
            s.admitted.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or_else(http_body::SizeHint::default, http_body::Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt as _;
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::access::admission::Admission;
    use crate::config::AdmissionConfig;
    use crate::metrics::Metrics;

    fn admission() -> Admission {
        let bounds = AdmissionConfig {
            max_in_flight: 1,
            max_in_flight_per_key: 1,
            max_queue: 0,
            queue_timeout: Duration::from_millis(10),
            retry_after: Duration::from_secs(1),
            default_key_rate: None,
        };
        Admission::new(&bounds, Arc::new(Metrics::new()))
    }

    fn endless() -> Body {
        let frames = futures_util::stream::repeat_with(|| {
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"data: x\n\n"))
        });
        Body::from_stream(frames.then(|f| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            f
        }))
    }

    #[tokio::test]
    async fn a_stream_nobody_reads_gives_its_slot_back() {
        let a = admission();
        let admitted = a.admit("k").await.unwrap();
        let stalled = Counter::default();
        let body = guard(
            endless(),
            admitted,
            Duration::from_millis(100),
            stalled.clone(),
        );
        assert!(a.admit("k").await.is_err(), "the stream holds the slot");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(stalled.get(), 1);
        let _again = a
            .admit("k")
            .await
            .expect("the stalled stream gave its slot back");
        let mut body = body;
        assert!(
            body.frame().await.unwrap().is_err(),
            "it ends with an error"
        );
    }

    #[tokio::test]
    async fn a_stream_that_is_read_keeps_its_slot() {
        let a = admission();
        let admitted = a.admit("k").await.unwrap();
        let stalled = Counter::default();
        let mut body = guard(
            endless(),
            admitted,
            Duration::from_millis(100),
            stalled.clone(),
        );
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            body.frame().await.unwrap().unwrap();
        }
        assert_eq!(stalled.get(), 0);
        assert!(
            a.admit("k").await.is_err(),
            "the stream still holds the slot"
        );
    }
}
