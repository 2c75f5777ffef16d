//! Path-dependent TreeSHAP (Lundberg, Erion and Lee 2018, "Consistent individualized
//! feature attribution for tree ensembles", Algorithm 2): exact Shapley values of one
//! class's raw score (before the post-transform) of a tree ensemble, where a feature left
//! out of a coalition is integrated out along the tree with the training rows' node
//! covers. Polynomial time: O(trees x leaves x depth^2) per row, no background sample.
//!
//! The trees are read from the same ONNX node as the evaluator reads, so the
//! explanation describes the served model; the covers (training rows through each node)
//! are not in an ONNX file and come from the release. Shallow ensembles are explained
//! from per-leaf tables built once from the same arithmetic (`table.rs`); deeper ones
//! by the recursion here.

use std::collections::HashMap;

use crate::error::TreeError;
use crate::parse::{NodeMode, RawKind, parse_model};

mod table;

#[derive(Clone, Copy, Debug)]
struct Node {
    feature: usize,
    threshold: f32,
    mode: NodeMode,
    missing_true: bool,
    yes: usize,
    no: usize,
    /// Leaves: the class's weight.
    value: f64,
    cover: f64,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.mode == NodeMode::Leaf
    }

    fn goes_true(&self, x: f32) -> bool {
        if x.is_nan() {
            return self.missing_true;
        }
        self.mode.holds(x, self.threshold)
    }
}

/// The depth of a tree whose nodes are in breadth-first order (children after parents).
fn depth_of(nodes: &[Node]) -> usize {
    let mut depth = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if !n.is_leaf() {
            depth[n.yes] = depth[i] + 1;
            depth[n.no] = depth[i] + 1;
        }
    }
    depth.into_iter().max().unwrap_or(0)
}

/// Deepest tree explained: the recursion and its path buffer grow with the depth.
const MAX_DEPTH: usize = 64;

/// One element of the path of unique features (the paper's `m`).
#[derive(Clone, Copy, Debug)]
struct PathElement {
    /// `usize::MAX` for the root's placeholder.
    feature: usize,
    zero: f64,
    one: f64,
    weight: f64,
}

/// A tree ensemble with node covers, ready to explain rows.
#[derive(Debug, Clone)]
pub struct TreeShap {
    /// Each tree's nodes, the root first.
    trees: Vec<Vec<Node>>,
    n_features: usize,
    /// The class's base value (added to every row's score; credited to no feature).
    base: f64,
    expected: f64,
    /// The deepest tree's depth (root to deepest leaf, in edges).
    max_depth: usize,
    /// Every leaf's shares by the row's path pattern, when small enough to keep.
    tables: Option<table::Tables>,
}

fn invalid(detail: impl Into<String>) -> TreeError {
    TreeError::InvalidTree(detail.into())
}

