//! Validation of the raw attribute arrays and their compilation into the flat layout the
//! evaluator walks.
//!
//! Every branch node is rewritten into one comparison form so the hot loop has a single shape:
//! `go = (x <= thr)`, then `next = child[go]`. `BRANCH_LT t` becomes `x <= pred(t)` (the largest
//! f32 below `t`), and `BRANCH_GTE` / `BRANCH_GT` become `BRANCH_LT` / `BRANCH_LEQ` with the two
//! children swapped. This is exact for every non-NaN f32 input. Where NaN goes is kept per node
//! (`nan_dir`), and `BRANCH_EQ` / `BRANCH_NEQ` keep their own kind. Leaves loop onto themselves
//! (`child = [self, self]`, threshold NaN) so a walk of a tree's maximal depth always ends on the
//! leaf, without a data-dependent exit branch.

use std::collections::{HashMap, HashSet};

use crate::Aggregate;
use crate::error::TreeError;
use crate::finalize::{Finalizer, FinalizerKind};
use crate::parse::{NodeMode, RawEnsemble, RawKind};

/// Bits 0..=27 of `Node::feat`: the feature index.
pub(crate) const FEAT_MASK: u32 = (1 << 28) - 1;
/// Bits 28..=29 of `Node::feat`: the comparison kind.
pub(crate) const KIND_SHIFT: u32 = 28;
pub(crate) const KIND_LEQ: u32 = 0;
pub(crate) const KIND_EQ: u32 = 1;
pub(crate) const KIND_NEQ: u32 = 2;
/// Bit 31 of `Node::feat`: which child (0 or 1) a NaN input goes to.
pub(crate) const NAN_SHIFT: u32 = 31;

/// The largest number of nodes (all trees together) a model may have: far above real
/// ensembles (1,000 trees of 255 leaves are half a million nodes), low enough that a hostile
/// file cannot make loading take more than a few GB.
const MAX_NODES: usize = 1 << 24;
/// The largest number of classes or targets (scores per row).
const MAX_OUTPUTS: usize = 1 << 14;

/// One node, 16 bytes: a single load brings everything a step needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    /// Feature index | kind << 28 | nan_dir << 31.
    pub feat: u32,
    /// Threshold in `x <= thr` form (or the `==` / `!=` operand).
    pub thr: f32,
    /// `child[1]` when the comparison holds, `child[0]` otherwise; `[self, self]` for a leaf.
    pub child: [u32; 2],
}

/// Where a tree starts and how its walk is run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree {
    pub root: u32,
    /// Edges on the longest root-to-leaf path.
    pub depth: u32,
    /// Walk exactly `depth` steps (branch-free) rather than until a leaf.
    pub fixed: bool,
}

/// What a leaf adds to the scores.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    /// One output (regressor with `n_targets == 1`): `value[node]`, onnxruntime's
    /// "value_or_unique_weight" (the leaf's first weight, else its `nodes_values` entry).
    One { value: Vec<f32> },
    /// Several outputs, every reachable leaf has exactly one weight.
    Single { class: Vec<u32>, value: Vec<f32> },
    /// Several outputs, any number of weights per leaf: `range[node] = [start, len]`.
    Range {
        range: Vec<[u32; 2]>,
        class: Vec<u32>,
        value: Vec<f32>,
    },
}

/// The compiled model.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub nodes: Vec<Node>,
    pub trees: Vec<Tree>,
    pub payload: Payload,
    pub n_features: usize,
    /// Classes (classifier) or targets (regressor).
    pub n_out: usize,
    /// Some node sends NaN to `child[1]`: blocks that contain a NaN need the NaN-aware walk.
    pub nan_matters: bool,
    /// Some node is `BRANCH_EQ` / `BRANCH_NEQ`: the general walk is needed.
    pub has_eq: bool,
    /// Steps one row takes through all trees (at most), to size the work given to a thread.
    pub steps_per_row: usize,
    pub finalizer: Finalizer,
}

fn invalid_tree(detail: impl Into<String>) -> TreeError {
    TreeError::InvalidTree(detail.into())
}

