//! The `[explain]` section of a scoring model: how cofferd explains its scores (per
//! attribute contributions to the score's log-odds, and reason codes from `[reasons]`),
//! and what the method needs from the release: `linear` (exact: the model is one dense
//! layer and a sigmoid; contributions against the training mean), `tree_path_dependent`
//! (exact: TreeSHAP with the training rows' node covers, shipped in a file with role
//! `explain`) and `kernel` (KernelSHAP over the attributes of a dense network against a
//! weighted background shipped in a file with role `explain`; exact when every coalition
//! fits in `samples`, sampled otherwise).

use serde::{Deserialize, Serialize};

use super::{FileRole, Manifest, ManifestError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainMethod {
    Linear,
    TreePathDependent,
    Kernel,
}

/// The `[explain]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainSpec {
    pub method: ExplainMethod,
    /// `linear`: the mean of each encoded column over the training rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub background_mean: Vec<f64>,
    /// `tree_path_dependent`: a file with role `explain`, `{"trees": [[cover by node id]]}`
    /// in the order of the trees in the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<String>,
    /// `kernel`: a file with role `explain`, `{"rows": [[encoded row]], "weights": [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// `kernel`: coalitions evaluated per row (all of them when `2^attributes - 2` fit).
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// `kernel`: the seed of the coalition sample.
    #[serde(default)]
    pub seed: u64,
    /// Adverse reason codes returned per row, at most.
    #[serde(default = "four")]
    pub reasons_max: usize,
    /// The gate: the largest difference allowed between a contribution and the eval
    /// set's reference explanation.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_samples() -> usize {
    2048
}

fn four() -> usize {
    4
}

fn default_tolerance() -> f64 {
    1e-4
}

pub(crate) fn check(manifest: &Manifest) -> Result<(), ManifestError> {
    let Some(spec) = &manifest.explain else {
        return Ok(());
    };
    if manifest.attributes.is_empty() || manifest.reasons.is_empty() {
        return Err(invalid(
            "explain",
            "explanations are per attribute: the model needs [[attributes]] and [reasons]",
        ));
    }
    if !(1..=20).contains(&spec.reasons_max) {
        return Err(invalid("explain.reasons_max", "must be 1-20"));
    }
    if !(spec.tolerance.is_finite() && spec.tolerance > 0.0) {
        return Err(invalid(
            "explain.tolerance",
            "must be a finite number above 0",
        ));
    }
    let width = manifest.io.inputs.first().map_or(0, |i| i.row_elements());
    match spec.method {
        ExplainMethod::Linear => {
            if spec.background_mean.len() != width
                || spec.background_mean.iter().any(|x| !x.is_finite())
            {
                return Err(invalid(
                    "explain.background_mean",
                    format!("linear needs {width} finite column means"),
                ));
            }
            if spec.covers.is_some() {
                return Err(invalid("explain.covers", "is for tree_path_dependent"));
            }
        }
        ExplainMethod::Kernel => {
            let Some(background) = &spec.background else {
                return Err(invalid(
                    "explain.background",
                    "kernel needs the background file",
                ));
            };
            if !manifest.has_file(background, FileRole::Explain) {
                return Err(invalid(
                    "explain.background",
                    format!("{background:?} is not a file with role \"explain\""),
                ));
            }
            if !(16..=1 << 20).contains(&spec.samples) {
                return Err(invalid("explain.samples", "must be 16 to 1048576"));
            }
            if spec.covers.is_some() || !spec.background_mean.is_empty() {
                return Err(invalid(
                    "explain",
                    "kernel takes background, samples and seed",
                ));
            }
        }
        ExplainMethod::TreePathDependent => {
            let Some(covers) = &spec.covers else {
                return Err(invalid(
                    "explain.covers",
                    "tree_path_dependent needs the node covers file",
                ));
            };
            if !manifest.has_file(covers, FileRole::Explain) {
                return Err(invalid(
                    "explain.covers",
                    format!("{covers:?} is not a file with role \"explain\""),
                ));
            }
            if !spec.background_mean.is_empty() {
                return Err(invalid("explain.background_mean", "is for linear"));
            }
        }
    }
    Ok(())
}
