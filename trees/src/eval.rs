//! The evaluator: rows in blocks, trees one after the other over a whole block (the tree stays
//! in L1 while the block's rows go through it), several rows walked in lock-step so their
//! independent loads overlap, rows split over scoped threads.

use crate::Aggregate;
use crate::build::{
    Compiled, FEAT_MASK, KIND_EQ, KIND_LEQ, KIND_SHIFT, NAN_SHIFT, Node, Payload, Tree,
};
use crate::finalize::FinalizerKind;

/// Rows evaluated together, tree after tree.
const BLOCK: usize = 64;
/// Rows walked in lock-step through one tree.
const LANES: usize = 8;
/// Tree steps a thread should have to take before it is worth starting: about 100 us of work.
/// Starting and joining a scoped thread costs 10-20 us on an idle machine, but on a busy one
/// the new thread can wait a scheduler slice (milliseconds) for a core, so small batches stay
/// on the calling thread (200 trees of depth 3: 125 rows and more per thread).
const MIN_STEPS_PER_THREAD: usize = 100_000;

/// How leaf values combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acc {
    Sum,
    Min,
    Max,
}

/// One step down from node `n` for the row `x`, in `x <= thr` form. With `NAN`, a NaN input
/// goes to `child[nan_dir]`; without, it goes to `child[0]` (the comparison fails).
#[inline(always)]
fn step_leq<const NAN: bool>(nodes: &[Node], n: u32, x: &[f32]) -> u32 {
    let nd = &nodes[n as usize];
    let v = x[(nd.feat & FEAT_MASK) as usize];
    let mut go = u32::from(v <= nd.thr);
    if NAN {
        go |= u32::from(v.is_nan()) & (nd.feat >> NAN_SHIFT);
    }
    nd.child[go as usize]
}

/// One step for any comparison kind (`<=`, `==`, `!=`), NaN-aware.
#[inline(always)]
fn step_general(nodes: &[Node], n: u32, x: &[f32]) -> u32 {
    let nd = &nodes[n as usize];
    let v = x[(nd.feat & FEAT_MASK) as usize];
    let go = if v.is_nan() {
        nd.feat >> NAN_SHIFT
    } else {
        let kind = (nd.feat >> KIND_SHIFT) & 3;
        u32::from(if kind == KIND_LEQ {
            v <= nd.thr
        } else if kind == KIND_EQ {
            v == nd.thr
        } else {
            v != nd.thr
        })
    };
    nd.child[go as usize]
}

/// Leaves of `tree` for the `b` rows of `x` (row-major, `nf` features), into `leaves[..b]`.
fn walk<const NAN: bool>(
    nodes: &[Node],
    tree: &Tree,
    x: &[f32],
    nf: usize,
    b: usize,
    leaves: &mut [u32],
) {
    let root = tree.root;
    let mut r = 0;
    if tree.fixed {
        let depth = tree.depth;
        while r + LANES <= b {
            let rows: [&[f32]; LANES] = std::array::from_fn(|k| &x[(r + k) * nf..(r + k + 1) * nf]);
            let mut n = [root; LANES];
            for _ in 0..depth {
                for k in 0..LANES {
                    n[k] = step_leq::<NAN>(nodes, n[k], rows[k]);
                }
            }
            leaves[r..r + LANES].copy_from_slice(&n);
            r += LANES;
        }
        while r < b {
            let row = &x[r * nf..(r + 1) * nf];
            let mut n = root;
            for _ in 0..depth {
                n = step_leq::<NAN>(nodes, n, row);
            }
            leaves[r] = n;
            r += 1;
        }
    } else {
        while r < b {
            let row = &x[r * nf..(r + 1) * nf];
            let mut n = root;
            loop {
                let next = step_leq::<NAN>(nodes, n, row);
                if next == n {
                    break;
                }
                n = next;
            }
            leaves[r] = n;
            r += 1;
        }
    }
}