fn bad_attr(name: &str, detail: impl Into<String>) -> TreeError {
    TreeError::InvalidAttribute {
        name: name.to_string(),
        detail: detail.into(),
    }
}

/// The largest f32 strictly below `t`, or NaN (a threshold no input satisfies) when there is
/// none (`t` is -inf or NaN).
pub(crate) fn f32_pred(t: f32) -> f32 {
    if t.is_nan() || t == f32::NEG_INFINITY {
        return f32::NAN;
    }
    if t == 0.0 {
        // Below +0 and -0: the negative subnormal closest to zero.
        return -f32::from_bits(1);
    }
    let bits = t.to_bits();
    if t > 0.0 {
        f32::from_bits(bits - 1)
    } else {
        f32::from_bits(bits + 1)
    }
}

/// The `(thr, swapped, kind)` that makes `x <= thr` (or `==` / `!=`), with children
/// `[false, true]` or, when swapped, `[true, false]`, equivalent to `mode` on non-NaN inputs.
fn normal_form(mode: NodeMode, t: f32) -> (f32, bool, u32) {
    match mode {
        NodeMode::BranchLeq => (t, false, KIND_LEQ),
        NodeMode::BranchLt => (f32_pred(t), false, KIND_LEQ),
        // x >= t  <=>  !(x < t)  <=>  !(x <= pred(t)); with t NaN never true.
        NodeMode::BranchGte => {
            let thr = if t.is_nan() {
                f32::INFINITY
            } else {
                f32_pred(t)
            };
            (thr, true, KIND_LEQ)
        }
        // x > t  <=>  !(x <= t); with t NaN never true.
        NodeMode::BranchGt => {
            let thr = if t.is_nan() { f32::INFINITY } else { t };
            (thr, true, KIND_LEQ)
        }
        NodeMode::BranchEq => (t, false, KIND_EQ),
        NodeMode::BranchNeq => (t, false, KIND_NEQ),
        NodeMode::Leaf => (f32::NAN, false, KIND_LEQ),
    }
}

