//! Differential privacy for telemetry counters that could reveal customer behaviour
//! (for example scoring decisions by outcome): the Laplace mechanism, and a per-period
//! budget that refuses a release once the period's epsilon is spent.
//!
//! A counter where one customer's request changes the value by at most `sensitivity`
//! (1 for a count of requests) is released as `value + Laplace(0, sensitivity / ε)`.
//! Releasing k such counters in one period spends k·ε (sequential composition), so the
//! budget caps how many noisy releases a period may make.

use rand::Rng;

/// Why a noisy value was not released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DpError {
    #[error("epsilon must be a positive finite number, got {0}")]
    BadEpsilon(f64),
    #[error("sensitivity must be a positive finite number, got {0}")]
    BadSensitivity(f64),
    #[error("the period's privacy budget is spent: {spent} of {limit} used, {asked} asked")]
    BudgetSpent { spent: f64, limit: f64, asked: f64 },
}

/// The Laplace mechanism for one counter.
#[derive(Debug, Clone, Copy)]
pub struct Laplace {
    epsilon: f64,
    sensitivity: f64,
}

impl Laplace {
    pub fn new(epsilon: f64, sensitivity: f64) -> Result<Self, DpError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(DpError::BadEpsilon(epsilon));
        }
        if !(sensitivity.is_finite() && sensitivity > 0.0) {
            return Err(DpError::BadSensitivity(sensitivity));
        }
        Ok(Laplace {
            epsilon,
            sensitivity,
        })
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The noise scale b = sensitivity / ε.
    pub fn scale(&self) -> f64 {
        self.sensitivity / self.epsilon
    }

    /// One draw of Laplace(0, b) by inversion of the CDF.
    pub fn noise<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        // u in (-0.5, 0.5); 0.5 itself would give ln(0).
        let u: f64 = loop {
            let u = rng.r#gen::<f64>() - 0.5;
            if u.abs() < 0.5 {
                break u;
            }
        };
        -self.scale() * u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }

    /// A count released with noise, rounded and clamped at zero (post-processing keeps
    /// the guarantee).
    pub fn noisy_count<R: Rng + ?Sized>(&self, count: u64, rng: &mut R) -> u64 {
        let noisy = count as f64 + self.noise(rng);
        noisy.round().max(0.0) as u64
    }
}

/// The epsilon one period may spend.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: f64,
    spent: f64,
}

impl Budget {
    pub fn new(limit: f64) -> Result<Self, DpError> {
        if !(limit.is_finite() && limit > 0.0) {
            return Err(DpError::BadEpsilon(limit));
        }
        Ok(Budget { limit, spent: 0.0 })
    }

    pub fn spent(&self) -> f64 {
        self.spent
    }

    /// Releases `count` through `mechanism` if the period can afford its epsilon.
    pub fn release<R: Rng + ?Sized>(
        &mut self,
        mechanism: &Laplace,
        count: u64,
        rng: &mut R,
    ) -> Result<u64, DpError> {
        let asked = mechanism.epsilon();
        if self.spent + asked > self.limit * (1.0 + 1e-9) {
            return Err(DpError::BudgetSpent {
                spent: self.spent,
                limit: self.limit,
                asked,
            });
        }
        self.spent += asked;
        Ok(mechanism.noisy_count(count, rng))
    }

    /// Starts the next period.
    pub fn reset(&mut self) {
        self.spent = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn laplace_cdf(x: f64, b: f64) -> f64 {
        if x < 0.0 {
            0.5 * (x / b).exp()
        } else {
            1.0 - 0.5 * (-x / b).exp()
        }
    }

    #[test]
    fn noise_follows_the_laplace_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        for epsilon in [0.1, 0.5, 1.0, 2.0] {
            let m = Laplace::new(epsilon, 1.0).unwrap();
            let b = m.scale();
            let n = 50_000;
            let mut draws: Vec<f64> = (0..n).map(|_| m.noise(&mut rng)).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            // Mean 0 (sd of the mean: sqrt(2)·b/sqrt(n)); variance 2b².
            assert!(
                mean.abs() < 5.0 * (2.0f64).sqrt() * b / (n as f64).sqrt(),
                "mean {mean}"
            );
            assert!(
                (var / (2.0 * b * b) - 1.0).abs() < 0.05,
                "variance {var} vs {}",
                2.0 * b * b
            );
            // Kolmogorov–Smirnov against the Laplace CDF; 1.63/sqrt(n) is the 1% level.
            draws.sort_by(f64::total_cmp);
            let d = draws
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let f = laplace_cdf(x, b);
                    (f - i as f64 / n as f64)
                        .abs()
                        .max(((i + 1) as f64 / n as f64 - f).abs())
                })
                .fold(0.0, f64::max);
            assert!(
                d < 1.63 / (n as f64).sqrt(),
                "KS distance {d} at epsilon {epsilon}"
            );
        }
    }

    #[test]
    fn a_wrong_scale_would_fail_the_test() {
        // The KS check above can fail: noise at twice the scale is far from Laplace(b).
        let mut rng = StdRng::seed_from_u64(8);
        let m = Laplace::new(0.5, 1.0).unwrap();
        let n = 20_000;
        let mut draws: Vec<f64> = (0..n).map(|_| 2.0 * m.noise(&mut rng)).collect();
        draws.sort_by(f64::total_cmp);
        let d = draws
            .iter()
            .enumerate()
            .map(|(i, &x)| (laplace_cdf(x, m.scale()) - i as f64 / n as f64).abs())
            .fold(0.0, f64::max);
        assert!(d > 1.63 / (n as f64).sqrt());
    }

    #[test]
    fn budget_refuses_past_its_limit_and_resets() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = Laplace::new(0.25, 1.0).unwrap();
        let mut budget = Budget::new(1.0).unwrap();
        for _ in 0..4 {
            budget.release(&m, 100, &mut rng).unwrap();
        }
        assert!(matches!(
            budget.release(&m, 100, &mut rng),
            Err(DpError::BudgetSpent { .. })
        ));
        budget.reset();
        assert!(budget.release(&m, 100, &mut rng).is_ok());
        assert!(Laplace::new(0.0, 1.0).is_err());
        assert!(Laplace::new(f64::NAN, 1.0).is_err());
    }

    #[test]
    fn counts_are_rounded_and_never_negative() {
        let mut rng = StdRng::seed_from_u64(2);
        let m = Laplace::new(0.1, 1.0).unwrap();
        assert!((0..1000).all(|_| m.noisy_count(0, &mut rng) < 200));
    }
}
