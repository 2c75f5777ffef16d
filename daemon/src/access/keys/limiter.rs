//! Per-key admission by token bucket: one bucket per key id, created on first use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rate::TokenBucket;
use crate::rate_spec::RateSpec;

/// Holds the buckets of every key that has a rate. Keys without one pass freely.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// Takes a token for `key_id`, or returns how long to wait before retrying.
    pub fn check(&self, key_id: &str, spec: Option<RateSpec>) -> Result<(), Duration> {
        let Some(spec) = spec else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry(key_id.to_string())
            .or_insert_with(|| TokenBucket::new(spec, now));
        if bucket.spec() != spec {
            *bucket = TokenBucket::new(spec, now);
        }
        bucket.try_take(now)
    }

    /// Drops the bucket of a revoked key.
    pub fn forget(&self, key_id: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_id);
    }
}