pub(crate) fn compile(
    raw: &RawEnsemble,
    declared_features: Option<usize>,
) -> Result<Compiled, TreeError> {
    let n = raw.nodes_treeids.len();
    if n == 0 {
        return Err(bad_attr("nodes_treeids", "the ensemble has no nodes"));
    }
    if n > MAX_NODES {
        return Err(TreeError::Unsupported(format!(
            "{n} nodes (at most {MAX_NODES})"
        )));
    }
    for (name, len) in [
        ("nodes_nodeids", raw.nodes_nodeids.len()),
        ("nodes_featureids", raw.nodes_featureids.len()),
        ("nodes_modes", raw.nodes_modes.len()),
        ("nodes_values", raw.nodes_values.len()),
        ("nodes_truenodeids", raw.nodes_truenodeids.len()),
        ("nodes_falsenodeids", raw.nodes_falsenodeids.len()),
    ] {
        if len != n {
            return Err(bad_attr(
                name,
                format!("has {len} entries, nodes_treeids has {n}"),
            ));
        }
    }
    let missing = &raw.nodes_missing_value_tracks_true;
    if !missing.is_empty() && missing.len() != n {
        return Err(bad_attr(
            "nodes_missing_value_tracks_true",
            format!("has {} entries, nodes_treeids has {n}", missing.len()),
        ));
    }
    if missing.iter().any(|&m| m != 0 && m != 1) {
        return Err(bad_attr(
            "nodes_missing_value_tracks_true",
            "holds a value other than 0 or 1",
        ));
    }
    let nw = raw.w_ids.len();
    let wname = match raw.kind {
        RawKind::Classifier { .. } => "class",
        RawKind::Regressor { .. } => "target",
    };
    for (suffix, len) in [
        ("nodeids", raw.w_nodeids.len()),
        ("treeids", raw.w_treeids.len()),
        ("weights", raw.w_weights.len()),
    ] {
        if len != nw {
            return Err(bad_attr(
                &format!("{wname}_{suffix}"),
                format!("has {len} entries, {wname}_ids has {nw}"),
            ));
        }
    }

    let n_out = match &raw.kind {
        RawKind::Classifier { labels } => {
            if labels.is_empty() {
                return Err(bad_attr("classlabels_int64s", "missing or empty"));
            }
            if labels.len() < 2 {
                return Err(TreeError::Unsupported(
                    "a classifier with a single class".into(),
                ));
            }
            labels.len()
        }
        RawKind::Regressor { n_targets, .. } => *n_targets,
    };
    if n_out > MAX_OUTPUTS {
        return Err(TreeError::Unsupported(format!(
            "{n_out} classes or targets (at most {MAX_OUTPUTS})"
        )));
    }

    // Trees are runs of consecutive nodes with one tree id; the first node of a run is its root.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut seen_trees: HashSet<i64> = HashSet::new();
    for i in 0..n {
        if i == 0 || raw.nodes_treeids[i] != raw.nodes_treeids[i - 1] {
            if !seen_trees.insert(raw.nodes_treeids[i]) {
                return Err(invalid_tree(format!(
                    "the nodes of tree {} are not consecutive",
                    raw.nodes_treeids[i]
                )));
            }
            if let Some(last) = runs.last_mut() {
                last.1 = i;
            }
            runs.push((i, n));
        }
    }

    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if index
            .insert((raw.nodes_treeids[i], raw.nodes_nodeids[i]), i)
            .is_some()
        {
            return Err(invalid_tree(format!(
                "node {} of tree {} is given twice",
                raw.nodes_nodeids[i], raw.nodes_treeids[i]
            )));
        }
    }

    // Children (original indices) and feature bound.
    let is_leaf = |i: usize| raw.nodes_modes[i] == NodeMode::Leaf;
    let mut children = vec![[0usize; 2]; n]; // [false, true]
    let mut max_feature: Option<usize> = None;
    for (i, child) in children.iter_mut().enumerate() {
        if is_leaf(i) {
            continue;
        }
        let tree = raw.nodes_treeids[i];
        let lookup = |id: i64, which: &str| {
            index.get(&(tree, id)).copied().ok_or_else(|| {
                invalid_tree(format!(
                    "node {} of tree {tree} has {which} child {id}, which does not exist",
                    raw.nodes_nodeids[i]
                ))
            })
        };
        let f = lookup(raw.nodes_falsenodeids[i], "false")?;
        let t = lookup(raw.nodes_truenodeids[i], "true")?;
        if f == i || t == i {
            return Err(invalid_tree(format!(
                "node {} of tree {tree} is its own child",
                raw.nodes_nodeids[i]
            )));
        }
        *child = [f, t];
        let feat = raw.nodes_featureids[i];
        let feat = usize::try_from(feat)
            .ok()
            .filter(|&f| f <= FEAT_MASK as usize)
            .ok_or_else(|| {
                invalid_tree(format!(
                    "node {} of tree {tree} reads feature {feat}",
                    raw.nodes_nodeids[i]
                ))
            })?;
        max_feature = Some(max_feature.map_or(feat, |m: usize| m.max(feat)));
    }
    let tracks = effective_missing_tracks(raw, &children)?;

    let n_features = match (declared_features, max_feature) {
        (Some(d), Some(m)) if m >= d => {
            return Err(invalid_tree(format!(
                "a node reads feature {m} but the input has {d} features"
            )));
        }
        (Some(d), _) => d,
        (None, Some(m)) => m + 1,
        (None, None) => 0,
    };

    // Walk each tree from its root: reject cycles, measure depth, number reachable nodes.
    // DAGs (a node reached from two parents, as LightGBM's set-membership chains produce) are
    // fine: the walk of one input is still finite.
    const WHITE: u8 = 0;
    const GRAY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; n];
    let mut height = vec![0u32; n]; // edges to the deepest leaf below
    let mut new_index = vec![u32::MAX; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut trees: Vec<Tree> = Vec::with_capacity(runs.len());
    let mut stack: Vec<(usize, u8)> = Vec::new();
    for &(start, _end) in &runs {
        let root = start;
        let mut leaf_depth_sum: u64 = 0;
        let mut leaf_count: u64 = 0;
        color[root] = GRAY;
        new_index[root] = order.len() as u32;
        order.push(root);
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (i, k) = *top;
            if is_leaf(i) || k == 2 {
                stack.pop();
                color[i] = BLACK;
                if is_leaf(i) {
                    leaf_depth_sum += stack.len() as u64;
                    leaf_count += 1;
                } else {
                    let [f, t] = children[i];
                    height[i] = 1 + height[f].max(height[t]);
                }
                continue;
            }
            top.1 += 1;
            let c = children[i][k as usize];
            match color[c] {
                WHITE => {
                    color[c] = GRAY;
                    new_index[c] = order.len() as u32;
                    order.push(c);
                    stack.push((c, 0));
                }
                GRAY => {
                    return Err(invalid_tree(format!(
                        "tree {} has a cycle through node {}",
                        raw.nodes_treeids[root], raw.nodes_nodeids[c]
                    )));
                }
                _ => {
                    if is_leaf(c) {
                        // A shared leaf still counts for the mean depth heuristic.
                        leaf_depth_sum += stack.len() as u64;
                        leaf_count += 1;
                    }
                }
            }
        }
        let depth = height[root];
        // A fixed walk of `depth` steps costs `depth` steps for every row but has no
        // data-dependent branch and lets rows overlap; an early-exit walk costs the row's own
        // depth plus a mispredicted exit. Measured on LightGBM (31 leaves, lopsided) and
        // XGBoost (depth 6) ensembles, the fixed walk wins; only degenerate trees, far deeper
        // than their typical leaf, walk until the leaf.
        let mean = if leaf_count == 0 {
            0.0
        } else {
            leaf_depth_sum as f64 / leaf_count as f64
        };
        let fixed = depth <= 32 || f64::from(depth) <= 2.0 * mean + 8.0;
        trees.push(Tree {
            root: new_index[root],
            depth,
            fixed,
        });
    }

    // Nodes in their new order.
    let mut nodes = Vec::with_capacity(order.len());
    let mut nan_matters = false;
    let mut has_eq = false;
    for (new, &i) in order.iter().enumerate() {
        let new = new as u32;
        if is_leaf(i) {
            nodes.push(Node {
                feat: 0,
                thr: f32::NAN,
                child: [new, new],
            });
            continue;
        }
        let mode = raw.nodes_modes[i];
        let (thr, swapped, kind) = normal_form(mode, raw.nodes_values[i]);
        let [f, t] = children[i];
        let (c0, c1) = if swapped { (t, f) } else { (f, t) };
        let tracks = tracks[i];
        // Where NaN must go, as onnxruntime decides it: `x CMP t || (tracks && isnan(x))`.
        // `NaN != t` holds, every other comparison with NaN fails.
        let nan_to_true = tracks || mode == NodeMode::BranchNeq;
        let nan_child = if nan_to_true { t } else { f };
        let nan_dir = u32::from(nan_child == c1);
        // With `x <= thr` (or `x == thr`), NaN fails the comparison and goes to child[0]
        // unless nan_dir says otherwise.
        if nan_dir == 1 {
            nan_matters = true;
        }
        if kind != KIND_LEQ {
            has_eq = true;
        }
        let feat = raw.nodes_featureids[i] as u32; // checked above
        nodes.push(Node {
            feat: feat | (kind << KIND_SHIFT) | (nan_dir << NAN_SHIFT),
            thr,
            child: [new_index[c0], new_index[c1]],
        });
    }

    // Leaf weights, grouped per leaf in attribute order (onnxruntime sorts them by tree, node
    // and position, which keeps that order within a leaf).
    let mut per_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); order.len()];
    let mut weight_classes: HashSet<i64> = HashSet::new();
    let mut all_positive = true;
    for w in 0..nw {
        let key = (raw.w_treeids[w], raw.w_nodeids[w]);
        let Some(&i) = index.get(&key) else {
            return Err(invalid_tree(format!(
                "{wname} weight {w} points at node {} of tree {}, which does not exist",
                key.1, key.0
            )));
        };
        let id = raw.w_ids[w];
        let class = usize::try_from(id)
            .ok()
            .filter(|&c| c < n_out)
            .ok_or_else(|| {
                bad_attr(
                    &format!("{wname}_ids"),
                    format!("entry {w} is {id}, outside 0..{n_out}"),
                )
            })?;
        weight_classes.insert(id);
        if raw.w_weights[w] < 0.0 {
            all_positive = false;
        }
        // onnxruntime ignores weights attached to branch nodes (old converters wrote some).
        if !is_leaf(i) || new_index[i] == u32::MAX {
            continue;
        }
        per_leaf[new_index[i] as usize].push((class as u32, raw.w_weights[w]));
    }

    let payload = if n_out == 1 {
        let value = order
            .iter()
            .enumerate()
            .map(|(new, &i)| {
                if !is_leaf(i) {
                    0.0
                } else {
                    per_leaf[new]
                        .first()
                        .map_or(raw.nodes_values[i], |&(_, v)| v)
                }
            })
            .collect();
        Payload::One { value }
    } else if order
        .iter()
        .enumerate()
        .all(|(new, &i)| !is_leaf(i) || per_leaf[new].len() == 1)
    {
        let mut class = vec![0u32; order.len()];
        let mut value = vec![0f32; order.len()];
        for (new, ws) in per_leaf.iter().enumerate() {
            if let Some(&(c, v)) = ws.first() {
                class[new] = c;
                value[new] = v;
            }
        }
        Payload::Single { class, value }
    } else {
        let mut range = vec![[0u32; 2]; order.len()];
        let mut class = Vec::new();
        let mut value = Vec::new();
        for (new, ws) in per_leaf.iter().enumerate() {
            range[new] = [class.len() as u32, ws.len() as u32];
            for &(c, v) in ws {
                class.push(c);
                value.push(v);
            }
        }
        Payload::Range {
            range,
            class,
            value,
        }
    };

    let kind = match &raw.kind {
        RawKind::Classifier { labels } => {
            if n_out > 2 && raw.base_values.len() > n_out {
                return Err(bad_attr(
                    "base_values",
                    format!("has {} entries for {n_out} classes", raw.base_values.len()),
                ));
            }
            FinalizerKind::Classifier {
                labels: labels.clone(),
                binary_case: n_out == 2 && weight_classes.len() == 1,
                all_positive,
            }
        }
        RawKind::Regressor { aggregate, .. } => FinalizerKind::Regressor {
            aggregate: *aggregate,
        },
    };
    if matches!(
        raw.kind,
        RawKind::Regressor {
            aggregate: Aggregate::Average,
            ..
        }
    ) && trees.is_empty()
    {
        return Err(invalid_tree("AVERAGE over no trees"));
    }

    let finalizer = Finalizer {
        kind,
        post_transform: raw.post_transform,
        base_values: raw.base_values.clone(),
        n_out,
        n_trees: trees.len(),
    };

    let steps_per_row = trees.iter().map(|t| t.depth as usize + 1).sum();
    Ok(Compiled {
        steps_per_row,
        nodes,
        trees,
        payload,
        n_features,
        n_out,
        nan_matters,
        has_eq,
        finalizer,
    })
}

