//! Path-dependent TreeSHAP with precomputed leaf tables (the idea of Yang 2021, "Fast
//! TreeSHAP", algorithm v2): a leaf's share of every feature's Shapley value depends on
//! the row only through which of its path's features the row follows (a bit each), so
//! each leaf keeps its shares for every such bit pattern, computed once with the same
//! path arithmetic as Algorithm 2. Explaining a row is then, per leaf, a few split
//! tests and a table lookup: O(trees x leaves x depth) instead of O(trees x leaves x
//! depth^2) with the path arithmetic at every node. Shallow ensembles only: a leaf of
//! `k` path features keeps `2^k x k` values, so ensembles past [`MAX_VALUES`] in all
//! (or with a path of more than [`MAX_PATH_FEATURES`]) keep to Algorithm 2.

use super::{Node, PathElement, extend, unwound_sum};

/// The most distinct features on one leaf's path for a table.
pub const MAX_PATH_FEATURES: usize = 12;
/// The most table values of one ensemble (8 bytes each).
pub const MAX_VALUES: usize = 4 << 20;

/// One split on a leaf's path: the node, the way the path goes, and the slot of its
/// feature among the path's distinct features.
#[derive(Debug, Clone, Copy)]
struct Step {
    node: u32,
    goes_true: bool,
    slot: u8,
}

#[derive(Debug, Clone, Copy)]
struct Leaf {
    /// Into `Tables::steps`: its path's splits.
    steps: (u32, u32),
    /// Into `Tables::features`: the path's `k` distinct features, by slot.
    features: u32,
    k: u8,
    /// Into `Tables::values`: `2^k` rows of `k` values (row = the bit pattern, bit
    /// `slot` set when the row follows that feature's every split on the path).
    values: usize,
}

/// Every leaf's table, tree by tree.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Per tree, its leaves.
    trees: Vec<Vec<Leaf>>,
    steps: Vec<Step>,
    features: Vec<usize>,
    values: Vec<f64>,
    /// The most nodes of one tree.
    max_nodes: usize,
}

/// The path to each leaf of a tree: (leaf, splits from the root).
fn leaf_paths(nodes: &[Node]) -> Vec<(usize, Vec<(usize, bool)>)> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, Vec::new())];
    while let Some((n, path)) = stack.pop() {
        let node = &nodes[n];
        if node.is_leaf() {
            out.push((n, path));
            continue;
        }
        for (child, way) in [(node.no, false), (node.yes, true)] {
            let mut p = path.clone();
            p.push((n, way));
            stack.push((child, p));
        }
    }
    out
}

impl Tables {
    /// The tables of `trees`; `None` when they would be too large.
    pub fn build(trees: &[Vec<Node>]) -> Option<Tables> {
        let mut tables = Tables {
            trees: Vec::with_capacity(trees.len()),
            steps: Vec::new(),
            features: Vec::new(),
            values: Vec::new(),
            max_nodes: trees.iter().map(Vec::len).max().unwrap_or(0),
        };
        let mut buf = vec![
            PathElement {
                feature: usize::MAX,
                zero: 0.0,
                one: 0.0,
                weight: 0.0,
            };
            MAX_PATH_FEATURES + 2
        ];
        for nodes in trees {
            let mut leaves = Vec::new();
            for (leaf, path) in leaf_paths(nodes) {
                // Distinct features in the order of their last split (as Algorithm 2's
                // path holds them), each with its cover fraction.
                let mut features: Vec<usize> = Vec::new();
                let mut zero: Vec<f64> = Vec::new();
                let mut slots = Vec::with_capacity(path.len());
                for (i, &(n, way)) in path.iter().enumerate() {
                    let node = &nodes[n];
                    let child = if way { node.yes } else { node.no };
                    let fraction = nodes[child].cover / node.cover;
                    let f = node.feature;
                    let last = !path[i + 1..].iter().any(|&(m, _)| nodes[m].feature == f);
                    match features.iter().position(|&g| g == f) {
                        Some(s) => zero[s] *= fraction,
                        None => {
                            features.push(f);
                            zero.push(fraction);
                        }
                    }
                    slots.push((n, way, f, last));
                }
                // Reorder by last split.
                let order: Vec<usize> = slots.iter().filter(|s| s.3).map(|s| s.2).collect();
                let zero: Vec<f64> = order
                    .iter()
                    .map(|f| zero[features.iter().position(|g| g == f).unwrap_or(0)])
                    .collect();
                let k = order.len();
                if k > MAX_PATH_FEATURES || tables.values.len() + (k << k) > MAX_VALUES {
                    return None;
                }
                let start = tables.steps.len();
                for &(n, way, f, _) in &slots {
                    tables.steps.push(Step {
                        node: u32::try_from(n).ok()?,
                        goes_true: way,
                        slot: order.iter().position(|&g| g == f).unwrap_or(0) as u8,
                    });
                }
                let values = tables.values.len();
                let value = nodes[leaf].value;
                for mask in 0..1usize << k {
                    buf[0] = PathElement {
                        feature: usize::MAX,
                        zero: 1.0,
                        one: 1.0,
                        weight: 1.0,
                    };
                    for (d, &f) in order.iter().enumerate() {
                        let one = if mask >> d & 1 == 1 { 1.0 } else { 0.0 };
                        extend(&mut buf, d + 1, zero[d], one, f);
                    }
                    for (d, &z) in zero.iter().enumerate() {
                        let one = if mask >> d & 1 == 1 { 1.0 } else { 0.0 };
                        let w = unwound_sum(&buf, k, d + 1);
                        tables.values.push(w * (one - z) * value);
                    }
                }
                leaves.push(Leaf {
                    steps: (
                        u32::try_from(start).ok()?,
                        u32::try_from(tables.steps.len()).ok()?,
                    ),
                    features: u32::try_from(tables.features.len()).ok()?,
                    k: k as u8,
                    values,
                });
                tables.features.extend(order);
            }
            tables.trees.push(leaves);
        }
        Some(tables)
    }

