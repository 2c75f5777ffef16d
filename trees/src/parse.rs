//! From ONNX bytes to the raw attribute arrays of the one tree-ensemble node, plus the graph's
//! input and outputs. Nothing here interprets the trees; `build` validates and compiles them.

use std::collections::HashMap;

use prost::Message;

use crate::error::TreeError;
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, attr_type, data_type,
};
use crate::{Aggregate, ModelOutput, OutputKind, PostTransform};

const ML_DOMAIN: &str = "ai.onnx.ml";

/// A comparison a branch node makes, or `Leaf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeMode {
    BranchLeq,
    BranchLt,
    BranchGte,
    BranchGt,
    BranchEq,
    BranchNeq,
    Leaf,
}

impl NodeMode {
    /// Whether `x` takes the true branch of a node comparing with threshold `t` (the
    /// operator's definition, NaN aside; `Leaf` never does).
    pub(crate) fn holds(self, x: f32, t: f32) -> bool {
        match self {
            NodeMode::BranchLeq => x <= t,
            NodeMode::BranchLt => x < t,
            NodeMode::BranchGte => x >= t,
            NodeMode::BranchGt => x > t,
            NodeMode::BranchEq => x == t,
            NodeMode::BranchNeq => x != t,
            NodeMode::Leaf => false,
        }
    }
}

/// Classifier- or regressor-specific attributes.
#[derive(Clone, Debug)]
pub(crate) enum RawKind {
    Classifier {
        labels: Vec<i64>,
    },
    Regressor {
        n_targets: usize,
        aggregate: Aggregate,
    },
}

/// The attribute arrays of a TreeEnsembleClassifier / TreeEnsembleRegressor, decoded but not
/// yet checked for consistency.
#[derive(Clone, Debug)]
pub(crate) struct RawEnsemble {
    pub kind: RawKind,
    pub post_transform: PostTransform,
    pub base_values: Vec<f32>,
    pub nodes_treeids: Vec<i64>,
    pub nodes_nodeids: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    pub nodes_modes: Vec<NodeMode>,
    pub nodes_values: Vec<f32>,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_falsenodeids: Vec<i64>,
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// `class_*` for a classifier, `target_*` for a regressor.
    pub w_treeids: Vec<i64>,
    pub w_nodeids: Vec<i64>,
    pub w_ids: Vec<i64>,
    pub w_weights: Vec<f32>,
}

/// What the graph around the tree node looks like.
#[derive(Clone, Debug)]
pub(crate) struct ParsedModel {
    pub input_name: String,
    /// The second dimension of the input when the graph states it.
    pub declared_features: Option<usize>,
    pub outputs: Vec<ModelOutput>,
    pub ensemble: RawEnsemble,
}

pub(crate) fn parse_model(bytes: &[u8]) -> Result<ParsedModel, TreeError> {
    let model = ModelProto::decode(bytes).map_err(|e| TreeError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(TreeError::MissingGraph)?;
    parse_graph(graph)
}

fn op_list(graph: &GraphProto) -> Vec<String> {
    graph
        .node
        .iter()
        .map(|n| {
            if n.domain.is_empty() {
                n.op_type.clone()
            } else {
                format!("{}:{}", n.domain, n.op_type)
            }
        })
        .collect()
}

fn is_tree_op(node: &NodeProto) -> bool {
    node.domain == ML_DOMAIN
        && matches!(
            node.op_type.as_str(),
            "TreeEnsembleClassifier" | "TreeEnsembleRegressor" | "TreeEnsemble"
        )
}

/// Which output of the tree node a value name stands for, once no-op nodes are looked through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alias {
    Label,
    Scores,
}

