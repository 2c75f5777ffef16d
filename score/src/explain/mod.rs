//! Explanations of a scoring model's scores: each raw attribute's contribution to the
//! score's log-odds (the model's margin, before the sigmoid), summed back from the
//! encoded columns it fills, the base value they add to, and the attributes whose
//! contributions push the score up most (adverse reason codes). Exact methods only, read
//! from the served model file itself: a linear model's weights (`linear`), a tree
//! ensemble's trees with the training covers (`tree_path_dependent`, TreeSHAP in
//! `coffer-trees`), and a dense network's layers for KernelSHAP over the attributes
//! (`kernel`, exact when every coalition fits its budget). The release names the method in
//! `[explain]`.

mod kernel;
mod reasons;

use coffer_models::Manifest;
use coffer_models::manifest::explain::ExplainMethod;
use coffer_trees::{DenseNetwork, TreeShap};

pub use reasons::{adverse, clearly_decided, reasons_agree};

use crate::tensor::{Tensor, TensorData};

/// Most rows a `kernel` explanation covers per request.
pub const KERNEL_MAX_ROWS: usize = 32;

/// Why a version's explainer cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("explain: {0}")]
    Model(#[from] coffer_trees::TreeError),
    #[error("explain: the linear method needs one dense layer with one output, got {0}")]
    NotLinear(String),
    #[error("explain: cannot read {path}: {detail}")]
    File { path: String, detail: String },
    #[error("explain: the input has {got} columns, the model {expected}")]
    Shape { got: usize, expected: usize },
}

enum Method {
    Linear {
        weights: Vec<f64>,
        intercept: f64,
        mean: Vec<f64>,
    },
    Tree(TreeShap),
    Kernel(kernel::KernelShap),
}

/// The explanation of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The expected log-odds over the training rows.
    pub base_value: f64,
    /// This row's log-odds: `base_value + sum(contributions)`.
    pub margin: f64,
    /// Per attribute, in the order of `[[attributes]]`.
    pub contributions: Vec<f64>,
    /// Attribute indices of the adverse reasons, strongest first.
    pub reasons: Vec<usize>,
}

/// A version's explainer.
pub struct Explainer {
    method: Method,
    method_name: &'static str,
    owners: Vec<usize>,
    attributes: Vec<String>,
    reason_texts: Vec<String>,
    reasons_max: usize,
    expected: f64,
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer")
            .field("method", &self.method_name)
            .field("attributes", &self.attributes.len())
            .finish()
    }
}

