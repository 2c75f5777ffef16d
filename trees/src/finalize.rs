//! From accumulated per-row scores to outputs, exactly as onnxruntime's tree aggregators
//! (`tree_ensemble_aggregator.h`) and `write_scores` (`ml_common.h`) do it, in f32.
//!
//! onnxruntime keeps a `ScoreValue { score, has_score }` per output. A score that no leaf
//! touched (`has_score == 0`) reads as 0 when it is written out, even if a base value was added
//! to it; several of the branches below exist only to reproduce that.

use crate::{Aggregate, PostTransform};

/// Classifier or regressor specifics.
#[derive(Clone, Debug)]
pub(crate) enum FinalizerKind {
    Classifier {
        labels: Vec<i64>,
        /// Two classes and every weight is for one class id (onnxruntime's `binary_case_`).
        binary_case: bool,
        /// No weight is negative (onnxruntime's `weights_are_all_positive_`).
        all_positive: bool,
    },
    Regressor {
        aggregate: Aggregate,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Finalizer {
    pub kind: FinalizerKind,
    pub post_transform: PostTransform,
    pub base_values: Vec<f32>,
    pub n_out: usize,
    pub n_trees: usize,
}

/// onnxruntime's `ComputeLogistic`.
#[inline]
pub(crate) fn logistic(val: f32) -> f32 {
    let v = 1.0 / (1.0 + (-val.abs()).exp());
    if val < 0.0 { 1.0 - v } else { v }
}

/// onnxruntime's `ErfInv` (Winitzki's approximation, in f32).
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// onnxruntime's `ComputeProbit`.
#[inline]
pub(crate) fn probit(val: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * val - 1.0)
}

fn softmax(values: &mut [f32]) {
    let mut v_max = -f32::MAX;
    for &v in values.iter() {
        if v > v_max {
            v_max = v;
        }
    }
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - v_max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

fn softmax_zero(values: &mut [f32]) {
    let mut v_max = -f32::MAX;
    for &v in values.iter() {
        if v > v_max {
            v_max = v;
        }
    }
    let exp_neg_v_max = (-v_max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - v_max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_v_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// `write_scores` for two or more scores: `out[j] = transform(has[j] ? scores[j] : 0)`.
fn write_many(post: PostTransform, scores: &[f32], has: &[bool], out: &mut [f32]) {
    for ((o, &s), &h) in out.iter_mut().zip(scores).zip(has) {
        *o = if h { s } else { 0.0 };
    }
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => out.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => out.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => softmax(out),
        PostTransform::SoftmaxZero => softmax_zero(out),
    }
}

impl Finalizer {
    /// Writes one row's outputs. `scores` / `has` hold `n_out` entries (`has` is ignored by the
    /// SUM / AVERAGE single-target regressor, as in onnxruntime); `out` receives `n_out` values.
    pub(crate) fn row(
        &self,
        scores: &mut [f32],
        has: &mut [bool],
        out: &mut [f32],
        label: Option<&mut i64>,
    ) {
        match &self.kind {
            FinalizerKind::Regressor { aggregate } => self.regressor(*aggregate, scores, has, out),
            FinalizerKind::Classifier {
                labels,
                binary_case,
                all_positive,
            } => {
                let l = self.classifier(labels, *binary_case, *all_positive, scores, has, out);
                if let Some(slot) = label {
                    *slot = l;
                }
            }
        }
    }

    fn regressor(
        &self,
        aggregate: Aggregate,
        scores: &mut [f32],
        has: &mut [bool],
        out: &mut [f32],
    ) {
        let base = &self.base_values;
        let n_trees = self.n_trees as f32;
        if self.n_out == 1 {
            // FinalizeScores1.
            let origin = if base.len() == 1 { base[0] } else { 0.0 };
            let s = match aggregate {
                Aggregate::Sum => scores[0] + origin,
                Aggregate::Average => scores[0] / n_trees + origin,
                Aggregate::Min | Aggregate::Max => {
                    if has[0] {
                        scores[0] + origin
                    } else {
                        origin
                    }
                }
            };
            out[0] = if self.post_transform == PostTransform::Probit {
                probit(s)
            } else {
                s
            };
            return;
        }
        let use_base = base.len() == self.n_out;
        match aggregate {
            Aggregate::Sum => {
                if use_base {
                    scores.iter_mut().zip(base).for_each(|(s, b)| *s += b);
                }
            }
            Aggregate::Average => {
                if use_base {
                    scores
                        .iter_mut()
                        .zip(base)
                        .for_each(|(s, b)| *s = *s / n_trees + b);
                } else {
                    scores.iter_mut().for_each(|s| *s /= n_trees);
                }
            }
            Aggregate::Min | Aggregate::Max => {
                for j in 0..self.n_out {
                    let b = if use_base { base[j] } else { 0.0 };
                    scores[j] = b + if has[j] { scores[j] } else { 0.0 };
                }
            }
        }
        write_many(self.post_transform, scores, has, out);
    }

    fn classifier(
        &self,
        labels: &[i64],
        binary_case: bool,
        all_positive: bool,
        scores: &mut [f32],
        has: &mut [bool],
        out: &mut [f32],
    ) -> i64 {
        let base = &self.base_values;
        let post = self.post_transform;
        if self.n_out > 2 {
            for (k, &b) in base.iter().enumerate() {
                if has[k] {
                    scores[k] += b;
                } else {
                    has[k] = true;
                    scores[k] = b;
                }
            }
            // First class with the largest score among those that have one.
            let mut best: Option<usize> = None;
            for k in 0..self.n_out {
                if has[k] && best.is_none_or(|b| scores[k] > scores[b]) {
                    best = Some(k);
                }
            }
            // onnxruntime fails the whole call when no class has a score; take the first class.
            let label = labels[best.unwrap_or(0)];
            write_many(post, scores, has, out);
            return label;
        }

        // Two classes.
        let mut add_second_class: i32 = -1;
        let mut single = false; // the second score was dropped ("pop_back")
        match base.len() {
            2 => {
                if has[1] {
                    // base_values[0] is not used (onnxruntime assumes both are equal).
                    scores[1] = base[1] + scores[0];
                    scores[0] = -scores[1];
                } else {
                    scores[1] += base[1];
                    scores[0] += base[0];
                }
            }
            1 => {
                scores[0] += base[0];
                single = !has[1];
            }
            0 => {
                add_second_class = 3;
                single = !has[1];
            }
            _ => {}
        }

        // _set_score_binary.
        let (s0, h0) = (scores[0], has[0]);
        let (s1, h1) = if !single && has[1] {
            (scores[1], true)
        } else {
            (0.0, false)
        };
        let pos_weight = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        let label = if binary_case {
            if all_positive {
                if pos_weight > 0.5 {
                    add_second_class = 0;
                    labels[1]
                } else {
                    add_second_class = 1;
                    labels[0]
                }
            } else if pos_weight > 0.0 {
                add_second_class = 2;
                labels[1]
            } else {
                add_second_class = 3;
                labels[0]
            }
        } else if pos_weight > 0.0 {
            1
        } else {
            0
        };

        if !single {
            write_many(post, scores, has, out);
            return label;
        }
        // One score: onnxruntime derives the second one.
        let v = if h0 { s0 } else { 0.0 };
        if post == PostTransform::Probit {
            out[0] = probit(v);
            out[1] = 0.0; // left unwritten by onnxruntime
            return label;
        }
        match add_second_class {
            // onnxruntime >= 1.2x applies LOGISTIC here whatever the weights' signs.
            0..=3 if post == PostTransform::Logistic => {
                out[0] = logistic(-v);
                out[1] = logistic(v);
            }
            0 | 1 => {
                out[0] = 1.0 - v;
                out[1] = v;
            }
            2 | 3 => {
                out[0] = -v;
                out[1] = v;
            }
            _ => {
                out[0] = v;
                out[1] = 0.0; // left unwritten by onnxruntime
            }
        }
        label
    }
}
