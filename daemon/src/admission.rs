//! The global bound on work: at most `max_in_flight` requests run, at most `max_queue`
//! wait (each for at most `queue_timeout`), and everything past that is refused at once.
//! There is no unbounded queue anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the server is at capacity and its queue is full")]
    QueueFull,
    #[error("the request waited too long for capacity")]
    QueueTimeout,
}

/// Shared admission state.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
    queue_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Held while a request runs; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// Decrements the waiting count however the wait ends (admitted, timed out, cancelled).
struct Waiting<'a>(&'a Admission);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queued.dec();
    }
}

impl Admission {
    pub fn new(
        max_in_flight: usize,
        max_queue: usize,
        queue_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            waiting: AtomicUsize::new(0),
            max_queue,
            queue_timeout,
            metrics,
        }
    }

    /// Admits a request now, queues it within the bounds, or refuses it.
    pub async fn admit(&self) -> Result<Admitted, AdmissionError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(self.admitted(permit));
        }
        let reserved = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_queue).then_some(n + 1)
            });
        if reserved.is_err() {
            return Err(AdmissionError::QueueFull);
        }
        self.metrics.queued.inc();
        let _waiting = Waiting(self);
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(self.admitted(permit)),
            // The semaphore is never closed; treat it like a timeout if it were.
            Ok(Err(_)) | Err(_) => Err(AdmissionError::QueueTimeout),
        }
    }

    fn admitted(&self, permit: OwnedSemaphorePermit) -> Admitted {
        self.metrics.in_flight.inc();
        Admitted {
            _permit: permit,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(slots: usize, queue: usize) -> Admission {
        Admission::new(
            slots,
            queue,
            Duration::from_millis(50),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn refuses_past_slots_and_queue() {
        let a = admission(1, 0);
        let held = a.admit().await.unwrap();
        assert_eq!(a.admit().await.unwrap_err(), AdmissionError::QueueFull);
        drop(held);
        assert!(a.admit().await.is_ok());
    }

    #[tokio::test]
    async fn queued_request_times_out_then_queue_frees() {
        let a = admission(1, 1);
        let _held = a.admit().await.unwrap();
        assert_eq!(a.admit().await.unwrap_err(), AdmissionError::QueueTimeout);
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn queued_request_runs_when_a_slot_frees() {
        let a = Arc::new(admission(1, 1));
        let held = a.admit().await.unwrap();
        let a2 = Arc::clone(&a);
        let waiter = tokio::spawn(async move { a2.admit().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }
}