/// Like [`walk`] for models with `BRANCH_EQ` / `BRANCH_NEQ` nodes.
fn walk_general(nodes: &[Node], tree: &Tree, x: &[f32], nf: usize, b: usize, leaves: &mut [u32]) {
    for r in 0..b {
        let row = &x[r * nf..(r + 1) * nf];
        let mut n = tree.root;
        // A leaf loops onto itself; the first check also covers a tree that is one leaf (whose
        // walk must not read a feature).
        while nodes[n as usize].child[0] != n {
            n = step_general(nodes, n, row);
        }
        leaves[r] = n;
    }
}

#[inline(always)]
fn combine(acc: Acc, s: &mut f32, h: &mut bool, v: f32) {
    match acc {
        Acc::Sum => *s += v,
        Acc::Min => {
            if !*h || v < *s {
                *s = v;
            }
        }
        Acc::Max => {
            if !*h || v > *s {
                *s = v;
            }
        }
    }
    *h = true;
}

/// Adds the leaves' values of one tree into the block's scores (`n_out` per row).
fn accumulate(
    payload: &Payload,
    acc: Acc,
    n_out: usize,
    leaves: &[u32],
    scores: &mut [f32],
    has: &mut [bool],
) {
    match payload {
        Payload::One { value } => match acc {
            // onnxruntime leaves has_score alone here; nothing reads it for SUM / AVERAGE.
            Acc::Sum => {
                for (s, &l) in scores.iter_mut().zip(leaves) {
                    *s += value[l as usize];
                }
            }
            _ => {
                for ((s, h), &l) in scores.iter_mut().zip(has.iter_mut()).zip(leaves) {
                    combine(acc, s, h, value[l as usize]);
                }
            }
        },
        Payload::Single { class, value } => {
            for (r, &l) in leaves.iter().enumerate() {
                let j = r * n_out + class[l as usize] as usize;
                combine(acc, &mut scores[j], &mut has[j], value[l as usize]);
            }
        }
        Payload::Range {
            range,
            class,
            value,
        } => {
            for (r, &l) in leaves.iter().enumerate() {
                let [start, len] = range[l as usize];
                let (start, len) = (start as usize, len as usize);
                for (&c, &v) in class[start..start + len]
                    .iter()
                    .zip(&value[start..start + len])
                {
                    let j = r * n_out + c as usize;
                    combine(acc, &mut scores[j], &mut has[j], v);
                }
            }
        }
    }
}

/// All trees for one row, LANES trees in lock-step when they all take fixed walks. Leaves are
/// accumulated in tree order, as onnxruntime sums them.
fn walk_row<const NAN: bool>(m: &Compiled, row: &[f32], acc: Acc, s: &mut [f32], h: &mut [bool]) {
    let nodes = &m.nodes;
    let mut groups = m.trees.chunks_exact(LANES);
    for group in &mut groups {
        let mut leaves = [0u32; LANES];
        if group.iter().all(|t| t.fixed) {
            let depth = group.iter().map(|t| t.depth).max().unwrap_or(0);
            let mut n: [u32; LANES] = std::array::from_fn(|k| group[k].root);
            for _ in 0..depth {
                for nk in &mut n {
                    *nk = step_leq::<NAN>(nodes, *nk, row);
                }
            }
            leaves = n;
        } else {
            for (k, tree) in group.iter().enumerate() {
                walk::<NAN>(nodes, tree, row, row.len(), 1, &mut leaves[k..k + 1]);
            }
        }
        for l in &leaves {
            accumulate(&m.payload, acc, m.n_out, std::slice::from_ref(l), s, h);
        }
    }
    for tree in groups.remainder() {
        let mut leaf = [0u32; 1];
        walk::<NAN>(nodes, tree, row, row.len(), 1, &mut leaf);
        accumulate(&m.payload, acc, m.n_out, &leaf, s, h);
    }
}