fn parse_graph(graph: &GraphProto) -> Result<ParsedModel, TreeError> {
    let not_lone = |detail: String| TreeError::NotALoneTreeEnsemble {
        ops: op_list(graph),
        detail,
    };

    let tree_nodes: Vec<usize> = (0..graph.node.len())
        .filter(|&i| is_tree_op(&graph.node[i]))
        .collect();
    let tree_idx = match tree_nodes.as_slice() {
        [] => {
            return Err(not_lone(
                "no TreeEnsembleClassifier or TreeEnsembleRegressor node".into(),
            ));
        }
        [one] => *one,
        _ => {
            return Err(not_lone(format!(
                "{} tree-ensemble nodes",
                tree_nodes.len()
            )));
        }
    };
    let tree = &graph.node[tree_idx];
    if tree.op_type == "TreeEnsemble" {
        return Err(TreeError::Unsupported(
            "the ai.onnx.ml opset-5 TreeEnsemble operator is not implemented".into(),
        ));
    }
    let is_classifier = tree.op_type == "TreeEnsembleClassifier";
    if tree.input.len() != 1 {
        return Err(not_lone(format!(
            "the tree node has {} inputs",
            tree.input.len()
        )));
    }

    // Value names that stand for the tree node's outputs, through no-op nodes.
    let mut alias: HashMap<&str, Alias> = HashMap::new();
    if is_classifier {
        if let Some(l) = tree.output.first().filter(|s| !s.is_empty()) {
            alias.insert(l, Alias::Label);
        }
        if let Some(z) = tree.output.get(1).filter(|s| !s.is_empty()) {
            alias.insert(z, Alias::Scores);
        }
        if tree.output.len() > 2 {
            return Err(not_lone(
                "the classifier node has more than 2 outputs".into(),
            ));
        }
    } else {
        match tree.output.as_slice() {
            [y] if !y.is_empty() => {
                alias.insert(y, Alias::Scores);
            }
            _ => {
                return Err(not_lone(
                    "the regressor node must have exactly 1 output".into(),
                ));
            }
        }
    }

    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();

    for (i, node) in graph.node.iter().enumerate() {
        if i == tree_idx {
            continue;
        }
        let (target, source) = no_op_node(node, &alias, &initializers).ok_or_else(|| {
            not_lone(format!(
                "node {:?} ({}) is not a no-op on the tree ensemble's outputs",
                node.name, node.op_type
            ))
        })?;
        alias.insert(target, source);
    }

    // The one real input.
    let real_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|v| !initializers.contains_key(v.name.as_str()))
        .collect();
    let input = match real_inputs.as_slice() {
        [one] => *one,
        _ => {
            return Err(not_lone(format!(
                "the graph has {} inputs (expected 1)",
                real_inputs.len()
            )));
        }
    };
    if input.name != tree.input[0] {
        return Err(not_lone(format!(
            "the tree node reads {:?}, not the graph input {:?}",
            tree.input[0], input.name
        )));
    }
    let mut declared_features = None;
    if let Some(tt) = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) {
        if tt.elem_type != data_type::FLOAT {
            return Err(TreeError::Unsupported(format!(
                "input element type {} (only float is supported)",
                tt.elem_type
            )));
        }
        if let Some(shape) = &tt.shape {
            if shape.dim.len() != 2 {
                return Err(TreeError::Unsupported(format!(
                    "input of rank {} (only [rows, features] is supported)",
                    shape.dim.len()
                )));
            }
            if let Some(v) = shape.dim[1].dim_value {
                if v > 0 {
                    declared_features = Some(
                        usize::try_from(v)
                            .map_err(|_| TreeError::Unsupported(format!("{v} input features")))?,
                    );
                }
            }
        }
    } else {
        return Err(TreeError::Unsupported(
            "the graph input is not a tensor".into(),
        ));
    }

    let mut outputs = Vec::with_capacity(graph.output.len());
    for o in &graph.output {
        let kind = match alias.get(o.name.as_str()) {
            Some(Alias::Label) => OutputKind::Label,
            Some(Alias::Scores) if is_classifier => OutputKind::Probabilities,
            Some(Alias::Scores) => OutputKind::Values,
            None => {
                return Err(not_lone(format!(
                    "graph output {:?} is not an output of the tree node",
                    o.name
                )));
            }
        };
        outputs.push(ModelOutput {
            name: o.name.clone(),
            kind,
        });
    }
    if outputs.is_empty() {
        return Err(not_lone("the graph has no output".into()));
    }

    let ensemble = parse_attributes(tree, is_classifier)?;
    Ok(ParsedModel {
        input_name: input.name.clone(),
        declared_features,
        outputs,
        ensemble,
    })
}

/// A node that passes one of the tree node's outputs through unchanged: `Identity`; `Cast` to
/// the type it already has (int64 label, float scores); `Mul` or `Div` of the scores by a
/// one-element constant initializer equal to 1 (what onnxmltools appends after LightGBM).
/// Returns the node's output name and what it stands for.
fn no_op_node<'a>(
    node: &'a NodeProto,
    alias: &HashMap<&str, Alias>,
    initializers: &HashMap<&str, &TensorProto>,
) -> Option<(&'a str, Alias)> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") || node.output.len() != 1 {
        return None;
    }
    let out = node.output[0].as_str();
    if out.is_empty() {
        return None;
    }
    let src = |i: usize| {
        node.input
            .get(i)
            .and_then(|n| alias.get(n.as_str()))
            .copied()
    };
    match (node.op_type.as_str(), node.input.len()) {
        ("Identity", 1) => src(0).map(|a| (out, a)),
        ("Cast", 1) => {
            let a = src(0)?;
            let to = node.attribute.iter().find(|at| at.name == "to")?.i;
            let same = match a {
                Alias::Label => to == i64::from(data_type::INT64),
                Alias::Scores => to == i64::from(data_type::FLOAT),
            };
            same.then_some((out, a))
        }
        ("Mul", 2) | ("Div", 2) => {
            let (a, other) = match (src(0), src(1)) {
                (Some(Alias::Scores), None) => (Alias::Scores, &node.input[1]),
                (None, Some(Alias::Scores)) if node.op_type == "Mul" => {
                    (Alias::Scores, &node.input[0])
                }
                _ => return None,
            };
            let t = initializers.get(other.as_str())?;
            is_float_one(t).then_some((out, a))
        }
        _ => None,
    }
}

