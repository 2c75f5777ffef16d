//! The global bound on work: at most `max_in_flight` requests run, at most `max_queue`
//! wait (each for at most `queue_timeout`), and everything past that is refused at once.
//! One API key may have at most `max_in_flight_per_key` requests running or waiting, so
//! no key can take the whole pool. There is no unbounded queue anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;
use crate::counted::{Counted, Slot};
use crate::metrics::Metrics;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("this API key already has its share of requests in flight")]
    KeyBusy,
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
    per_key: Arc<Counted<String>>,
    metrics: Arc<Metrics>,
}

/// Held while a request runs; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _key: Slot<String>,
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
    pub fn new(bounds: &AdmissionConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(bounds.max_in_flight)),
            waiting: AtomicUsize::new(0),
            max_queue: bounds.max_queue,
            queue_timeout: bounds.queue_timeout,
            per_key: Counted::new(bounds.max_in_flight_per_key),
            metrics,
        }
    }

    /// Admits a request of key `key_id` now, queues it within the bounds, or refuses it.
    pub async fn admit(&self, key_id: &str) -> Result<Admitted, AdmissionError> {
        let key =
            Counted::take(&self.per_key, &key_id.to_string()).ok_or(AdmissionError::KeyBusy)?;
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(self.admitted(permit, key));
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
            Ok(Ok(permit)) => Ok(self.admitted(permit, key)),
            // The semaphore is never closed; treat it like a timeout if it were.
            Ok(Err(_)) | Err(_) => Err(AdmissionError::QueueTimeout),
        }
    }

    fn admitted(&self, permit: OwnedSemaphorePermit, key: Slot<String>) -> Admitted {
        self.metrics.in_flight.inc();
        Admitted {
            _permit: permit,
            _key: key,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(slots: usize, queue: usize) -> Admission {
        admission_per_key(slots, queue, usize::MAX)
    }

    fn admission_per_key(slots: usize, queue: usize, per_key: usize) -> Admission {
        let bounds = AdmissionConfig {
            max_in_flight: slots,
            max_queue: queue,
            queue_timeout: Duration::from_millis(50),
            max_in_flight_per_key: per_key,
            retry_after: Duration::from_secs(1),
            default_key_rate: None,
        };
        Admission::new(&bounds, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn one_key_gets_at_most_its_share() {
        let a = admission_per_key(4, 0, 2);
        let first = a.admit("k_a").await.unwrap();
        let _second = a.admit("k_a").await.unwrap();
        assert_eq!(a.admit("k_a").await.unwrap_err(), AdmissionError::KeyBusy);
        let _other = a.admit("k_b").await.unwrap();
        drop(first);
        assert!(a.admit("k_a").await.is_ok());
    }

    #[tokio::test]
    async fn refuses_past_slots_and_queue() {
        let a = admission(1, 0);
        let held = a.admit("k").await.unwrap();
        assert_eq!(a.admit("k").await.unwrap_err(), AdmissionError::QueueFull);
        drop(held);
        assert!(a.admit("k").await.is_ok());
    }

    #[tokio::test]
    async fn queued_request_times_out_then_queue_frees() {
        let a = admission(1, 1);
        let _held = a.admit("k").await.unwrap();
        assert_eq!(
            a.admit("k").await.unwrap_err(),
            AdmissionError::QueueTimeout
        );
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn queued_request_runs_when_a_slot_frees() {
        let a = Arc::new(admission(1, 1));
        let held = a.admit("k").await.unwrap();
        let a2 = Arc::clone(&a);
        let waiter = tokio::spawn(async move { a2.admit("k").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }
}