/// Evaluates `n_rows` rows of `x`, writing `n_out` values per row into `out` and, for a
/// classifier, one label per row into `labels`.
fn eval_rows(
    m: &Compiled,
    x: &[f32],
    n_rows: usize,
    out: &mut [f32],
    mut labels: Option<&mut [i64]>,
) {
    let nf = m.n_features;
    let n_out = m.n_out;
    let acc = match &m.finalizer.kind {
        FinalizerKind::Classifier { .. } => Acc::Sum,
        FinalizerKind::Regressor { aggregate } => match aggregate {
            Aggregate::Sum | Aggregate::Average => Acc::Sum,
            Aggregate::Min => Acc::Min,
            Aggregate::Max => Acc::Max,
        },
    };
    let mut leaves = [0u32; BLOCK];
    let mut scores = vec![0f32; BLOCK * n_out];
    let mut has = vec![false; BLOCK * n_out];
    let mut start = 0;
    while start < n_rows {
        let b = BLOCK.min(n_rows - start);
        let xb = &x[start * nf..(start + b) * nf];
        let sb = &mut scores[..b * n_out];
        let hb = &mut has[..b * n_out];
        sb.fill(0.0);
        hb.fill(false);
        let nan = m.nan_matters && xb.iter().fold(false, |a, v| a | v.is_nan());
        if b < LANES && !m.has_eq {
            // Too few rows to walk in lock-step: walk LANES trees in lock-step instead.
            for r in 0..b {
                let row = &xb[r * nf..(r + 1) * nf];
                let s = &mut sb[r * n_out..(r + 1) * n_out];
                let h = &mut hb[r * n_out..(r + 1) * n_out];
                if nan {
                    walk_row::<true>(m, row, acc, s, h);
                } else {
                    walk_row::<false>(m, row, acc, s, h);
                }
            }
        } else {
            for tree in &m.trees {
                let lv = &mut leaves[..b];
                if m.has_eq {
                    walk_general(&m.nodes, tree, xb, nf, b, lv);
                } else if nan {
                    walk::<true>(&m.nodes, tree, xb, nf, b, lv);
                } else {
                    walk::<false>(&m.nodes, tree, xb, nf, b, lv);
                }
                accumulate(&m.payload, acc, n_out, lv, sb, hb);
            }
        }
        for r in 0..b {
            let row = start + r;
            let label = labels.as_deref_mut().map(|l| &mut l[row]);
            m.finalizer.row(
                &mut sb[r * n_out..(r + 1) * n_out],
                &mut hb[r * n_out..(r + 1) * n_out],
                &mut out[row * n_out..(row + 1) * n_out],
                label,
            );
        }
        start += b;
    }
}

/// Evaluates all rows, on up to `threads` threads (the calling one included).
pub(crate) fn eval(
    m: &Compiled,
    x: &[f32],
    n_rows: usize,
    threads: usize,
    out: &mut [f32],
    labels: Option<&mut [i64]>,
) {
    let min_rows = (MIN_STEPS_PER_THREAD / m.steps_per_row.max(1)).max(8);
    let threads = threads.min(n_rows / min_rows).max(1);
    if threads == 1 {
        eval_rows(m, x, n_rows, out, labels);
        return;
    }
    let per = n_rows.div_ceil(threads);
    let (nf, n_out) = (m.n_features, m.n_out);
    let mut jobs = Vec::with_capacity(threads);
    let (mut x_rest, mut out_rest, mut labels_rest) = (x, out, labels);
    let mut row = 0;
    while row < n_rows {
        let rows = per.min(n_rows - row);
        let (xc, xr) = x_rest.split_at(rows * nf);
        x_rest = xr;
        let (oc, or) = std::mem::take(&mut out_rest).split_at_mut(rows * n_out);
        out_rest = or;
        let lc = labels_rest.take().map(|l| {
            let (a, b) = l.split_at_mut(rows);
            labels_rest = Some(b);
            a
        });
        jobs.push((xc, rows, oc, lc));
        row += rows;
    }
    std::thread::scope(|scope| {
        let mut jobs = jobs.into_iter();
        let first = jobs.next();
        for (xc, rows, oc, lc) in jobs {
            scope.spawn(move || eval_rows(m, xc, rows, oc, lc));
        }
        if let Some((xc, rows, oc, lc)) = first {
            eval_rows(m, xc, rows, oc, lc);
        }
    });
}