impl TreeShap {
    /// Reads the ensemble of an ONNX file and explains output column `class` (a
    /// classifier's class index, a regressor's target). `covers[t][node id]` is the
    /// training weight through node `node id` of the `t`-th tree (trees in ascending tree
    /// id); a parent's cover must be the sum of its children's.
    pub fn from_onnx_bytes(
        bytes: &[u8],
        class: usize,
        covers: &[Vec<f64>],
    ) -> Result<TreeShap, TreeError> {
        let parsed = parse_model(bytes)?;
        let e = &parsed.ensemble;
        let n_classes = match &e.kind {
            RawKind::Classifier { labels } => labels.len(),
            RawKind::Regressor { n_targets, .. } => *n_targets,
        };
        if class >= n_classes.max(1) {
            return Err(invalid(format!(
                "output column {class} is not one of {n_classes}"
            )));
        }
        let mut tree_ids: Vec<i64> = e.nodes_treeids.clone();
        tree_ids.sort_unstable();
        tree_ids.dedup();
        if tree_ids.len() != covers.len() {
            return Err(invalid(format!(
                "{} trees but covers for {}",
                tree_ids.len(),
                covers.len()
            )));
        }
        let tree_index: HashMap<i64, usize> =
            tree_ids.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        // (tree, node id) -> position in the node arrays
        let mut position: HashMap<(usize, i64), usize> = HashMap::new();
        for (i, (&t, &n)) in e.nodes_treeids.iter().zip(&e.nodes_nodeids).enumerate() {
            if position.insert((tree_index[&t], n), i).is_some() {
                return Err(invalid(format!("tree {t} has node {n} twice")));
            }
        }
        let mut leaf_value: HashMap<(usize, i64), f64> = HashMap::new();
        for (((&t, &n), &id), &w) in e
            .w_treeids
            .iter()
            .zip(&e.w_nodeids)
            .zip(&e.w_ids)
            .zip(&e.w_weights)
        {
            if id == class as i64 {
                let tree = *tree_index
                    .get(&t)
                    .ok_or_else(|| invalid(format!("a weight names tree {t}")))?;
                *leaf_value.entry((tree, n)).or_default() += f64::from(w);
            }
        }
        let mut n_features = parsed.declared_features.unwrap_or(0);
        let mut trees = Vec::with_capacity(tree_ids.len());
        for (t, tree_covers) in covers.iter().enumerate() {
            let ids: Vec<i64> = e
                .nodes_treeids
                .iter()
                .zip(&e.nodes_nodeids)
                .filter(|(tt, _)| tree_index[tt] == t)
                .map(|(_, &n)| n)
                .collect();
            let children: std::collections::HashSet<i64> = ids
                .iter()
                .filter_map(|n| position.get(&(t, *n)))
                .filter(|&&p| e.nodes_modes[p] != NodeMode::Leaf)
                .flat_map(|&p| [e.nodes_truenodeids[p], e.nodes_falsenodeids[p]])
                .collect();
            let roots: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|n| !children.contains(n))
                .collect();
            let [root] = roots.as_slice() else {
                return Err(invalid(format!("tree {t} has {} roots", roots.len())));
            };
            // Breadth-first from the root: local indices, root first.
            let mut order = vec![*root];
            let mut local: HashMap<i64, usize> = HashMap::from([(*root, 0)]);
            let mut nodes = Vec::new();
            let mut next = 0;
            while next < order.len() {
                let id = order[next];
                next += 1;
                let p = position[&(t, id)];
                let cover = usize::try_from(id)
                    .ok()
                    .and_then(|i| tree_covers.get(i))
                    .copied()
                    .filter(|c| c.is_finite() && *c > 0.0)
                    .ok_or_else(|| invalid(format!("tree {t} node {id}: no positive cover")))?;
                let mode = e.nodes_modes[p];
                let mut node = Node {
                    feature: usize::try_from(e.nodes_featureids[p]).unwrap_or(usize::MAX),
                    threshold: e.nodes_values[p],
                    mode,
                    missing_true: e.nodes_missing_value_tracks_true.get(p) == Some(&1),
                    yes: 0,
                    no: 0,
                    value: leaf_value.get(&(t, id)).copied().unwrap_or(0.0),
                    cover,
                };
                if mode != NodeMode::Leaf {
                    n_features = n_features.max(node.feature.saturating_add(1));
                    for (child, slot) in [
                        (e.nodes_truenodeids[p], &mut node.yes),
                        (e.nodes_falsenodeids[p], &mut node.no),
                    ] {
                        if !position.contains_key(&(t, child)) || local.contains_key(&child) {
                            return Err(invalid(format!(
                                "tree {t} node {id}: child {child} is unknown or reached twice"
                            )));
                        }
                        *slot = order.len();
                        local.insert(child, order.len());
                        order.push(child);
                    }
                }
                nodes.push(node);
            }
            for n in nodes.iter().filter(|n| !n.is_leaf()) {
                let sum = nodes[n.yes].cover + nodes[n.no].cover;
                if (sum - n.cover).abs() > 1e-9 * n.cover.max(1.0) {
                    return Err(invalid(format!(
                        "tree {t}: a node's cover {} is not its children's sum {sum}",
                        n.cover
                    )));
                }
            }
            trees.push(nodes);
        }
        let base = e.base_values.get(class).map_or(0.0, |&b| f64::from(b));
        let expected = base
            + trees
                .iter()
                .map(|nodes| {
                    let root = nodes[0].cover;
                    nodes
                        .iter()
                        .filter(|n| n.is_leaf())
                        .map(|n| n.value * n.cover / root)
                        .sum::<f64>()
                })
                .sum::<f64>();
        let max_depth = trees.iter().map(|t| depth_of(t)).max().unwrap_or(0);
        if max_depth > MAX_DEPTH {
            return Err(invalid(format!(
                "a tree is {max_depth} deep; explanations take trees up to {MAX_DEPTH}"
            )));
        }
        let tables = table::Tables::build(&trees);
        Ok(TreeShap {
            trees,
            n_features,
            base,
            expected,
            max_depth,
            tables,
        })
    }

    /// Features a row has.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The expected raw score over the training rows: the base of every explanation.
    pub fn expected_value(&self) -> f64 {
        self.expected
    }

    /// Adds each feature's Shapley value for row `x` to `phi` (`n_features` long) and
    /// returns the row's raw score; the score equals `expected_value() + sum(phi)` up to
    /// rounding.
    pub fn explain(&self, x: &[f32], phi: &mut [f64]) -> Result<f64, TreeError> {
        if x.len() != self.n_features || phi.len() != self.n_features {
            return Err(TreeError::InputShape {
                n_rows: 1,
                n_features: self.n_features,
                got: x.len().min(phi.len()),
            });
        }
        let mut score = self.base;
        if let Some(tables) = &self.tables {
            tables.explain(&self.trees, x, phi);
            for nodes in &self.trees {
                score += nodes[leaf_of(nodes, x)].value;
            }
            return Ok(score);
        }
        let empty = PathElement {
            feature: usize::MAX,
            zero: 0.0,
            one: 0.0,
            weight: 0.0,
        };
        let mut buf = vec![empty; buffer_len(self.max_depth)];
        for nodes in &self.trees {
            recurse(nodes, x, phi, 0, &mut buf, 0, 0, 1.0, 1.0, usize::MAX);
            score += nodes[leaf_of(nodes, x)].value;
        }
        Ok(score)
    }
}

