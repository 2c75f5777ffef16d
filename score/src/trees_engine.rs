//! The engine for ONNX graphs that are a lone `ai.onnx.ml` tree-ensemble node (how
//! scikit-learn, LightGBM and XGBoost scorecards export): evaluated natively by
//! `coffer-trees`, which is hundreds of times faster than tract's generic operator.
//! Other graphs are left to tract.

use std::path::Path;

use coffer_models::{Datatype, TensorSpec};
use coffer_trees::{OutputKind, Prediction, TreeEnsemble};

use crate::engine::{EngineError, ScoreEngine};
use crate::tensor::{Tensor, TensorData};

/// A tree ensemble checked against the manifest's schema.
#[derive(Debug)]
pub struct TreesEngine {
    model: TreeEnsemble,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    threads: usize,
}

impl TreesEngine {
    /// `Ok(None)` when the graph is not a lone tree ensemble (tract's job).
    pub fn load(
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        threads: usize,
    ) -> Result<Option<Self>, EngineError> {
        let model = match TreeEnsemble::from_onnx_path(path) {
            Ok(m) => m,
            // Not a lone tree ensemble, or one this evaluator does not cover (string
            // labels, double inputs, ...): tract's job.
            Err(e) if e.is_not_applicable() => return Ok(None),
            Err(e) => {
                return Err(EngineError::Load {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                });
            }
        };
        let [input] = inputs else {
            return Err(EngineError::Schema(format!(
                "a tree ensemble has one input, the manifest declares {}",
                inputs.len()
            )));
        };
        if input.name != model.input_name()
            || input.datatype != Datatype::Fp32
            || input.row_elements() != model.n_features()
        {
            return Err(EngineError::Schema(format!(
                "the graph's input is {:?} FP32 with {} features, the manifest declares {:?} {} with {}",
                model.input_name(),
                model.n_features(),
                input.name,
                input.datatype,
                input.row_elements()
            )));
        }
        if outputs.len() != model.outputs().len() {
            return Err(EngineError::Schema(format!(
                "the graph has {} outputs, the manifest declares {}",
                model.outputs().len(),
                outputs.len()
            )));
        }
        for (graph, spec) in model.outputs().iter().zip(outputs) {
            let datatype = if graph.kind == OutputKind::Label {
                Datatype::Int64
            } else {
                Datatype::Fp32
            };
            if graph.name != spec.name || datatype != spec.datatype {
                return Err(EngineError::Schema(format!(
                    "output {:?} ({datatype}) in the graph, {:?} ({}) in the manifest",
                    graph.name, spec.name, spec.datatype
                )));
            }
        }
        Ok(Some(Self {
            model,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            threads: threads.max(1),
        }))
    }
}

impl ScoreEngine for TreesEngine {
    fn platform(&self) -> &'static str {
        "onnx-trees"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<Tensor>, rows: usize) -> Result<Vec<Tensor>, EngineError> {
        let Some(Tensor {
            data: TensorData::F32(x),
            ..
        }) = inputs.first()
        else {
            return Err(EngineError::Run(
                "a tree ensemble takes one FP32 input".into(),
            ));
        };
        let prediction = self
            .model
            .predict(x, rows, self.threads)
            .map_err(|e| EngineError::Run(e.to_string()))?;
        let tensor = |spec: &TensorSpec, data: TensorData| {
            let width = spec.row_elements();
            let shape = if spec.shape.len() == 1 {
                vec![rows]
            } else {
                vec![rows, width]
            };
            Tensor {
                name: spec.name.clone(),
                shape,
                data,
            }
        };
        let mut result = Vec::with_capacity(self.outputs.len());
        match prediction {
            Prediction::Classifier {
                labels,
                probabilities,
            } => {
                let mut labels = Some(labels);
                let mut probabilities = Some(probabilities);
                for (graph, spec) in self.model.outputs().iter().zip(&self.outputs) {
                    let data = match graph.kind {
                        OutputKind::Label => TensorData::I64(labels.take().unwrap_or_default()),
                        _ => TensorData::F32(probabilities.take().unwrap_or_default()),
                    };
                    result.push(tensor(spec, data));
                }
            }
            Prediction::Regressor { values } => {
                if let Some(spec) = self.outputs.first() {
                    result.push(tensor(spec, TensorData::F32(values)));
                }
            }
        }
        Ok(result)
    }
}
