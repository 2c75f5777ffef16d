//! `coffer-trees` owns Coffer's native evaluation of tree-ensemble scoring models: ONNX files
//! whose graph is one `ai.onnx.ml` `TreeEnsembleClassifier` or `TreeEnsembleRegressor` node
//! (the form in which gradient-boosted credit scorecards from scikit-learn, LightGBM and
//! XGBoost are exported), evaluated with onnxruntime's exact semantics and a few hundred times
//! faster than a general ONNX runtime.
//!
//! It owns: decoding the ONNX protobuf (only the messages and fields a tree ensemble needs),
//! recognising the lone-tree-ensemble graph (no-op `Identity`, same-type `Cast` and
//! multiply-by-one nodes after the tree node are looked through), validating every attribute
//! array so that a broken or hostile file is an error and never a panic or an endless walk,
//! compiling the trees into a flat node array, and evaluating batches of `f32` rows on scoped
//! threads. It does not own model files, manifests, scheduling or any other ONNX operator:
//! for any other graph [`TreeEnsemble::from_onnx_bytes`] returns an error for which
//! [`TreeError::is_not_applicable`] is true, and the caller falls back to its general runtime.
//!
//! Semantics follow onnxruntime's CPU kernels (`tree_ensemble_common.h`,
//! `tree_ensemble_aggregator.h`, `ml_common.h`) for float inputs: scores are accumulated in
//! f32 tree by tree in attribute order, base values and post transforms are applied as
//! onnxruntime applies them, including its two-class special cases. The tests compare every
//! output with onnxruntime's on models from scikit-learn, LightGBM, XGBoost and hand-made ones.
//!
//! ```no_run
//! use coffer_trees::{Prediction, TreeEnsemble};
//! let model = TreeEnsemble::from_onnx_path("scorecard.onnx")?;
//! let rows = vec![0.0f32; 4 * model.n_features()];
//! match model.predict(&rows, 4, 2)? {
//!     Prediction::Classifier { labels, probabilities } => println!("{labels:?} {probabilities:?}"),
//!     Prediction::Regressor { values } => println!("{values:?}"),
//! }
//! # Ok::<(), coffer_trees::TreeError>(())
//! ```

mod build;
mod dense;
mod error;
mod eval;
mod finalize;
mod parse;
mod proto;
mod shap;

use std::path::Path;

pub use dense::{DenseLayer, DenseNetwork};
pub use error::TreeError;
pub use shap::TreeShap;

/// How a regressor combines the trees' values (`aggregate_function`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum of the trees (the default).
    Sum,
    /// Sum divided by the number of trees.
    Average,
    /// Smallest tree value.
    Min,
    /// Largest tree value.
    Max,
}

/// The `post_transform` applied to the aggregated scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    /// Scores as they are.
    None,
    /// `1 / (1 + exp(-x))` per score.
    Logistic,
    /// Softmax over a row's scores.
    Softmax,
    /// Softmax that leaves zero scores at (almost) zero.
    SoftmaxZero,
    /// onnxruntime's approximate inverse normal CDF per score.
    Probit,
}

/// What a graph output carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// Classifier: the predicted label per row (int64, `[n_rows]`).
    Label,
    /// Classifier: the score of each class per row (float, `[n_rows, n_classes]`).
    Probabilities,
    /// Regressor: the value of each target per row (float, `[n_rows, n_targets]`).
    Values,
}

/// One output of the model's graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOutput {
    /// The graph output's name.
    pub name: String,
    /// Which result it carries.
    pub kind: OutputKind,
}

/// The result of [`TreeEnsemble::predict`].
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// A classifier's outputs.
    Classifier {
        /// The label of each row.
        labels: Vec<i64>,
        /// Row-major `[n_rows, n_classes]` scores (probabilities for the usual transforms).
        probabilities: Vec<f32>,
    },
    /// A regressor's outputs.
    Regressor {
        /// Row-major `[n_rows, n_targets]` values.
        values: Vec<f32>,
    },
}

/// A loaded, validated and compiled tree-ensemble model. Immutable and `Sync`: share one
/// between request handlers.
#[derive(Clone)]
pub struct TreeEnsemble {
    input_name: String,
    outputs: Vec<ModelOutput>,
    classes: Vec<i64>,
    is_classifier: bool,
    aggregate: Option<Aggregate>,
    model: build::Compiled,
}

