//! The evaluation gate's check of a release's explanations (`[explain]`): on every eval
//! row, each attribute's contribution is within `tolerance` of the reference the training
//! pipeline made with the `shap` package, the base value too, base plus contributions
//! equals the explainer's margin within 1e-5, that margin's sigmoid is the engine's score
//! within the gate's `max_abs_diff` (so the explanation describes the served model), and
//! the adverse reason codes equal the reference's wherever those are clearly decided.

use std::path::Path;

use coffer_models::Manifest;
use coffer_models::evalset::EvalSet;
use coffer_score::explain::{clearly_decided, reasons_agree};

use crate::tensor::Tensor;

/// Largest `|base + sum(contributions) - margin|` accepted.
const ADDITIVITY: f64 = 1e-5;
/// A reference's reasons are clearly decided when its largest contributions are more than
/// this apart and from zero (`clearly_decided`), or more than twice the tolerance when that
/// is larger (a sampled method's contributions may each be off by the tolerance).
const REASON_MARGIN: f64 = 1e-3;

/// The larger of `so_far` and `|difference|`; a NaN difference is infinitely bad.
fn worse(so_far: f64, difference: f64) -> f64 {
    if difference.is_nan() {
        f64::INFINITY
    } else {
        so_far.max(difference.abs())
    }
}

/// `Ok(summary text)` (empty without `[explain]`) or the problems found.
pub(super) fn check(
    manifest: &Manifest,
    dir: &Path,
    model_file: &Path,
    set: &EvalSet,
    rows: &Tensor,
    scores: &[f64],
) -> Result<String, Vec<String>> {
    let Some(spec) = &manifest.explain else {
        return Ok(String::new());
    };
    let explainer = match coffer_score::load_explainer(manifest, dir, model_file) {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(String::new()),
        Err(e) => return Err(vec![e.to_string()]),
    };
    let Some(reference) = &set.explanations else {
        return Err(vec![
            "the model has [explain] but the eval set no reference `explanations`".into(),
        ]);
    };
    let explanations = explainer.explain(rows).map_err(|e| vec![e.to_string()])?;
    if reference.contributions.len() != explanations.len() || scores.len() != explanations.len() {
        return Err(vec![format!(
            "{} reference explanations for {} rows",
            reference.contributions.len(),
            explanations.len()
        )]);
    }
    let (mut worst, mut additivity, mut to_score) = (0.0f64, 0.0f64, 0.0f64);
    let mut disagree = Vec::new();
    let mut judged = 0usize;
    for (r, (e, want)) in explanations
        .iter()
        .zip(&reference.contributions)
        .enumerate()
    {
        if want.len() != e.contributions.len() {
            return Err(vec![format!(
                "reference row {r} has {} contributions",
                want.len()
            )]);
        }
        for (a, b) in e.contributions.iter().zip(want) {
            worst = worse(worst, a - b);
        }
        let sum = e.base_value + e.contributions.iter().sum::<f64>();
        additivity = worse(additivity, sum - e.margin);
        to_score = worse(to_score, 1.0 / (1.0 + (-e.margin).exp()) - scores[r]);
        let margin = REASON_MARGIN.max(2.0 * spec.tolerance);
        judged += usize::from(clearly_decided(want, spec.reasons_max, margin));
        if !reasons_agree(&e.contributions, want, spec.reasons_max, margin) {
            disagree.push(r);
        }
    }
    worst = worse(worst, explainer.base_value() - reference.base_value);
    let mut problems = Vec::new();
    if worst > spec.tolerance {
        problems.push(format!(
            "explanations differ from the reference by up to {worst:.2e} (tolerance {:.1e})",
            spec.tolerance
        ));
    }
    if additivity > ADDITIVITY {
        problems.push(format!(
            "base plus contributions misses the margin by {additivity:.2e}"
        ));
    }
    let max_abs_diff = manifest.eval.as_ref().map_or(0.0, |g| g.max_abs_diff);
    if to_score > max_abs_diff {
        problems.push(format!(
            "the explained margin is not the engine's score: sigmoid differs by {to_score:.2e}"
        ));
    }
    if let Some(first) = disagree.first() {
        problems.push(format!(
            "reason codes differ from the reference on {} rows (first: row {first})",
            disagree.len()
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "; explanations ({}) within {worst:.1e} of shap, additive to {additivity:.1e}, reason codes equal on all {judged} of {} rows where shap's are clearly decided",
            explainer.method(),
            explanations.len()
        ))
    } else {
        Err(problems)
    }
}
