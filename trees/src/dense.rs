//! Reads the weights of a plain dense network from an ONNX graph: a chain of
//! `MatMul(x, W)`, `Add(., b)` and `Relu` between layers, ending in an optional `Sigmoid`,
//! with every weight a float initializer. Explainers use it to see the served model's
//! parameters (a logistic regression is one such layer), not a copy shipped beside it.

use prost::Message;

use crate::error::TreeError;
use crate::proto::{GraphProto, ModelProto, TensorProto, data_type};

/// One layer: `y = x W + b`, then ReLU unless it is the last.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// `inputs x outputs`, row-major.
    pub weights: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
    pub bias: Vec<f32>,
}

/// The network: layers in order, and whether a sigmoid ends it.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNetwork {
    pub layers: Vec<DenseLayer>,
    pub sigmoid: bool,
}

fn unsupported(detail: impl Into<String>) -> TreeError {
    TreeError::Unsupported(format!("not a plain dense network: {}", detail.into()))
}

fn floats(t: &TensorProto) -> Result<Vec<f32>, TreeError> {
    if t.data_type != data_type::FLOAT || t.data_location != 0 {
        return Err(unsupported(format!(
            "initializer {} is not inline FLOAT",
            t.name
        )));
    }
    if t.raw_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if t.raw_data.len() % 4 != 0 {
        return Err(unsupported(format!(
            "initializer {} has a partial float",
            t.name
        )));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl DenseNetwork {
    /// Decodes the graph; anything other than the chain above is `Unsupported`.
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<DenseNetwork, TreeError> {
        let model = ModelProto::decode(bytes).map_err(|e| TreeError::Decode(e.to_string()))?;
        let graph = model.graph.ok_or(TreeError::MissingGraph)?;
        Self::from_graph(&graph)
    }

    fn from_graph(graph: &GraphProto) -> Result<DenseNetwork, TreeError> {
        let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let [input] = graph
            .input
            .iter()
            .filter(|i| init(&i.name).is_none())
            .collect::<Vec<_>>()[..]
        else {
            return Err(unsupported("the graph has more than one input"));
        };
        let mut current = input.name.clone();
        let mut layers: Vec<DenseLayer> = Vec::new();
        let mut sigmoid = false;
        let mut pending: Option<DenseLayer> = None;
        for node in &graph.node {
            if node.input.first() != Some(&current) || node.output.len() != 1 {
                return Err(unsupported(format!(
                    "node {} is not on the chain",
                    node.name
                )));
            }
            if sigmoid {
                return Err(unsupported("a node follows the sigmoid"));
            }
            let operand = || {
                node.input.get(1).and_then(|n| init(n)).ok_or_else(|| {
                    unsupported(format!("{} has no initializer operand", node.op_type))
                })
            };
            match node.op_type.as_str() {
                "MatMul" if pending.is_none() => {
                    let w = operand()?;
                    let [rows, cols] = w.dims[..] else {
                        return Err(unsupported("a MatMul weight is not a matrix"));
                    };
                    let (inputs, outputs) = (rows.max(0) as usize, cols.max(0) as usize);
                    let weights = floats(w)?;
                    if weights.len() != inputs * outputs
                        || layers.last().is_some_and(|l| l.outputs != inputs)
                    {
                        return Err(unsupported("layer shapes do not chain"));
                    }
                    pending = Some(DenseLayer {
                        weights,
                        inputs,
                        outputs,
                        bias: vec![0.0; outputs],
                    });
                }
                "Add" if pending.is_some() => {
                    let b = floats(operand()?)?;
                    let layer = pending.as_mut().ok_or_else(|| unsupported("Add"))?;
                    if b.len() != layer.outputs {
                        return Err(unsupported("a bias does not match its layer"));
                    }
                    layer.bias = b;
                }
                "Relu" if pending.is_some() => {
                    layers.extend(pending.take());
                }
                "Sigmoid" => {
                    layers.extend(pending.take());
                    sigmoid = true;
                }
                other => return Err(unsupported(format!("op {other}"))),
            }
            current = node.output[0].clone();
        }
        layers.extend(pending.take());
        if layers.is_empty() {
            return Err(unsupported("no layer"));
        }
        Ok(DenseNetwork { layers, sigmoid })
    }

    /// The network's output before the sigmoid, in f64 over the f32 weights.
    pub fn margin(&self, x: &[f64]) -> Vec<f64> {
        let mut a = x.to_vec();
        for (k, layer) in self.layers.iter().enumerate() {
            let mut y: Vec<f64> = layer.bias.iter().map(|&b| f64::from(b)).collect();
            for (i, &xi) in a.iter().enumerate().take(layer.inputs) {
                let row = &layer.weights[i * layer.outputs..(i + 1) * layer.outputs];
                for (yj, &w) in y.iter_mut().zip(row) {
                    *yj += xi * f64::from(w);
                }
            }
            if k + 1 < self.layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            a = y;
        }
        a
    }
}
