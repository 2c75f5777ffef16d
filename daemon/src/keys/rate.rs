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

/// A rate that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate: write a positive count per unit, such as 20/s, 600/m or 10000/h")]
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
        if !(count.is_finite() && count > 0.0) {
            return Err(bad());
        }
        let per_second = count / seconds;
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
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.spec.per_second,
            ))
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