fn is_float_one(t: &TensorProto) -> bool {
    if t.data_type != data_type::FLOAT || t.data_location != 0 {
        return false;
    }
    if t.dims.iter().any(|&d| d != 1) {
        return false;
    }
    let values = if !t.raw_data.is_empty() {
        match <[u8; 4]>::try_from(t.raw_data.as_slice()) {
            Ok(b) => vec![f32::from_le_bytes(b)],
            Err(_) => return false,
        }
    } else {
        t.float_data.clone()
    };
    values.len() == 1 && values[0] == 1.0
}

/// Typed access to a node's attributes by name.
struct Attrs<'a> {
    by_name: HashMap<&'a str, &'a AttributeProto>,
}

fn bad(name: &str, detail: impl Into<String>) -> TreeError {
    TreeError::InvalidAttribute {
        name: name.to_string(),
        detail: detail.into(),
    }
}

impl<'a> Attrs<'a> {
    fn new(node: &'a NodeProto) -> Result<Self, TreeError> {
        let mut by_name = HashMap::new();
        for a in &node.attribute {
            if by_name.insert(a.name.as_str(), a).is_some() {
                return Err(bad(&a.name, "given twice"));
            }
        }
        Ok(Attrs { by_name })
    }

    fn get(&self, name: &str, expected: i32) -> Result<Option<&'a AttributeProto>, TreeError> {
        match self.by_name.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == expected || a.r#type == 0 => Ok(Some(a)),
            Some(a) => Err(bad(
                name,
                format!("has attribute type {} (expected {expected})", a.r#type),
            )),
        }
    }

    fn ints(&self, name: &str) -> Result<Vec<i64>, TreeError> {
        Ok(self
            .get(name, attr_type::INTS)?
            .map(|a| a.ints.clone())
            .unwrap_or_default())
    }

    fn floats(&self, name: &str) -> Result<Vec<f32>, TreeError> {
        Ok(self
            .get(name, attr_type::FLOATS)?
            .map(|a| a.floats.clone())
            .unwrap_or_default())
    }

    fn int(&self, name: &str) -> Result<Option<i64>, TreeError> {
        Ok(self.get(name, attr_type::INT)?.map(|a| a.i))
    }

    fn string(&self, name: &str) -> Result<Option<String>, TreeError> {
        match self.get(name, attr_type::STRING)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| bad(name, "is not UTF-8")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, TreeError> {
        match self.get(name, attr_type::STRINGS)? {
            None => Ok(Vec::new()),
            Some(a) => a
                .strings
                .iter()
                .map(|s| String::from_utf8(s.clone()).map_err(|_| bad(name, "is not UTF-8")))
                .collect(),
        }
    }

    /// A float tensor attribute (`*_as_tensor`) flattened.
    fn float_tensor(&self, name: &str) -> Result<Vec<f32>, TreeError> {
        let Some(a) = self.get(name, attr_type::TENSOR)? else {
            return Ok(Vec::new());
        };
        let Some(t) = a.t.as_ref() else {
            return Err(bad(name, "has no tensor value"));
        };
        if t.data_location != 0 {
            return Err(TreeError::Unsupported(format!(
                "attribute {name} keeps its data in an external file"
            )));
        }
        match t.data_type {
            data_type::FLOAT => {}
            data_type::DOUBLE => {
                return Err(TreeError::Unsupported(format!(
                    "attribute {name} is a double tensor (double-precision trees need a double \
                     input, which is not supported)"
                )));
            }
            other => return Err(bad(name, format!("has tensor data type {other}"))),
        }
        let n: usize = t
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .ok_or_else(|| bad(name, "has a negative or overflowing dimension"))?;
        let values: Vec<f32> = if !t.raw_data.is_empty() {
            if t.raw_data.len() % 4 != 0 {
                return Err(bad(name, "raw data length is not a multiple of 4"));
            }
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            t.float_data.clone()
        };
        if values.len() != n {
            return Err(bad(
                name,
                format!("holds {} values for dims {:?}", values.len(), t.dims),
            ));
        }
        Ok(values)
    }

    /// `name` (floats) or `name_as_tensor` (a float tensor), not both.
    fn floats_or_tensor(&self, name: &str) -> Result<Vec<f32>, TreeError> {
        let tensor_name = format!("{name}_as_tensor");
        let plain = self.floats(name)?;
        let tensor = self.float_tensor(&tensor_name)?;
        match (plain.is_empty(), tensor.is_empty()) {
            (_, true) => Ok(plain),
            (true, false) => Ok(tensor),
            (false, false) => Err(bad(name, format!("given together with {tensor_name}"))),
        }
    }
}