/// `nodes_missing_value_tracks_true` as onnxruntime applies it.
///
/// onnxruntime (since its set-membership optimisation) merges a `BRANCH_EQ` node and the chain
/// of `BRANCH_EQ` nodes below it through false branches (same feature, same true child, values
/// that are integers in 1..=32) into one membership test. The merged test tracks missing values
/// as its first node says; the flags of the other nodes of the chain are ignored. On non-NaN
/// inputs the merged test and the chain agree, so clearing those flags reproduces it exactly.
fn effective_missing_tracks(
    raw: &RawEnsemble,
    children: &[[usize; 2]],
) -> Result<Vec<bool>, TreeError> {
    let n = raw.nodes_modes.len();
    let mut tracks: Vec<bool> = (0..n)
        .map(|i| raw.nodes_missing_value_tracks_true.get(i) == Some(&1))
        .collect();
    if !tracks.iter().any(|&t| t) {
        return Ok(tracks);
    }
    let maskable = |i: usize| {
        let v = raw.nodes_values[i];
        raw.nodes_modes[i] == NodeMode::BranchEq && (1.0..=32.0).contains(&v) && v.fract() == 0.0
    };
    let mut in_degree = vec![0u32; n];
    for (i, c) in children.iter().enumerate() {
        if raw.nodes_modes[i] != NodeMode::Leaf {
            in_degree[c[0]] += 1;
            in_degree[c[1]] += 1;
        }
    }
    for (p, c) in children.iter().enumerate() {
        let [f, t] = *c;
        if !maskable(p) || !maskable(f) {
            continue;
        }
        if raw.nodes_featureids[f] != raw.nodes_featureids[p] || children[f][1] != t {
            continue;
        }
        // `f` is absorbed into the membership test that starts at (or above) `p`.
        if in_degree[f] > 1 && tracks[f] {
            return Err(TreeError::Unsupported(format!(
                "node {} of tree {} is inside a BRANCH_EQ chain and also reached from elsewhere",
                raw.nodes_nodeids[f], raw.nodes_treeids[f]
            )));
        }
        tracks[f] = false;
    }
    Ok(tracks)
}