    /// Adds row `x`'s Shapley values to `phi`.
    pub fn explain(&self, trees: &[Vec<Node>], x: &[f32], phi: &mut [f64]) {
        // Each split tested once per tree, not once per leaf below it.
        let mut goes_true = vec![false; self.max_nodes];
        for (nodes, leaves) in trees.iter().zip(&self.trees) {
            for (way, node) in goes_true.iter_mut().zip(nodes) {
                *way = !node.is_leaf() && node.goes_true(x[node.feature]);
            }
            for leaf in leaves {
                let k = usize::from(leaf.k);
                let mut mask = (1usize << k) - 1;
                for step in &self.steps[leaf.steps.0 as usize..leaf.steps.1 as usize] {
                    if goes_true[step.node as usize] != step.goes_true {
                        mask &= !(1 << step.slot);
                    }
                }
                let row = &self.values[leaf.values + mask * k..leaf.values + (mask + 1) * k];
                let features = &self.features[leaf.features as usize..leaf.features as usize + k];
                for (&f, &v) in features.iter().zip(row) {
                    phi[f] += v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::TreeShap;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../models/fixtures/credit-gbdt/1.0.0/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn tables_give_what_the_recursion_gives_on_every_holdout_row() {
        let covers: serde_json::Value =
            serde_json::from_slice(&fixture("explain/tree_covers.json")).unwrap();
        let covers: Vec<Vec<f64>> = serde_json::from_value(covers["trees"].clone()).unwrap();
        let with_tables = TreeShap::from_onnx_bytes(&fixture("model.onnx"), 1, &covers).unwrap();
        assert!(with_tables.tables.is_some());
        let mut recursive = with_tables.clone();
        recursive.tables = None;
        // Paths that split twice on one feature are the case the tables must merge.
        let repeated = with_tables.trees.iter().any(|nodes| {
            nodes.iter().any(|n| {
                !n.is_leaf()
                    && [n.yes, n.no]
                        .iter()
                        .any(|&c| !nodes[c].is_leaf() && nodes[c].feature == n.feature)
            })
        });
        assert!(repeated, "the fixture has no path that repeats a feature");

        let holdout: serde_json::Value =
            serde_json::from_slice(&fixture("eval/holdout.json")).unwrap();
        let mut rows: Vec<Vec<f32>> = serde_json::from_value(holdout["rows"].clone()).unwrap();
        // And rows with missing values.
        let mut missing = rows[0].clone();
        missing.iter_mut().step_by(3).for_each(|x| *x = f32::NAN);
        rows.push(missing);
        let n = with_tables.n_features();
        for (r, x) in rows.iter().enumerate() {
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            let sa = with_tables.explain(x, &mut a).unwrap();
            let sb = recursive.explain(x, &mut b).unwrap();
            assert_eq!(sa, sb);
            for (j, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!((p - q).abs() <= 1e-12, "row {r} feature {j}: {p} vs {q}");
            }
            let total: f64 = a.iter().sum::<f64>() + with_tables.expected_value();
            assert!((total - sa).abs() <= 1e-9, "row {r}: {total} vs {sa}");
        }
    }
}