/// The leaf row `x` reaches.
fn leaf_of(nodes: &[Node], x: &[f32]) -> usize {
    let mut n = 0;
    while !nodes[n].is_leaf() {
        n = if nodes[n].goes_true(x[nodes[n].feature]) {
            nodes[n].yes
        } else {
            nodes[n].no
        };
    }
    n
}

/// The paths of one explanation live in one buffer: each level of the recursion copies
/// its parent's path right after the parent's elements (as shap's C++ does), so nothing
/// is allocated per node. A tree of depth `d` needs `(d + 2)(d + 3) / 2` elements.
fn buffer_len(depth: usize) -> usize {
    (depth + 2) * (depth + 3) / 2
}

/// Appends an element to the path `path[..depth]` (now `depth + 1` long).
fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d = depth as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i as f64 + 1.0) / (d + 1.0);
        path[i].weight = zero * path[i].weight * (d - i as f64) / (d + 1.0);
    }
}

/// Removes element `index` from the path `path[..=depth]`.
fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let d = depth as f64;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next * (d + 1.0) / ((i as f64 + 1.0) * one);
            next = tmp - path[i].weight * zero * (d - i as f64) / (d + 1.0);
        } else {
            path[i].weight = path[i].weight * (d + 1.0) / (zero * (d - i as f64));
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let d = depth as f64;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next / ((i as f64 + 1.0) * one);
            total += tmp;
            next = path[i].weight - tmp * zero * (d - i as f64);
        } else {
            total += path[i].weight / (zero * (d - i as f64));
        }
    }
    total * (d + 1.0)
}

/// One step of Algorithm 2 at node `n`: the parent's path is `buf[parent..parent +
/// parent_len]`; this node's path goes right after it.
#[allow(clippy::too_many_arguments)]
fn recurse(
    nodes: &[Node],
    x: &[f32],
    phi: &mut [f64],
    n: usize,
    buf: &mut [PathElement],
    parent: usize,
    parent_len: usize,
    zero: f64,
    one: f64,
    feature: usize,
) {
    let start = parent + parent_len;
    buf.copy_within(parent..start, start);
    let mut depth = parent_len;
    extend(&mut buf[start..], depth, zero, one, feature);
    let node = nodes[n];
    if node.is_leaf() {
        let path = &buf[start..=start + depth];
        for i in 1..=depth {
            let w = unwound_sum(path, depth, i);
            let el = path[i];
            phi[el.feature] += w * (el.one - el.zero) * node.value;
        }
        return;
    }
    let (hot, cold) = if node.goes_true(x[node.feature]) {
        (node.yes, node.no)
    } else {
        (node.no, node.yes)
    };
    let (mut in_zero, mut in_one) = (1.0, 1.0);
    if let Some(k) = buf[start..=start + depth]
        .iter()
        .position(|p| p.feature == node.feature)
    {
        in_zero = buf[start + k].zero;
        in_one = buf[start + k].one;
        unwind(&mut buf[start..], depth, k);
        depth -= 1;
    }
    let hot_zero = nodes[hot].cover / node.cover;
    let cold_zero = nodes[cold].cover / node.cover;
    let len = depth + 1;
    recurse(
        nodes,
        x,
        phi,
        hot,
        buf,
        start,
        len,
        hot_zero * in_zero,
        in_one,
        node.feature,
    );
    recurse(
        nodes,
        x,
        phi,
        cold,
        buf,
        start,
        len,
        cold_zero * in_zero,
        0.0,
        node.feature,
    );
}
