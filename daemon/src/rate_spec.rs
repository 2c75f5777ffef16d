//! The `20/s` rate notation: a sustained rate and its burst. The configuration's
//! `admission.default_key_rate` and each API key's own rate are written in it; the token
//! bucket that enforces it is [`crate::access::keys::TokenBucket`].

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
}
