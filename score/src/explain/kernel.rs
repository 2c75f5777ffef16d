//! KernelSHAP (Lundberg and Lee 2017) over the raw attributes of a plain dense network:
//! the players are the attributes (each replaces all of its encoded columns at once), a
//! coalition's value is the network's mean margin over a weighted background (k-means
//! centroids of the training rows, shipped in the release), and the Shapley values are
//! the weighted least-squares fit under the Shapley kernel with the efficiency
//! constraint, so base plus contributions is the row's margin exactly.
//!
//! The coalitions do not depend on the row: they are chosen once at load (every coalition
//! when `2^M - 2` fit in the budget, which makes the values exact; otherwise whole subset
//! sizes from the smallest and largest inwards while they fit, and the rest sampled with a
//! fixed seed, complements paired), and the regression's normal matrix is inverted once.
//! A row then costs one pass over the coalitions and the background, with the first
//! layer's product split per attribute so that a coalition only adds its attributes'
//! parts.

use coffer_trees::DenseNetwork;

use super::ExplainError;

/// The background: encoded rows and their weights.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Background {
    pub rows: Vec<Vec<f64>>,
    pub weights: Vec<f64>,
}

pub(super) struct KernelShap {
    net: DenseNetwork,
    /// Encoded columns of each attribute.
    groups: Vec<Vec<usize>>,
    weights: Vec<f64>,
    /// Per background row: the first layer's pre-activation with every attribute from
    /// the background (bias included), and each attribute's share of it.
    full: Vec<Vec<f64>>,
    /// `full` in f32, flat `[b][h]`: what each coalition's pre-activation starts from.
    full_f32: Vec<f32>,
    parts: Vec<Vec<Vec<f64>>>,
    /// Coalitions (attribute masks) and their regression weights.
    coalitions: Vec<(Vec<bool>, f64)>,
    /// Per coalition, the smaller side: its members (true) or its non-members (false),
    /// as attribute indices; a row's value is built from whichever is fewer.
    sides: Vec<(bool, Vec<usize>)>,
    /// The inverse of the (M-1)x(M-1) normal matrix.
    inverse: Vec<Vec<f64>>,
    /// Mean margin over the background: the base value.
    base: f64,
}

