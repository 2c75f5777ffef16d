//! Shadow evaluation: a candidate scoring version sees a fraction of the live requests
//! of its model name, scored after the active version has answered, off the request
//! path (its own batcher thread; a full candidate queue skips the comparison instead
//! of waiting). It never changes or delays an answer. Per candidate it accumulates
//! decision agreement at the candidate's threshold, mean and max score difference, and
//! both score distributions for their PSI.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::score::{BatchError, LoadedModel};
use crate::tensor::Tensor;

/// Score bins for the two distributions: tenths of [0, 1].
const BINS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

pub use coffer_admin_api::reports::{ShadowReport, ShadowStats};

/// One candidate in shadow.
#[derive(Debug)]
pub struct Shadow {
    pub candidate: Arc<LoadedModel>,
    pub active_version: String,
    pub fraction: f64,
    pub started_at_ms: u64,
    score_output: String,
    score_column: usize,
    threshold: f64,
    stats: Mutex<ShadowStats>,
    tick: AtomicU64,
}

impl Shadow {
    pub fn new(candidate: Arc<LoadedModel>, active_version: String, fraction: f64) -> Shadow {
        let (score_output, score_column, threshold) = match &candidate.manifest.eval {
            Some(g) => (g.score_output.clone(), g.score_column, g.decision_threshold),
            None => (
                candidate
                    .manifest
                    .io
                    .outputs
                    .first()
                    .map(|o| o.name.clone())
                    .unwrap_or_default(),
                0,
                0.5,
            ),
        };
        Shadow {
            candidate,
            active_version,
            fraction: fraction.clamp(0.0, 1.0),
            started_at_ms: crate::lifecycle::registry::now_ms(),
            score_output,
            score_column,
            threshold,
            stats: Mutex::new(ShadowStats {
                active_bins: vec![0; BINS.len() + 1],
                candidate_bins: vec![0; BINS.len() + 1],
                ..ShadowStats::default()
            }),
            tick: AtomicU64::new(0),
        }
    }

    /// Whether this request is sampled: evenly spread, `fraction` of the requests.
    fn sampled(&self) -> bool {
        let n = self.tick.fetch_add(1, Ordering::Relaxed);
        let before = (n as f64 * self.fraction).floor();
        let after = ((n + 1) as f64 * self.fraction).floor();
        after > before
    }

    fn scores(&self, outputs: &[Tensor]) -> Option<Vec<f64>> {
        let t = outputs.iter().find(|o| o.name == self.score_output)?;
        let width = t.row_len().max(1);
        (0..t.rows())
            .map(|r| t.data.get_f64(r * width + self.score_column))
            .collect()
    }

    /// Scores `inputs` with the candidate and compares with the active's `outputs`.
    async fn compare(self: Arc<Self>, inputs: Vec<Tensor>, rows: usize, active: Vec<f64>) {
        let result = self.candidate.batcher.submit(inputs, rows).await;
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.requests += 1;
        let candidate = match result {
            Err(BatchError::QueueFull) => {
                stats.skipped += 1;
                return;
            }
            Err(_) => {
                stats.failed += 1;
                return;
            }
            Ok(outputs) => match self.scores(&outputs) {
                Some(c) if c.len() == active.len() && c.iter().all(|x| x.is_finite()) => c,
                _ => {
                    stats.failed += 1;
                    return;
                }
            },
        };
        for (a, c) in active.iter().zip(&candidate) {
            let diff = (a - c).abs();
            stats.rows += 1;
            stats.sum_abs_diff += diff;
            stats.max_abs_diff = stats.max_abs_diff.max(diff);
            if (*a >= self.threshold) == (*c >= self.threshold) {
                stats.agree += 1;
            }
            stats.active_bins[coffer_models::drift::bin_index(&BINS, *a)] += 1;
            stats.candidate_bins[coffer_models::drift::bin_index(&BINS, *c)] += 1;
        }
    }

    pub fn report(&self) -> ShadowReport {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let rows = stats.rows;
        ShadowReport {
            model: self.candidate.manifest.name.clone(),
            candidate: self.candidate.manifest.version.clone(),
            active: self.active_version.clone(),
            fraction: self.fraction,
            started_at_ms: self.started_at_ms,
            decision_threshold: self.threshold,
            rows,
            agreement: (rows > 0).then(|| stats.agree as f64 / rows as f64),
            mean_abs_diff: (rows > 0).then(|| stats.sum_abs_diff / rows as f64),
            max_abs_diff: stats.max_abs_diff,
            score_psi: coffer_models::drift::psi_counts(&stats.active_bins, &stats.candidate_bins),
            stats,
        }
    }
}

/// The candidates in shadow, by model name; read on every infer request.
#[derive(Debug, Default)]
pub struct ShadowSet {
    by_name: ArcSwap<HashMap<String, Arc<Shadow>>>,
    writer: Mutex<()>,
}

/// A sampled request: keep its inputs until the active version has answered.
#[derive(Debug)]
pub struct Sampled {
    shadow: Arc<Shadow>,
    inputs: Vec<Tensor>,
    rows: usize,
}

impl ShadowSet {
    pub fn get(&self, name: &str) -> Option<Arc<Shadow>> {
        self.by_name.load().get(name).cloned()
    }

    pub fn set(&self, shadow: Arc<Shadow>) -> Option<Arc<Shadow>> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.by_name.load());
        let old = next.insert(shadow.candidate.manifest.name.clone(), shadow);
        self.by_name.store(Arc::new(next));
        old
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Shadow>> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.by_name.load());
        let old = next.remove(name);
        self.by_name.store(Arc::new(next));
        old
    }

    /// Called before the active version runs: a copy of the inputs when sampled. One
    /// map lookup when no shadow runs.
    pub fn sample(&self, name: &str, inputs: &[Tensor], rows: usize) -> Option<Sampled> {
        let shadow = self.by_name.load().get(name).cloned()?;
        shadow.sampled().then(|| Sampled {
            shadow,
            inputs: inputs.to_vec(),
            rows,
        })
    }
}

impl Sampled {
    /// Hands the comparison to a task of its own after the active version answered.
    pub fn compare_after(self, active_outputs: &[Tensor]) {
        let Some(active) = self.shadow.scores(active_outputs) else {
            return;
        };
        tokio::spawn(Arc::clone(&self.shadow).compare(self.inputs, self.rows, active));
    }
}
