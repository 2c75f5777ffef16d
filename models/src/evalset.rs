//! The evaluation set shipped with a scoring model version (`eval/holdout.json`):
//! holdout rows, labels, reference outputs, the teacher's scores for students, and AUC.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The teacher's scores on the same rows (distilled students only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherScores {
    pub model: String,
    pub scores: Vec<f64>,
}

/// A parsed evaluation set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    pub input: String,
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<u8>,
    pub reference: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub teacher: Option<TeacherScores>,
    pub auc: f64,
    /// The same rows as raw attributes (models with `[[attributes]]`), one column per
    /// attribute, `null` for a missing value: encoding them must give `rows` exactly.
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, Vec<Option<crate::manifest::attributes::RawDefault>>>>,
    /// The reference explanation of every row (models with `[explain]`), made by the
    /// training pipeline with the `shap` package.
    #[serde(default)]
    pub explanations: Option<ExplanationReference>,
}

/// Reference explanations: the base value and each row's contribution per attribute (in
/// the order of `[[attributes]]`), in log-odds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplanationReference {
    pub base_value: f64,
    pub contributions: Vec<Vec<f64>>,
    /// The version of `shap` that made them.
    #[serde(default)]
    pub shap: Option<String>,
}

/// Why an evaluation set is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EvalSetError {
    #[error("evaluation set does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("evaluation set is inconsistent: {0}")]
    Inconsistent(String),
}

impl EvalSet {
    pub fn parse(bytes: &[u8]) -> Result<EvalSet, EvalSetError> {
        let set: EvalSet = serde_json::from_slice(bytes)?;
        if set.rows.len() != set.labels.len() {
            return Err(EvalSetError::Inconsistent(format!(
                "{} rows but {} labels",
                set.rows.len(),
                set.labels.len()
            )));
        }
        if let Some((name, _)) = set
            .attributes
            .iter()
            .flatten()
            .find(|(_, column)| column.len() != set.rows.len())
        {
            return Err(EvalSetError::Inconsistent(format!(
                "attribute column {name:?} does not have one value per row"
            )));
        }
        if let Some(width) = set.rows.first().map(Vec::len) {
            if set.rows.iter().any(|r| r.len() != width) {
                return Err(EvalSetError::Inconsistent("rows differ in length".into()));
            }
        }
        Ok(set)
    }

    /// Reference values of one output, flattened row-major as f64.
    pub fn reference_flat(&self, output: &str) -> Option<Vec<f64>> {
        fn flatten(v: &serde_json::Value, out: &mut Vec<f64>) -> bool {
            match v {
                serde_json::Value::Array(items) => items.iter().all(|i| flatten(i, out)),
                serde_json::Value::Number(n) => n.as_f64().map(|f| out.push(f)).is_some(),
                serde_json::Value::Bool(b) => {
                    out.push(f64::from(u8::from(*b)));
                    true
                }
                _ => false,
            }
        }
        let mut out = Vec::new();
        flatten(self.reference.get(output)?, &mut out).then_some(out)
    }
}

/// Area under the ROC curve of `scores` against binary `labels` (ties count one half),
/// as scikit-learn's `roc_auc_score` computes it.
pub fn auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    let mut pairs: Vec<(f64, u8)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1 == 1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Rank-sum with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += pairs[i..=j].iter().filter(|p| p.1 == 1).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_worked_cases() {
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]), Some(0.75));
        assert_eq!(auc(&[0.5, 0.5], &[0, 1]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.9], &[1, 0]), Some(0.0));
        assert_eq!(auc(&[0.1, 0.9], &[1, 1]), None);
    }

    #[test]
    fn parses_and_flattens_references() {
        let text = br#"{"input":"x","rows":[[1.0],[2.0]],"labels":[0,1],
            "reference":{"p":[[0.25],[0.75]],"label":[0,1]},"auc":1.0}"#;
        let set = EvalSet::parse(text).unwrap();
        assert_eq!(set.reference_flat("p"), Some(vec![0.25, 0.75]));
        assert_eq!(set.reference_flat("label"), Some(vec![0.0, 1.0]));
        assert!(
            EvalSet::parse(br#"{"input":"x","rows":[[1.0]],"labels":[],"reference":{},"auc":1}"#)
                .is_err()
        );
    }
}
