//! The general ONNX engine: tract, with the model's declared input types and a symbolic
//! batch dimension, optimised once at load. Plans specialised to a fixed batch run 1.5–2.5×
//! faster than the symbolic one, so batches are padded up to the next power of two and run
//! on a plan made for that size (built on first use, at most log2(max_batch)+1 of them,
//! batch 1 at load); the symbolic plan is the fallback.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use coffer_models::{Datatype, TensorSpec};
use tract_onnx::prelude::*;

use crate::engine::{EngineError, ScoreEngine};
use crate::tensor::{Tensor as CofferTensor, TensorData};

type Plan = std::sync::Arc<TypedRunnableModel>;

/// A tract plan for one model version.
#[derive(Debug)]
pub struct TractEngine {
    plan: Plan,
    typed: TypedModel,
    batch: Symbol,
    max_batch: usize,
    /// Plans for fixed batch sizes; `None` when specialising that size failed.
    fixed: Mutex<HashMap<usize, Option<Plan>>>,
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
        max_batch: usize,
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
            .clone()
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(path, e))?;
        let engine = Self {
            plan,
            typed,
            batch,
            max_batch: max_batch.max(1),
            fixed: Mutex::new(HashMap::new()),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        };
        engine.fixed_plan(1);
        Ok(engine)
    }

    /// The plan specialised to `size` rows, made on first use.
    fn fixed_plan(&self, size: usize) -> Option<Plan> {
        let mut fixed = self.fixed.lock().unwrap_or_else(|e| e.into_inner());
        fixed
            .entry(size)
            .or_insert_with(|| {
                let subs = HashMap::from([(self.batch.clone(), TDim::from(size as i64))]);
                let made = self
                    .typed
                    .set_symbols(&subs)
                    .and_then(|m| m.into_optimized())
                    .and_then(|m| m.into_runnable());
                match made {
                    Ok(plan) => Some(plan),
                    Err(e) => {
                        tracing::warn!(size, error = %format!("{e:#}"), "cannot specialise the plan; using the symbolic one");
                        None
                    }
                }
            })
            .clone()
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
        mut inputs: Vec<CofferTensor>,
        rows: usize,
    ) -> Result<Vec<CofferTensor>, EngineError> {
        let bucket = rows.next_power_of_two().min(self.max_batch).max(rows);
        let (plan, padded) = match self.fixed_plan(bucket) {
            Some(plan) => (plan, bucket),
            None => (self.plan.clone(), rows),
        };
        if padded > rows {
            inputs.iter_mut().for_each(|t| pad_rows(t, rows, padded));
        }
        let values: TVec<TValue> = inputs
            .into_iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<_, _>>()?;
        let results = plan
            .run(values)
            .map_err(|e| EngineError::Run(format!("{e:#}")))?;
        results
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| {
                let out = from_tract(&spec.name, spec.datatype, value)?;
                Ok(if padded > rows {
                    out.rows_slice(0, rows)
                } else {
                    out
                })
            })
            .collect()
    }
}

/// Extends a batch to `to` rows by repeating its last row (values the model accepts).
fn pad_rows(t: &mut CofferTensor, rows: usize, to: usize) {
    let width = t.row_len();
    let last = t.data.slice((rows - 1) * width, rows * width);
    for _ in rows..to {
        t.data.extend_from(&last);
    }
    if let Some(first) = t.shape.first_mut() {
        *first = to;
    }
}