impl Explainer {
    /// The explainer of a checked manifest with `[explain]` (`None` without), reading the
    /// model file's bytes and, for trees, the covers file through `read`.
    pub fn load(
        manifest: &Manifest,
        model: &[u8],
        read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<Option<Explainer>, ExplainError> {
        let Some(spec) = &manifest.explain else {
            return Ok(None);
        };
        let (method, method_name) = match spec.method {
            ExplainMethod::Linear => {
                let net = DenseNetwork::from_onnx_bytes(model)?;
                let [layer] = net.layers.as_slice() else {
                    return Err(ExplainError::NotLinear(format!(
                        "{} layers",
                        net.layers.len()
                    )));
                };
                if layer.outputs != 1 || layer.inputs != spec.background_mean.len() {
                    return Err(ExplainError::NotLinear(format!(
                        "{} inputs and {} outputs",
                        layer.inputs, layer.outputs
                    )));
                }
                let method = Method::Linear {
                    weights: layer.weights.iter().map(|&w| f64::from(w)).collect(),
                    intercept: f64::from(layer.bias[0]),
                    mean: spec.background_mean.clone(),
                };
                (method, "linear")
            }
            ExplainMethod::Kernel => {
                let path = spec.background.clone().unwrap_or_default();
                let bytes = read(&path).map_err(|e| ExplainError::File {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                let background: kernel::Background =
                    serde_json::from_slice(&bytes).map_err(|e| ExplainError::File {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                let net = DenseNetwork::from_onnx_bytes(model)?;
                let owners = crate::AttributeEncoder::new(manifest)
                    .map(|e| e.column_owners())
                    .unwrap_or_default();
                let mut groups = vec![Vec::new(); manifest.attributes.len()];
                for (column, &owner) in owners.iter().enumerate() {
                    groups[owner].push(column);
                }
                let k = kernel::KernelShap::new(net, groups, background, spec.samples, spec.seed)?;
                (Method::Kernel(k), "kernel")
            }
            ExplainMethod::TreePathDependent => {
                let path = spec.covers.clone().unwrap_or_default();
                let file = |detail: String| ExplainError::File {
                    path: path.clone(),
                    detail,
                };
                let bytes = read(&path).map_err(|e| file(e.to_string()))?;
                #[derive(serde::Deserialize)]
                struct Covers {
                    trees: Vec<Vec<f64>>,
                }
                let covers: Covers =
                    serde_json::from_slice(&bytes).map_err(|e| file(e.to_string()))?;
                let class = manifest.eval.as_ref().map_or(0, |g| g.score_column);
                let shap = TreeShap::from_onnx_bytes(model, class, &covers.trees)?;
                (Method::Tree(shap), "tree_path_dependent")
            }
        };
        let expected = match &method {
            Method::Linear {
                weights,
                intercept,
                mean,
            } => intercept + weights.iter().zip(mean).map(|(w, m)| w * m).sum::<f64>(),
            Method::Tree(shap) => shap.expected_value(),
            Method::Kernel(k) => k.base(),
        };
        let owners = crate::AttributeEncoder::new(manifest)
            .map(|e| e.column_owners())
            .unwrap_or_default();
        let attributes: Vec<String> = manifest.attributes.iter().map(|a| a.name.clone()).collect();
        let reason_texts = attributes
            .iter()
            .map(|a| manifest.reasons.get(a).cloned().unwrap_or_default())
            .collect();
        Ok(Some(Explainer {
            method,
            method_name,
            owners,
            attributes,
            reason_texts,
            reasons_max: spec.reasons_max,
            expected,
        }))
    }

    /// `linear`, `tree_path_dependent` or `kernel`.
    pub fn method(&self) -> &'static str {
        self.method_name
    }

    /// The attribute names, in contribution order.
    pub fn attributes(&self) -> &[String] {
        &self.attributes
    }

    /// The reason text of attribute `i`.
    pub fn reason_text(&self, i: usize) -> &str {
        &self.reason_texts[i]
    }

    /// The base value every row's contributions add to.
    pub fn base_value(&self) -> f64 {
        self.expected
    }

    /// Explains every row of the model's encoded input tensor.
    pub fn explain(&self, input: &Tensor) -> Result<Vec<Explanation>, ExplainError> {
        let width = self.owners.len();
        if input.row_len() != width {
            return Err(ExplainError::Shape {
                got: input.row_len(),
                expected: width,
            });
        }
        let rows: std::borrow::Cow<[f32]> = match &input.data {
            TensorData::F32(v) => std::borrow::Cow::Borrowed(v),
            other => other.to_f64().into_iter().map(|x| x as f32).collect(),
        };
        let mut out = Vec::with_capacity(input.rows());
        let mut phi = vec![0.0f64; width];
        for x in rows.chunks_exact(width.max(1)) {
            phi.fill(0.0);
            let margin = match &self.method {
                Method::Linear {
                    weights,
                    intercept,
                    mean,
                } => {
                    let mut m = *intercept;
                    for (j, &xj) in x.iter().enumerate() {
                        let xj = f64::from(xj);
                        m += weights[j] * xj;
                        phi[j] = weights[j] * (xj - mean[j]);
                    }
                    m
                }
                Method::Tree(shap) => shap.explain(x, &mut phi)?,
                Method::Kernel(_) => 0.0,
            };
            let mut contributions = vec![0.0f64; self.attributes.len()];
            match &self.method {
                Method::Kernel(k) => {
                    let margin = k.explain(x, &mut contributions);
                    out.push(self.finish(margin, contributions));
                    continue;
                }
                _ => {
                    for (j, &owner) in self.owners.iter().enumerate() {
                        contributions[owner] += phi[j];
                    }
                }
            }
            out.push(self.finish(margin, contributions));
        }
        Ok(out)
    }

    fn finish(&self, margin: f64, contributions: Vec<f64>) -> Explanation {
        Explanation {
            base_value: self.expected,
            margin,
            reasons: adverse(&contributions, self.reasons_max),
            contributions,
        }
    }

    /// Most rows one request may have explained: a `kernel` explanation costs
    /// milliseconds per row, so a batch of them is bounded; the exact methods cost
    /// microseconds and take any batch the model does.
    pub fn max_rows(&self) -> Option<usize> {
        match &self.method {
            Method::Kernel(_) => Some(KERNEL_MAX_ROWS),
            _ => None,
        }
    }

    /// Coalitions a `kernel` explainer evaluates per row (`None` for the exact methods).
    pub fn coalitions(&self) -> Option<usize> {
        match &self.method {
            Method::Kernel(k) => Some(k.coalitions()),
            _ => None,
        }
    }
}