impl std::fmt::Debug for TreeEnsemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A summary: the node arrays can hold millions of entries.
        f.debug_struct("TreeEnsemble")
            .field("input_name", &self.input_name)
            .field("outputs", &self.outputs)
            .field("is_classifier", &self.is_classifier)
            .field("classes", &self.classes)
            .field("aggregate", &self.aggregate)
            .field("post_transform", &self.model.finalizer.post_transform)
            .field("n_features", &self.model.n_features)
            .field("n_outputs", &self.model.n_out)
            .field("n_trees", &self.model.trees.len())
            .field("n_nodes", &self.model.nodes.len())
            .finish()
    }
}

impl TreeEnsemble {
    /// Loads a model from the bytes of an ONNX file.
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Self, TreeError> {
        let parsed = parse::parse_model(bytes)?;
        let model = build::compile(&parsed.ensemble, parsed.declared_features)?;
        let (is_classifier, classes, aggregate) = match &parsed.ensemble.kind {
            parse::RawKind::Classifier { labels } => (true, labels.clone(), None),
            parse::RawKind::Regressor { aggregate, .. } => (false, Vec::new(), Some(*aggregate)),
        };
        Ok(TreeEnsemble {
            input_name: parsed.input_name,
            outputs: parsed.outputs,
            classes,
            is_classifier,
            aggregate,
            model,
        })
    }

    /// Loads a model from an ONNX file.
    pub fn from_onnx_path(path: impl AsRef<Path>) -> Result<Self, TreeError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TreeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_onnx_bytes(&bytes)
    }

    /// Features per row: the input's declared second dimension, or one more than the largest
    /// feature index a node reads when the dimension is symbolic.
    pub fn n_features(&self) -> usize {
        self.model.n_features
    }

    /// The graph input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The graph's outputs, in graph order.
    pub fn outputs(&self) -> &[ModelOutput] {
        &self.outputs
    }

    /// The graph's output names, in graph order.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(|o| o.name.as_str()).collect()
    }

    /// True for a `TreeEnsembleClassifier`.
    pub fn is_classifier(&self) -> bool {
        self.is_classifier
    }

    /// The class labels (`classlabels_int64s`) of a classifier; empty for a regressor.
    pub fn classes(&self) -> &[i64] {
        &self.classes
    }

    /// Scores per row: classes of a classifier, `n_targets` of a regressor.
    pub fn n_outputs(&self) -> usize {
        self.model.n_out
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.model.trees.len()
    }

    /// Number of nodes reachable from the roots, all trees together.
    pub fn n_nodes(&self) -> usize {
        self.model.nodes.len()
    }

    /// The regressor's aggregate function; `None` for a classifier.
    pub fn aggregate(&self) -> Option<Aggregate> {
        self.aggregate
    }

    /// The post transform.
    pub fn post_transform(&self) -> PostTransform {
        self.model.finalizer.post_transform
    }

    /// Evaluates `n_rows` rows of `rows` (row-major `[n_rows, n_features]`) on up to `threads`
    /// threads (0 counts as 1; small batches use fewer). NaN inputs follow
    /// `nodes_missing_value_tracks_true`. Fails only when `rows` has the wrong length.
    pub fn predict(
        &self,
        rows: &[f32],
        n_rows: usize,
        threads: usize,
    ) -> Result<Prediction, TreeError> {
        let nf = self.model.n_features;
        let shape_error = || TreeError::InputShape {
            n_rows,
            n_features: nf,
            got: rows.len(),
        };
        if n_rows.checked_mul(nf).ok_or_else(shape_error)? != rows.len() {
            return Err(shape_error());
        }
        let n_out = n_rows
            .checked_mul(self.model.n_out)
            .ok_or_else(shape_error)?;
        let mut out = vec![0f32; n_out];
        if self.is_classifier {
            let mut labels = vec![0i64; n_rows];
            eval::eval(
                &self.model,
                rows,
                n_rows,
                threads,
                &mut out,
                Some(&mut labels),
            );
            Ok(Prediction::Classifier {
                labels,
                probabilities: out,
            })
        } else {
            eval::eval(&self.model, rows, n_rows, threads, &mut out, None);
            Ok(Prediction::Regressor { values: out })
        }
    }
}