fn parse_mode(s: &str) -> Option<NodeMode> {
    Some(match s {
        "BRANCH_LEQ" => NodeMode::BranchLeq,
        "BRANCH_LT" => NodeMode::BranchLt,
        "BRANCH_GTE" => NodeMode::BranchGte,
        "BRANCH_GT" => NodeMode::BranchGt,
        "BRANCH_EQ" => NodeMode::BranchEq,
        "BRANCH_NEQ" => NodeMode::BranchNeq,
        "LEAF" => NodeMode::Leaf,
        _ => return None,
    })
}

fn parse_attributes(node: &NodeProto, is_classifier: bool) -> Result<RawEnsemble, TreeError> {
    let attrs = Attrs::new(node)?;

    let post_transform = match attrs.string("post_transform")?.as_deref() {
        None | Some("NONE") => PostTransform::None,
        Some("LOGISTIC") => PostTransform::Logistic,
        Some("SOFTMAX") => PostTransform::Softmax,
        Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
        Some("PROBIT") => PostTransform::Probit,
        Some(other) => return Err(bad("post_transform", format!("unknown value {other:?}"))),
    };

    let modes = attrs
        .strings("nodes_modes")?
        .iter()
        .map(|s| parse_mode(s).ok_or_else(|| bad("nodes_modes", format!("unknown mode {s:?}"))))
        .collect::<Result<Vec<_>, _>>()?;

    // Hit rates are not used for inference, but a present one must be well formed.
    let _ = attrs.floats_or_tensor("nodes_hitrates")?;

    let (kind, prefix, weights_name) = if is_classifier {
        let strings = attrs.strings("classlabels_strings")?;
        let ints = attrs.ints("classlabels_int64s")?;
        if !strings.is_empty() {
            if !ints.is_empty() {
                return Err(bad(
                    "classlabels_strings",
                    "given together with classlabels_int64s",
                ));
            }
            return Err(TreeError::Unsupported(
                "string class labels (classlabels_strings)".into(),
            ));
        }
        (
            RawKind::Classifier { labels: ints },
            "class",
            "class_weights",
        )
    } else {
        let n_targets = attrs
            .int("n_targets")?
            .ok_or_else(|| bad("n_targets", "missing"))?;
        let n_targets = usize::try_from(n_targets)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("n_targets", format!("{n_targets} is out of range")))?;
        let aggregate = match attrs.string("aggregate_function")?.as_deref() {
            None | Some("SUM") => Aggregate::Sum,
            Some("AVERAGE") => Aggregate::Average,
            Some("MIN") => Aggregate::Min,
            Some("MAX") => Aggregate::Max,
            Some(other) => {
                return Err(bad(
                    "aggregate_function",
                    format!("unknown value {other:?}"),
                ));
            }
        };
        (
            RawKind::Regressor {
                n_targets,
                aggregate,
            },
            "target",
            "target_weights",
        )
    };

    let w_ids = attrs.ints(&format!("{prefix}_ids"))?;
    let w_nodeids = attrs.ints(&format!("{prefix}_nodeids"))?;
    let w_treeids = attrs.ints(&format!("{prefix}_treeids"))?;
    let w_weights = attrs.floats_or_tensor(weights_name)?;

    Ok(RawEnsemble {
        kind,
        post_transform,
        base_values: attrs.floats_or_tensor("base_values")?,
        nodes_treeids: attrs.ints("nodes_treeids")?,
        nodes_nodeids: attrs.ints("nodes_nodeids")?,
        nodes_featureids: attrs.ints("nodes_featureids")?,
        nodes_modes: modes,
        nodes_values: attrs.floats_or_tensor("nodes_values")?,
        nodes_truenodeids: attrs.ints("nodes_truenodeids")?,
        nodes_falsenodeids: attrs.ints("nodes_falsenodeids")?,
        nodes_missing_value_tracks_true: attrs.ints("nodes_missing_value_tracks_true")?,
        w_treeids,
        w_nodeids,
        w_ids,
        w_weights,
    })
}
