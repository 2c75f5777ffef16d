//! Online drift of a scoring model version against the reference distributions in its
//! manifest (`[drift]`): binned counts of live inputs and scores per window (the
//! current and the previous UTC hour and day), in bounded memory (bins × features ×
//! four windows), persisted in sled, and the Population Stability Index of the score
//! and of each feature (CSI) read as stable / watch / act. The batcher thread feeds it
//! ([`crate::score::BatchObserver`]); [`monitor`] persists, publishes and alerts.

pub mod monitor;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_models::drift::{Reading, bin_index, psi};
use coffer_models::{DriftReference, Manifest};
use serde::{Deserialize, Serialize};

use crate::score::{BatchObserver, Tensor};

/// The windows kept, by name and length in seconds (aligned to UTC).
pub const WINDOWS: [(&str, u64); 2] = [("hour", 3600), ("day", 86_400)];

/// Binned counts of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Unix seconds at which the window starts.
    pub start: u64,
    pub rows: u64,
    pub score: Vec<u64>,
    pub features: Vec<Vec<u64>>,
}

impl Counts {
    fn empty(reference: &DriftReference, start: u64) -> Counts {
        Counts {
            start,
            rows: 0,
            score: vec![0; reference.score.proportions.len()],
            features: reference
                .features
                .iter()
                .map(|f| vec![0; f.proportions.len()])
                .collect(),
        }
    }

    fn fits(&self, reference: &DriftReference) -> bool {
        self.score.len() == reference.score.proportions.len()
            && self.features.len() == reference.features.len()
            && self
                .features
                .iter()
                .zip(&reference.features)
                .all(|(c, f)| c.len() == f.proportions.len())
    }
}

/// The current and the previous window of one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPair {
    pub current: Counts,
    pub previous: Option<Counts>,
}

/// What is persisted per model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftState {
    pub windows: Vec<WindowPair>,
}

/// PSI of one distribution in one window.
#[derive(Debug, Clone, Serialize)]
pub struct Psi {
    /// `score` or the feature's name.
    pub name: String,
    pub psi: f64,
    /// `stable`, `watch` or `act`; `too few rows` below the minimum.
    pub reading: &'static str,
}

/// One window's report.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// `hour`, `day`, `previous hour`, `previous day`.
    pub window: String,
    pub start: u64,
    pub rows: u64,
    pub score: Option<Psi>,
    /// Features by descending CSI.
    pub features: Vec<Psi>,
}

/// Drift of one served model version.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub model: String,
    pub version: String,
    pub psi_watch: f64,
    pub psi_act: f64,
    pub min_rows: u64,
    pub windows: Vec<WindowReport>,
}

/// Where each feature reference reads its values.
#[derive(Debug)]
struct Column {
    input: usize,
    column: usize,
}

/// The tracker of one model version.
#[derive(Debug)]
pub struct DriftTracker {
    pub model: String,
    pub version: String,
    reference: DriftReference,
    columns: Vec<Column>,
    score_output: String,
    min_rows: u64,
    state: Mutex<(DriftState, bool)>,
    /// The last reading alerted per (window start, distribution).
    alerted: Mutex<HashMap<(String, u64, String), Reading>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl DriftTracker {
    /// A tracker for a manifest with `[drift]`, resuming from `saved` when it matches
    /// the reference's bins (a state saved for other bins is dropped).
    pub fn new(
        manifest: &Manifest,
        saved: Option<DriftState>,
        min_rows: u64,
    ) -> Option<DriftTracker> {
        let reference = manifest.drift.clone()?;
        let columns = reference
            .features
            .iter()
            .map(|f| Column {
                input: manifest
                    .io
                    .inputs
                    .iter()
                    .position(|i| i.name == f.input)
                    .unwrap_or(usize::MAX),
                column: f.column,
            })
            .collect();
        let now = now_secs();
        let fresh = DriftState {
            windows: WINDOWS
                .iter()
                .map(|(_, len)| WindowPair {
                    current: Counts::empty(&reference, now - now % len),
                    previous: None,
                })
                .collect(),
        };
        let state = saved
            .filter(|s| {
                s.windows.len() == WINDOWS.len()
                    && s.windows.iter().all(|w| {
                        w.current.fits(&reference)
                            && w.previous.as_ref().is_none_or(|p| p.fits(&reference))
                    })
            })
            .unwrap_or(fresh);
        Some(DriftTracker {
            model: manifest.name.clone(),
            version: manifest.version.clone(),
            score_output: reference.score.output.clone(),
            reference,
            columns,
            min_rows,
            state: Mutex::new((state, false)),
            alerted: Mutex::new(HashMap::new()),
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut DriftState, &mut bool) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, dirty) = &mut *guard;
        f(state, dirty)
    }

    /// Moves windows that have ended to `previous` (an empty one if a whole window
    /// passed without traffic).
    fn roll(&self, state: &mut DriftState, now: u64) {
        for (pair, (_, len)) in state.windows.iter_mut().zip(WINDOWS) {
            let start = now - now % len;
            if pair.current.start != start {
                let ended =
                    std::mem::replace(&mut pair.current, Counts::empty(&self.reference, start));
                pair.previous = if ended.start + len == start {
                    Some(ended)
                } else {
                    Some(Counts::empty(&self.reference, start - len))
                };
            }
        }
    }

    /// The state to persist, when it changed since the last call.
    pub fn take_dirty(&self) -> Option<DriftState> {
        self.with_state(|state, dirty| std::mem::take(dirty).then(|| state.clone()))
    }

    /// PSI of the score and every feature in each window.
    pub fn report(&self) -> DriftReport {
        let now = now_secs();
        let windows = self.with_state(|state, _| {
            self.roll(state, now);
            let mut out = Vec::new();
            for (pair, (name, _)) in state.windows.iter().zip(WINDOWS) {
                out.push(self.window_report(name.to_string(), &pair.current));
                if let Some(prev) = &pair.previous {
                    out.push(self.window_report(format!("previous {name}"), prev));
                }
            }
            out
        });
        DriftReport {
            model: self.model.clone(),
            version: self.version.clone(),
            psi_watch: self.reference.psi_watch,
            psi_act: self.reference.psi_act,
            min_rows: self.min_rows,
            windows,
        }
    }

    fn reading(&self, rows: u64, value: f64) -> &'static str {
        if rows < self.min_rows {
            "too few rows"
        } else {
            Reading::of(value, self.reference.psi_watch, self.reference.psi_act).as_str()
        }
    }

