//! Population Stability Index over binned distributions (`[drift]` in the manifest):
//! which bin a value falls in, PSI of observed counts against reference proportions,
//! and its usual reading.

/// The bin of `x`: 0 for `x <= edges[0]`, `i` for `edges[i-1] < x <= edges[i]`,
/// `edges.len()` above the last edge. NaN falls in the last bin.
pub fn bin_index(edges: &[f64], x: f64) -> usize {
    if x.is_nan() {
        return edges.len();
    }
    edges.partition_point(|e| *e < x)
}

/// The floor a proportion is raised to before the logarithm (an empty bin on either
/// side would make PSI infinite); the usual choice in credit-risk practice.
pub const EPSILON: f64 = 1e-4;

/// PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) of observed `counts` against `expected` proportions,
/// each proportion floored at [`EPSILON`]. `None` without observations or when the
/// lengths differ.
pub fn psi(expected: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || expected.len() != counts.len() {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(counts)
            .map(|(&e, &c)| {
                let a = (c as f64 / total as f64).max(EPSILON);
                let e = e.max(EPSILON);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// PSI between two observed count vectors (the second read as "actual").
pub fn psi_counts(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let total: u64 = expected.iter().sum();
    if total == 0 {
        return None;
    }
    let proportions: Vec<f64> = expected.iter().map(|&c| c as f64 / total as f64).collect();
    psi(&proportions, actual)
}

/// How a PSI value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reading {
    Stable,
    Watch,
    Act,
}

impl Reading {
    pub fn of(psi: f64, watch: f64, act: f64) -> Reading {
        if psi >= act {
            Reading::Act
        } else if psi >= watch {
            Reading::Watch
        } else {
            Reading::Stable
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reading::Stable => "stable",
            Reading::Watch => "watch",
            Reading::Act => "act",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_manifest_semantics() {
        let edges = [1.0, 2.0, 3.0];
        assert_eq!(bin_index(&edges, 0.5), 0);
        assert_eq!(bin_index(&edges, 1.0), 0);
        assert_eq!(bin_index(&edges, 1.5), 1);
        assert_eq!(bin_index(&edges, 3.0), 2);
        assert_eq!(bin_index(&edges, 9.0), 3);
        assert_eq!(bin_index(&[], 9.0), 0);
        assert_eq!(bin_index(&edges, f64::NAN), 3);
    }

    #[test]
    fn psi_matches_a_hand_worked_case() {
        // Expected 25/25/50 %, observed 10/30/60 of 100:
        // (0.10-0.25)ln(0.4) + (0.30-0.25)ln(1.2) + (0.60-0.50)ln(1.2)
        // = 0.137444 + 0.009116 + 0.018232 = 0.164792
        let v = psi(&[0.25, 0.25, 0.5], &[10, 30, 60]).unwrap();
        assert!((v - 0.164_792).abs() < 1e-5, "{v}");
        assert_eq!(Reading::of(v, 0.1, 0.25), Reading::Watch);
        // Identical distributions: 0. An empty observed bin is floored, not infinite.
        assert!(psi(&[0.5, 0.5], &[50, 50]).unwrap().abs() < 1e-12);
        let floored = psi(&[0.5, 0.5], &[100, 0]).unwrap();
        assert!(floored.is_finite() && floored > 2.0, "{floored}");
        assert_eq!(psi(&[0.5, 0.5], &[0, 0]), None);
        assert!((psi_counts(&[25, 25, 50], &[10, 30, 60]).unwrap() - v).abs() < 1e-12);
    }
}