/// splitmix64: a small, fixed, seedable generator (the coalitions must be the same on
/// every load for the same release).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// All masks of `size` attributes out of `m`.
fn subsets(m: usize, size: usize) -> Vec<Vec<bool>> {
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..size).collect();
    loop {
        let mut mask = vec![false; m];
        idx.iter().for_each(|&i| mask[i] = true);
        out.push(mask);
        let Some(i) = (0..size).rev().find(|&i| idx[i] != i + m - size) else {
            return out;
        };
        idx[i] += 1;
        for j in i + 1..size {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// The coalitions for `m` attributes within `budget` evaluations, with weights summing
/// to 1 (each size's share of the Shapley kernel, split among its coalitions).
fn choose_coalitions(m: usize, budget: usize, seed: u64) -> Vec<(Vec<bool>, f64)> {
    let mass: Vec<f64> = (0..m)
        .map(|s| {
            if s == 0 {
                0.0
            } else {
                (m - 1) as f64 / (s * (m - s)) as f64
            }
        })
        .collect();
    let total: f64 = mass.iter().sum();
    let mut out = Vec::new();
    let mut left = budget;
    let mut remaining_mass = 1.0;
    let mut sampled_sizes = Vec::new();
    for s in 1..=m / 2 {
        let paired = s != m - s;
        let count = binomial(m, s) * if paired { 2.0 } else { 1.0 };
        if count <= left as f64 {
            let sizes = if paired { vec![s, m - s] } else { vec![s] };
            for size in sizes {
                let share = mass[size] / total;
                let each = share / binomial(m, size);
                out.extend(subsets(m, size).into_iter().map(|mask| (mask, each)));
                remaining_mass -= share;
            }
            left -= count as usize;
        } else {
            sampled_sizes.extend(
                (s..=m / 2).flat_map(|s| if s != m - s { vec![s, m - s] } else { vec![s] }),
            );
            break;
        }
    }
    if sampled_sizes.is_empty() || left < 2 {
        return out;
    }
    // Sample the remaining sizes in proportion to their kernel mass, each draw with its
    // complement, every drawn coalition an equal share of the remaining mass.
    let size_mass: Vec<f64> = sampled_sizes.iter().map(|&s| mass[s]).collect();
    let size_total: f64 = size_mass.iter().sum();
    let mut rng = SplitMix(seed);
    let draws = left / 2;
    let each = remaining_mass / (2 * draws) as f64;
    for _ in 0..draws {
        let mut u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * size_total;
        let mut size = sampled_sizes[sampled_sizes.len() - 1];
        for (&s, &w) in sampled_sizes.iter().zip(&size_mass) {
            if u < w {
                size = s;
                break;
            }
            u -= w;
        }
        let mut order: Vec<usize> = (0..m).collect();
        for i in 0..size {
            let j = i + rng.below(m - i);
            order.swap(i, j);
        }
        let mut mask = vec![false; m];
        order[..size].iter().for_each(|&i| mask[i] = true);
        let complement: Vec<bool> = mask.iter().map(|b| !b).collect();
        out.push((mask, each));
        out.push((complement, each));
    }
    out
}

/// Inverts a small symmetric positive definite matrix (Gauss-Jordan, partial pivoting).
fn invert(mut a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for c in 0..n {
        let p = (c..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        inv.swap(c, p);
        let d = a[c][c];
        for j in 0..n {
            a[c][j] /= d;
            inv[c][j] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = a[r][c];
                if f != 0.0 {
                    for j in 0..n {
                        a[r][j] -= f * a[c][j];
                        inv[r][j] -= f * inv[c][j];
                    }
                }
            }
        }
    }
    Some(inv)
}

impl KernelShap {
    pub(super) fn new(
        net: DenseNetwork,
        groups: Vec<Vec<usize>>,
        background: Background,
        samples: usize,
        seed: u64,
    ) -> Result<KernelShap, ExplainError> {
        let bad = |d: &str| ExplainError::NotLinear(format!("kernel: {d}"));
        let first = net.layers.first().ok_or_else(|| bad("no layer"))?;
        let width = first.inputs;
        let m = groups.len();
        if m < 2 || groups.iter().flatten().any(|&c| c >= width) {
            return Err(bad("the attributes do not fill the network's input"));
        }
        if net.layers.last().is_some_and(|l| l.outputs != 1) {
            return Err(bad("the network has more than one output"));
        }
        let b = &background;
        let weight_sum: f64 = b.weights.iter().sum();
        if b.rows.is_empty()
            || b.rows.len() != b.weights.len()
            || b.rows
                .iter()
                .any(|r| r.len() != width || r.iter().any(|x| !x.is_finite()))
            || b.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weight_sum <= 0.0
        {
            return Err(bad(
                "the background is not rows of the input's width with weights",
            ));
        }
        let weights: Vec<f64> = b.weights.iter().map(|w| w / weight_sum).collect();
        let h = first.outputs;
        let part = |row: &[f64], cols: &[usize]| -> Vec<f64> {
            let mut out = vec![0.0; h];
            for &c in cols {
                let w = &first.weights[c * h..(c + 1) * h];
                for (o, &wj) in out.iter_mut().zip(w) {
                    *o += row[c] * f64::from(wj);
                }
            }
            out
        };
        let parts: Vec<Vec<Vec<f64>>> = b
            .rows
            .iter()
            .map(|row| groups.iter().map(|g| part(row, g)).collect())
            .collect();
        let full: Vec<Vec<f64>> = parts
            .iter()
            .map(|p| {
                let mut z: Vec<f64> = first.bias.iter().map(|&x| f64::from(x)).collect();
                for a in p {
                    z.iter_mut().zip(a).for_each(|(z, x)| *z += x);
                }
                z
            })
            .collect();
        let coalitions = choose_coalitions(m, samples.max(2), seed);
        let mut normal = vec![vec![0.0; m - 1]; m - 1];
        for (mask, w) in &coalitions {
            let last = f64::from(u8::from(mask[m - 1]));
            let d: Vec<f64> = (0..m - 1)
                .map(|i| f64::from(u8::from(mask[i])) - last)
                .collect();
            for i in 0..m - 1 {
                for j in 0..m - 1 {
                    normal[i][j] += w * d[i] * d[j];
                }
            }
        }
        let inverse = invert(normal).ok_or_else(|| bad("too few coalitions to solve"))?;
        let sides = coalitions
            .iter()
            .map(|(mask, _)| {
                let members: Vec<usize> = (0..m).filter(|&a| mask[a]).collect();
                if members.len() * 2 <= m {
                    (true, members)
                } else {
                    (false, (0..m).filter(|&a| !mask[a]).collect())
                }
            })
            .collect();
        let full_f32 = full.iter().flatten().map(|&v| v as f32).collect();
        let mut k = KernelShap {
            full_f32,
            sides,
            net,
            groups,
            weights,
            full,
            parts,
            coalitions,
            inverse,
            base: 0.0,
        };
        k.base = (0..k.full.len())
            .map(|bi| k.weights[bi] * k.finish(&k.full[bi]))
            .sum();
        Ok(k)
    }

    pub(super) fn base(&self) -> f64 {
        self.base
    }

    /// Coalitions evaluated per row.
    pub(super) fn coalitions(&self) -> usize {
        self.coalitions.len()
    }

    /// [`KernelShap::finish`] from an f32 pre-activation, in f32 for one hidden layer.
    fn finish_f32(&self, z: &[f32]) -> f64 {
        let layers = &self.net.layers;
        if layers.len() == 2 {
            let out = &layers[1];
            let s: f32 = z
                .iter()
                .zip(&out.weights)
                .map(|(&zi, &w)| zi.max(0.0) * w)
                .sum();
            return f64::from(out.bias[0] + s);
        }
        let wide: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        self.finish(&wide)
    }

    /// The rest of the network from the first layer's pre-activation to the margin.
    fn finish(&self, z: &[f64]) -> f64 {
        let layers = &self.net.layers;
        if layers.len() == 1 {
            return z[0];
        }
        if layers.len() == 2 {
            // The common case (one hidden layer), without allocating.
            let out = &layers[1];
            return f64::from(out.bias[0])
                + z.iter()
                    .zip(&out.weights)
                    .map(|(&zi, &w)| zi.max(0.0) * f64::from(w))
                    .sum::<f64>();
        }
        let mut z: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
        for (k, layer) in layers.iter().enumerate().skip(1) {
            let mut y: Vec<f64> = layer.bias.iter().map(|&b| f64::from(b)).collect();
            for (i, &zi) in z.iter().enumerate() {
                if zi != 0.0 {
                    let row = &layer.weights[i * layer.outputs..(i + 1) * layer.outputs];
                    y.iter_mut()
                        .zip(row)
                        .for_each(|(y, &w)| *y += zi * f64::from(w));
                }
            }
            if k + 1 < layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            z = y;
        }
        z[0]
    }

    /// Per-attribute contributions of row `x` (encoded), and its margin.
    pub(super) fn explain(&self, x: &[f32], contributions: &mut [f64]) -> f64 {
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let margin = self.net.margin(&xs)[0];
        let m = self.groups.len();
        let h = self.full[0].len();
        // The row's own share of the first layer, per attribute.
        let first = &self.net.layers[0];
        let own: Vec<Vec<f64>> = self
            .groups
            .iter()
            .map(|g| {
                let mut out = vec![0.0; h];
                for &c in g {
                    let w = &first.weights[c * h..(c + 1) * h];
                    out.iter_mut()
                        .zip(w)
                        .for_each(|(o, &wj)| *o += xs[c] * f64::from(wj));
                }
                out
            })
            .collect();
        let total = margin - self.base;
        // In f32 (the model's own precision; the regression stays in f64): per background
        // row and attribute, what taking the attribute from this row instead of the
        // background row adds to the first layer's pre-activation, flat [b][a][h].
        let nb = self.weights.len();
        let mut delta = vec![0f32; nb * m * h];
        for (bi, p) in self.parts.iter().enumerate() {
            for (a, (mine, theirs)) in own.iter().zip(p).enumerate() {
                let d = &mut delta[(bi * m + a) * h..(bi * m + a + 1) * h];
                for ((d, x), y) in d.iter_mut().zip(mine).zip(theirs) {
                    *d = (x - y) as f32;
                }
            }
        }
        let full = &self.full_f32;
        // The row's own pre-activation: every attribute from the row.
        let mut row_full: Vec<f64> = first.bias.iter().map(|&b| f64::from(b)).collect();
        for a in &own {
            row_full.iter_mut().zip(a).for_each(|(z, x)| *z += x);
        }
        let row_full: Vec<f32> = row_full.iter().map(|&v| v as f32).collect();
        let mut r = vec![0.0; m - 1];
        let mut z = vec![0f32; h];
        for ((mask, w), (members, side)) in self.coalitions.iter().zip(&self.sides) {
            let mut value = 0.0f64;
            for (bi, bw) in self.weights.iter().enumerate() {
                if *members {
                    // the background row, plus this row's members
                    z.copy_from_slice(&full[bi * h..(bi + 1) * h]);
                    for &a in side {
                        let d = &delta[(bi * m + a) * h..(bi * m + a + 1) * h];
                        z.iter_mut().zip(d).for_each(|(z, d)| *z += d);
                    }
                } else {
                    // this row, less what its non-members would have brought
                    z.copy_from_slice(&row_full);
                    for &a in side {
                        let d = &delta[(bi * m + a) * h..(bi * m + a + 1) * h];
                        z.iter_mut().zip(d).for_each(|(z, d)| *z -= d);
                    }
                }
                value += bw * self.finish_f32(&z);
            }
            let last = f64::from(u8::from(mask[m - 1]));
            let y = value - self.base - last * total;
            for (i, ri) in r.iter_mut().enumerate() {
                *ri += w * (f64::from(u8::from(mask[i])) - last) * y;
            }
        }
        let mut sum = 0.0;
        for (c, row) in contributions.iter_mut().zip(&self.inverse) {
            *c = row.iter().zip(&r).map(|(a, b)| a * b).sum();
            sum += *c;
        }
        contributions[m - 1] = total - sum;
        margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_budgets_enumerate_and_weights_sum_to_one() {
        let all = choose_coalitions(5, 1000, 0);
        assert_eq!(all.len(), 30);
        let sum: f64 = all.iter().map(|(_, w)| w).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let sampled = choose_coalitions(20, 2048, 7);
        assert!(
            sampled.len() <= 2048 && sampled.len() > 2000,
            "{}",
            sampled.len()
        );
        let sum: f64 = sampled.iter().map(|(_, w)| w).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        // Deterministic for a seed.
        assert_eq!(sampled, choose_coalitions(20, 2048, 7));
    }

    #[test]
    fn subsets_are_all_distinct_masks_of_their_size() {
        let s = subsets(6, 3);
        assert_eq!(s.len(), 20);
        assert!(s.iter().all(|m| m.iter().filter(|b| **b).count() == 3));
        let mut sorted = s.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
    }

    #[test]
    fn a_linear_network_gets_its_exact_shapley_values() {
        // One layer, no hidden units: Shapley values are w_A . (x_A - E[b_A]).
        let net = DenseNetwork {
            layers: vec![coffer_trees::DenseLayer {
                weights: vec![0.5, -1.0, 2.0, 0.25],
                inputs: 4,
                outputs: 1,
                bias: vec![0.1],
            }],
            sigmoid: true,
        };
        let background = Background {
            rows: vec![vec![0.0, 1.0, 0.0, 2.0], vec![1.0, 0.0, 1.0, 0.0]],
            weights: vec![3.0, 1.0],
        };
        let groups = vec![vec![0], vec![1, 2], vec![3]];
        let k = KernelShap::new(net, groups, background, 100, 0).unwrap();
        let x = [2.0f32, 0.0, 1.0, 4.0];
        let mut phi = [0.0; 3];
        let margin = k.explain(&x, &mut phi);
        let mean = [0.25, 0.75, 0.25, 1.5];
        let want = [
            0.5 * (2.0 - mean[0]),
            -(0.0 - mean[1]) + 2.0 * (1.0 - mean[2]),
            0.25 * (4.0 - mean[3]),
        ];
        // Exact up to the f32 arithmetic of the coalition values.
        for (a, b) in phi.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{phi:?} vs {want:?}");
        }
        assert!((k.base() + phi.iter().sum::<f64>() - margin).abs() < 1e-12);
    }
}
