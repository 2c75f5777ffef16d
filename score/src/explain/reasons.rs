//! Adverse reason codes: the attributes whose contributions raise the score most, with a
//! fixed tie-break, and the agreement rule the evaluation gate applies against a
//! reference explanation.

/// Indices of the attributes with a positive contribution (raising the score: more
/// risk), largest first, at most `max`; equal contributions keep attribute order.
pub fn adverse(contributions: &[f64], max: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..contributions.len())
        .filter(|&i| contributions[i] > 0.0)
        .collect();
    idx.sort_by(|&a, &b| {
        contributions[b]
            .total_cmp(&contributions[a])
            .then(a.cmp(&b))
    });
    idx.truncate(max);
    idx
}

/// Whether the reference decides its reasons clearly: among its `max + 1` largest
/// contributions, each differs from the next by more than `margin` (so neither the cut
/// nor the order is a near tie) and none is within `margin` of zero (so whether it is
/// adverse at all is not a near tie either).
pub fn clearly_decided(reference: &[f64], max: usize, margin: f64) -> bool {
    let mut sorted = reference.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.truncate(max + 1);
    sorted.windows(2).all(|w| w[0] - w[1] > margin) && sorted.iter().all(|v| v.abs() > margin)
}

/// Whether `ours` names the same reasons, in the same order, as `reference` where the
/// reference decides them clearly ([`clearly_decided`]); elsewhere any answer agrees.
pub fn reasons_agree(ours: &[f64], reference: &[f64], max: usize, margin: f64) -> bool {
    !clearly_decided(reference, max, margin) || adverse(ours, max) == adverse(reference, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_positive_first_ties_in_attribute_order() {
        assert_eq!(
            adverse(&[0.1, 0.5, -2.0, 0.5, 0.0, 0.3], 4),
            vec![1, 3, 5, 0]
        );
        assert_eq!(adverse(&[0.1, 0.5, -2.0, 0.5, 0.0, 0.3], 2), vec![1, 3]);
        assert_eq!(adverse(&[-1.0, 0.0], 4), Vec::<usize>::new());
    }

    #[test]
    fn near_ties_at_the_cut_are_not_judged() {
        let reference = [0.9, 0.8, 0.7, 0.6, 0.5995, 0.1];
        let swapped = [0.9, 0.8, 0.7, 0.5995, 0.6, 0.1];
        assert!(reasons_agree(&swapped, &reference, 4, 1e-3));
        let clear = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1];
        let wrong = [0.9, 0.8, 0.7, 0.5, 0.6, 0.1];
        assert!(!reasons_agree(&wrong, &clear, 4, 1e-3));
        assert!(reasons_agree(&clear, &clear, 4, 1e-3));
        // Near zero, whether an attribute is adverse at all is a near tie.
        let faint = [0.9, 0.0004, -1.0];
        assert!(!clearly_decided(&faint, 4, 1e-3));
        assert!(reasons_agree(&[0.9, -0.0004, -1.0], &faint, 4, 1e-3));
        assert!(clearly_decided(&[0.9, 0.5, -1.0], 4, 1e-3));
    }
}