#[cfg(test)]
mod tests {
    use super::{KIND_EQ, KIND_LEQ, f32_pred, normal_form};
    use crate::parse::NodeMode;

    /// The rewritten comparison must send every non-NaN input where the original one does.
    #[test]
    fn normal_form_is_exact_on_non_nan_inputs() {
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e-45,
            -1e-45,
            1.17e-38,
            f32::MIN_POSITIVE,
            f32::MAX,
            -f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3.4028e38,
            123.456,
        ];
        let mut values: Vec<f32> = Vec::new();
        for &v in &specials {
            values.extend([v, f32_pred(v), -f32_pred(-v)]);
        }
        values.retain(|v| !v.is_nan());
        let mut thresholds = values.clone();
        thresholds.push(f32::NAN);
        let modes = [
            NodeMode::BranchLeq,
            NodeMode::BranchLt,
            NodeMode::BranchGte,
            NodeMode::BranchGt,
            NodeMode::BranchEq,
            NodeMode::BranchNeq,
        ];
        for mode in modes {
            for &t in &thresholds {
                let (thr, swapped, kind) = normal_form(mode, t);
                for &x in &values {
                    let want = mode.holds(x, t);
                    let cmp = match kind {
                        KIND_LEQ => x <= thr,
                        KIND_EQ => x == thr,
                        _ => x != thr,
                    };
                    // child[1] is the true child unless swapped.
                    let got = cmp != swapped;
                    assert_eq!(got, want, "{mode:?} t={t:e} x={x:e} -> thr={thr:e}");
                }
            }
        }
    }

    #[test]
    fn pred_is_the_next_float_down() {
        for t in [
            1.0f32,
            -1.0,
            0.5,
            1e-40,
            -1e-40,
            f32::MAX,
            -f32::MAX,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ] {
            let p = f32_pred(t);
            assert!(p < t, "{t}");
            // Nothing strictly between.
            let mid = (f64::from(p) + f64::from(t)) / 2.0;
            let m = mid as f32;
            assert!(m == p || m == t, "{t}: {p} {m}");
        }
        assert!(f32_pred(0.0) < 0.0 && f32_pred(-0.0) < 0.0);
        assert_eq!(f32_pred(0.0).to_bits(), 0x8000_0001);
        assert!(f32_pred(f32::NEG_INFINITY).is_nan());
        assert!(f32_pred(f32::NAN).is_nan());
        assert_eq!(f32_pred(-f32::MAX), f32::NEG_INFINITY);
    }
}
