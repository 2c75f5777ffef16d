//! The global bound on work: at most `max_in_flight` requests run, at most `max_queue`
//! wait (each for at most `queue_timeout`), and everything past that is refused at once.
//! One API key may have at most `max_in_flight_per_key` requests running; its further
//! requests wait in the same queue for one of its own slots, so no key can take the
//! whole pool and a busy key is slowed, not refused. There is no unbounded queue anywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;
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
    /// Each key's running requests, by key id (keys are few: the key store's).
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_key: usize,
    metrics: Arc<Metrics>,
}

/// Held while a request runs; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _key: OwnedSemaphorePermit,
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
            per_key: Mutex::new(HashMap::new()),
            max_per_key: bounds.max_in_flight_per_key,
            metrics,
        }
    }

    fn key_slots(&self, key_id: &str) -> Arc<Semaphore> {
        let mut map = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(key_id) {
            return Arc::clone(s);
        }
        let s = Arc::new(Semaphore::new(self.max_per_key));
        map.insert(key_id.to_string(), Arc::clone(&s));
        s
    }

    /// Admits a request of key `key_id` now, queues it within the bounds (waiting for a
    /// slot of its key, then a global one), or refuses it.
    pub async fn admit(&self, key_id: &str) -> Result<Admitted, AdmissionError> {
        let key_slots = self.key_slots(key_id);
        let key = match Arc::clone(&key_slots).try_acquire_owned() {
            Ok(k) => match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => return Ok(self.admitted(permit, k)),
                Err(_) => Some(k),
            },
            Err(_) => None,
        };
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
        let wait = async {
            let key = match key {
                Some(k) => k,
                None => key_slots.acquire_owned().await.ok()?,
            };
            let permit = Arc::clone(&self.slots).acquire_owned().await.ok()?;
            Some((permit, key))
        };
        match tokio::time::timeout(self.queue_timeout, wait).await {
            Ok(Some((permit, key))) => Ok(self.admitted(permit, key)),
            // The semaphores are never closed; treat it like a timeout if they were.
            Ok(None) | Err(_) => Err(AdmissionError::QueueTimeout),
        }
    }

    fn admitted(&self, permit: OwnedSemaphorePermit, key: OwnedSemaphorePermit) -> Admitted {
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
        admission_per_key(slots, queue, slots)
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
    async fn one_key_runs_at_most_its_share_and_its_next_request_waits() {
        let a = Arc::new(admission_per_key(4, 4, 2));
        let first = a.admit("k_a").await.unwrap();
        let _second = a.admit("k_a").await.unwrap();
        // Another key is admitted at once meanwhile.
        let _other = a.admit("k_b").await.unwrap();
        // The key's third waits for one of its own slots (not a free global one)...
        let a2 = Arc::clone(&a);
        let third = tokio::spawn(async move { a2.admit("k_a").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !third.is_finished(),
            "the third request of a key at its share ran"
        );
        // ...and runs when one frees.
        drop(first);
        assert!(third.await.unwrap().is_ok());
        // With nothing freed it times out like any queued request.
        let _again = a.admit("k_a").await.unwrap();
        assert_eq!(
            a.admit("k_a").await.unwrap_err(),
            AdmissionError::QueueTimeout
        );
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
