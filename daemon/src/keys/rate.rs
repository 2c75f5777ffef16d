//! Per-key rate limits: the `20/s` notation and the token bucket that enforces it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A sustained rate and the burst a key may spend at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateSpec {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size; defaults to twice the per-second rate (at least 1).
    pub burst: u32,
}

impl RateSpec {
    pub fn with_burst(self, burst: Option<u32>) -> Self {
        match burst {
            Some(b) => Self { burst: b, ..self },
            None => self,
        }
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s burst {}", self.per_second, self.burst)
    }
}

/// The slowest rate a key may have: one request an hour. Slower ones (`1e-300/h`) mean
/// waits no clock can express; a key that should not be used is revoked instead.
pub const MIN_PER_SECOND: f64 = 1.0 / 3600.0;
/// The fastest: a million requests a second, far past what one appliance serves.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The longest `Retry-After` a bucket asks for, whatever its state.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A rate that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a rate: write a count per unit from 1/h to 1000000/s, such as 20/s, 600/m or 10000/h"
)]
pub struct BadRate(pub String);

impl std::str::FromStr for RateSpec {
    type Err = BadRate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRate(s.to_string());
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let per_second = count / seconds;
        if !(count.is_finite() && (MIN_PER_SECOND..=MAX_PER_SECOND).contains(&per_second)) {
            return Err(bad());
        }
        let burst = (per_second * 2.0).ceil().max(1.0) as u32;
        Ok(RateSpec { per_second, burst })
    }
}

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
    fn parses_units_and_default_burst() {
        let r: RateSpec = "20/s".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (20.0, 40));
        let r: RateSpec = "60/m".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (1.0, 2));
        assert!("0/s".parse::<RateSpec>().is_err());
        assert!("20/d".parse::<RateSpec>().is_err());
        assert!("fast".parse::<RateSpec>().is_err());
        assert!("1/h".parse::<RateSpec>().is_ok());
        assert!("1000000/s".parse::<RateSpec>().is_ok());
        for tiny_or_huge in ["1e-300/h", "0.5/h", "1e300/s", "inf/s", "NaN/m", "-1/s"] {
            assert!(tiny_or_huge.parse::<RateSpec>().is_err(), "{tiny_or_huge}");
        }
    }

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
