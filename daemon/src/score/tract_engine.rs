//! The general ONNX engine: tract, with the model's declared input types and a symbolic
//! batch dimension, optimised once at load.

use std::path::Path;

use coffer_models::{Datatype, TensorSpec};
use tract_onnx::prelude::*;

use super::engine::{EngineError, ScoreEngine};
use super::tensor::{Tensor as CofferTensor, TensorData};

type Plan = std::sync::Arc<TypedRunnableModel>;

/// A tract plan for one model version.
#[derive(Debug)]
pub struct TractEngine {
    plan: Plan,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn datum_type(d: Datatype) -> DatumType {
    match d {
        Datatype::Fp32 => f32::datum_type(),
        Datatype::Fp64 => f64::datum_type(),
        Datatype::Int32 => i32::datum_type(),
        Datatype::Int64 => i64::datum_type(),
        Datatype::Bool => bool::datum_type(),
    }
}

fn load_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Load {
        path: path.display().to_string(),
        detail: format!("{e:#}"),
    }
}

impl TractEngine {
    /// Loads `path`, types its inputs from the manifest, checks the outputs' names and
    /// types, and optimises once with a symbolic batch.
    pub fn load(
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Self, EngineError> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| load_err(path, e))?;
        if model.input_outlets().map_err(|e| load_err(path, e))?.len() != inputs.len() {
            return Err(EngineError::Schema(format!(
                "the ONNX graph has {} inputs, the manifest declares {}",
                model.inputs.len(),
                inputs.len()
            )));
        }
        let batch = model.symbols.sym("N");
        for (i, spec) in inputs.iter().enumerate() {
            let node_name = model.node(model.inputs[i].node).name.clone();
            if node_name != spec.name {
                return Err(EngineError::Schema(format!(
                    "input {i} is {node_name:?} in the graph but {:?} in the manifest",
                    spec.name
                )));
            }
            let mut dims: TVec<TDim> = tvec![batch.to_dim()];
            dims.extend(spec.shape.iter().skip(1).map(|&d| (d as usize).to_dim()));
            model
                .set_input_fact(i, InferenceFact::dt_shape(datum_type(spec.datatype), dims))
                .map_err(|e| load_err(path, e))?;
        }
        let typed = model.into_typed().map_err(|e| load_err(path, e))?;
        let graph_outputs = typed
            .output_outlets()
            .map_err(|e| load_err(path, e))?
            .to_vec();
        if graph_outputs.len() != outputs.len() {
            return Err(EngineError::Schema(format!(
                "the ONNX graph has {} outputs, the manifest declares {}",
                graph_outputs.len(),
                outputs.len()
            )));
        }
        for (outlet, spec) in graph_outputs.iter().zip(outputs) {
            let label = typed
                .outlet_label(*outlet)
                .map(str::to_string)
                .unwrap_or_else(|| typed.node(outlet.node).name.clone());
            if label != spec.name {
                return Err(EngineError::Schema(format!(
                    "output {label:?} in the graph, {:?} in the manifest",
                    spec.name
                )));
            }
            let fact = typed.outlet_fact(*outlet).map_err(|e| load_err(path, e))?;
            if fact.datum_type != datum_type(spec.datatype) {
                return Err(EngineError::Schema(format!(
                    "output {:?} is {:?} in the graph, {} in the manifest",
                    spec.name, fact.datum_type, spec.datatype
                )));
            }
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(path, e))?;
        Ok(Self {
            plan,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }
}

/// Moves the buffer into a tract tensor (no copy).
fn to_tract(t: CofferTensor) -> Result<Tensor, EngineError> {
    let shape = t.shape.as_slice();
    let result = match t.data {
        TensorData::F32(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v).map(Tensor::from),
        TensorData::F64(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v).map(Tensor::from),
        TensorData::I32(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v).map(Tensor::from),
        TensorData::I64(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v).map(Tensor::from),
        TensorData::Bool(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v).map(Tensor::from),
    };
    result.map_err(|e| EngineError::Run(format!("input {:?}: {e}", t.name)))
}

fn from_tract(name: &str, datatype: Datatype, t: &Tensor) -> Result<CofferTensor, EngineError> {
    let err = |e: TractError| EngineError::Run(format!("output {name:?}: {e}"));
    let view = t.try_as_plain_ram().map_err(err)?;
    let data = match datatype {
        Datatype::Fp32 => TensorData::F32(view.as_slice::<f32>().map_err(err)?.to_vec()),
        Datatype::Fp64 => TensorData::F64(view.as_slice::<f64>().map_err(err)?.to_vec()),
        Datatype::Int32 => TensorData::I32(view.as_slice::<i32>().map_err(err)?.to_vec()),
        Datatype::Int64 => TensorData::I64(view.as_slice::<i64>().map_err(err)?.to_vec()),
        Datatype::Bool => TensorData::Bool(view.as_slice::<bool>().map_err(err)?.to_vec()),
    };
    Ok(CofferTensor {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        data,
    })
}

impl ScoreEngine for TractEngine {
    fn platform(&self) -> &'static str {
        "onnx-tract"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(
        &self,
        inputs: Vec<CofferTensor>,
        _rows: usize,
    ) -> Result<Vec<CofferTensor>, EngineError> {
        let values: TVec<TValue> = inputs
            .into_iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<_, _>>()?;
        let results = self
            .plan
            .run(values)
            .map_err(|e| EngineError::Run(format!("{e:#}")))?;
        results
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| from_tract(&spec.name, spec.datatype, value))
            .collect()
    }
}
