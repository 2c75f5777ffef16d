//! Per-key rate limits: the token bucket that enforces a [`RateSpec`].

use std::time::{Duration, Instant};

use crate::rate_spec::RateSpec;

/// The longest `Retry-After` a bucket asks for, whatever its state.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A token bucket. Not thread-safe by itself; the limiter keeps one per key behind a lock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: RateSpec,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(spec: RateSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: f64::from(spec.burst),
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.spec.per_second).min(f64::from(self.spec.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // A spec from before the range check (in sled) may be anything: clamp the
            // wait instead of trusting it (`from_secs_f64` panics on a huge value).
            let wait = (1.0 - self.tokens) / self.spec.per_second;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT))
        }
    }

    pub fn spec(&self) -> RateSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_spec_out_of_range_never_panics_the_bucket() {
        for per_second in [1e-300, 0.0, -1.0, f64::NAN, f64::MIN_POSITIVE] {
            let spec = RateSpec {
                per_second,
                burst: 1,
            };
            let t0 = Instant::now();
            let mut b = TokenBucket::new(spec, t0);
            for _ in 0..3 {
                if let Err(wait) = b.try_take(t0) {
                    assert!(wait <= MAX_WAIT, "{per_second}: {wait:?}");
                }
            }
        }
    }

    #[test]
    fn bucket_spends_burst_then_refills_at_rate() {
        let spec = RateSpec {
            per_second: 2.0,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = TokenBucket::new(spec, t0);
        for _ in 0..3 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(b.try_take(t0 + Duration::from_millis(499)).is_err());
        assert!(b.try_take(t0 + Duration::from_millis(1000)).is_ok());
    }
}