    fn window_report(&self, window: String, counts: &Counts) -> WindowReport {
        let score = psi(&self.reference.score.proportions, &counts.score).map(|v| Psi {
            name: "score".into(),
            psi: v,
            reading: self.reading(counts.rows, v),
        });
        let mut features: Vec<Psi> = self
            .reference
            .features
            .iter()
            .zip(&counts.features)
            .filter_map(|(f, c)| {
                psi(&f.proportions, c).map(|v| Psi {
                    name: f.name.clone(),
                    psi: v,
                    reading: self.reading(counts.rows, v),
                })
            })
            .collect();
        features.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        WindowReport {
            window,
            start: counts.start,
            rows: counts.rows,
            score,
            features,
        }
    }

    /// The readings that got worse since they were last alerted (current windows with
    /// at least `min_rows` rows): (window, distribution, PSI, reading).
    pub fn new_alerts(&self, report: &DriftReport) -> Vec<(String, String, f64, Reading)> {
        let mut alerted = self.alerted.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for w in report
            .windows
            .iter()
            .filter(|w| !w.window.starts_with("previous"))
        {
            if w.rows < self.min_rows {
                continue;
            }
            for p in w.score.iter().chain(&w.features) {
                let reading = Reading::of(p.psi, report.psi_watch, report.psi_act);
                let key = (w.window.clone(), w.start, p.name.clone());
                let before = alerted.get(&key).copied().unwrap_or(Reading::Stable);
                if reading > before {
                    alerted.insert(key, reading);
                    out.push((w.window.clone(), p.name.clone(), p.psi, reading));
                }
            }
        }
        out
    }
}

impl BatchObserver for DriftTracker {
    fn inputs(&self, inputs: &[Tensor]) {
        let now = now_secs();
        self.with_state(|state, dirty| {
            self.roll(state, now);
            for (i, (f, col)) in self
                .reference
                .features
                .iter()
                .zip(&self.columns)
                .enumerate()
            {
                let Some(t) = inputs.get(col.input) else {
                    continue;
                };
                let width = t.row_len().max(1);
                let mut bins = vec![0u64; f.proportions.len()];
                let last = bins.len() - 1;
                for r in 0..t.rows() {
                    if let Some(x) = t.data.get_f64(r * width + col.column) {
                        bins[bin_index(&f.edges, x).min(last)] += 1;
                    }
                }
                for pair in &mut state.windows {
                    for (c, b) in pair.current.features[i].iter_mut().zip(&bins) {
                        *c += b;
                    }
                }
            }
            *dirty = true;
        });
    }

    fn outputs(&self, outputs: &[Tensor]) {
        let Some(t) = outputs.iter().find(|o| o.name == self.score_output) else {
            return;
        };
        let width = t.row_len().max(1);
        let column = self.reference.score.column;
        let mut bins = vec![0u64; self.reference.score.proportions.len()];
        let last = bins.len() - 1;
        for r in 0..t.rows() {
            if let Some(x) = t.data.get_f64(r * width + column) {
                bins[bin_index(&self.reference.score.edges, x).min(last)] += 1;
            }
        }
        let rows = t.rows() as u64;
        self.with_state(|state, dirty| {
            for pair in &mut state.windows {
                pair.current.rows += rows;
                for (c, b) in pair.current.score.iter_mut().zip(&bins) {
                    *c += b;
                }
            }
            *dirty = true;
        });
    }
}
