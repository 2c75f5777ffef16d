//! Online drift of a scoring model version against the reference distributions in its
//! manifest (`[drift]`): binned counts of live inputs and scores per window (the
//! current and the previous UTC hour and day), in bounded memory (bins × features ×
//! four windows), persisted in sled, and the Population Stability Index of the score
//! and of each feature (CSI) read as stable / watch / act. The batcher thread feeds it
//! ([`crate::tensor::BatchObserver`]); [`monitor`] persists, publishes and alerts.

pub mod monitor;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_models::drift::{Reading, bin_index, psi};
use coffer_models::{DriftReference, Manifest};
use serde::{Deserialize, Serialize};

use crate::tensor::{BatchObserver, Tensor};

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
    /// sha256 of the reference the counts were binned against: counts saved for other
    /// bins are dropped, not misread.
    #[serde(default)]
    pub reference: String,
    pub windows: Vec<WindowPair>,
    /// Per window length, the start of the last closed window that was reported
    /// (alerts and telemetry go out once per closed window, also across restarts).
    #[serde(default)]
    pub reported: Vec<u64>,
    /// Alerts raised in the current windows: (window, start, distribution, level 1 =
    /// watch, 2 = act); kept with the counts so that a restart does not repeat them.
    #[serde(default)]
    pub alerted: Vec<(String, u64, String, u8)>,
}

pub use coffer_admin_api::reports::{DriftReport, Psi, WindowReport};

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
}

/// A closed window's final PSI values, reported once (telemetry).
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub window: String,
    pub start: u64,
    pub rows: u64,
    pub psi: Vec<(String, f64)>,
}

/// A reading that got worse in a current window.
#[derive(Debug, Clone)]
pub struct Alert {
    pub window: String,
    pub start: u64,
    pub distribution: String,
    pub psi: f64,
    pub reading: Reading,
}

fn level(r: Reading) -> u8 {
    match r {
        Reading::Stable => 0,
        Reading::Watch => 1,
        Reading::Act => 2,
    }
}

fn reference_digest(reference: &DriftReference) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(reference).unwrap_or_default(),
    ))
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
        let digest = reference_digest(&reference);
        let fresh = DriftState {
            reference: digest.clone(),
            windows: WINDOWS
                .iter()
                .map(|(_, len)| WindowPair {
                    current: Counts::empty(&reference, now - now % len),
                    previous: None,
                })
                .collect(),
            reported: vec![0; WINDOWS.len()],
            alerted: Vec::new(),
        };
        let state = saved
            .filter(|s| {
                s.reference == digest
                    && s.windows.len() == WINDOWS.len()
                    && s.windows.iter().all(|w| {
                        w.current.fits(&reference)
                            && w.previous.as_ref().is_none_or(|p| p.fits(&reference))
                    })
            })
            .map(|mut s| {
                s.reported.resize(WINDOWS.len(), 0);
                s
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
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut DriftState, &mut bool) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, dirty) = &mut *guard;
        f(state, dirty)
    }

    /// Moves windows that have ended to `previous` (an empty one if a whole window
    /// passed without traffic). A clock that went back keeps counting into the current
    /// window rather than starting an earlier one.
    fn roll(&self, state: &mut DriftState, now: u64) {
        for (pair, (_, len)) in state.windows.iter_mut().zip(WINDOWS) {
            let start = now - now % len;
            if start > pair.current.start {
                let ended =
                    std::mem::replace(&mut pair.current, Counts::empty(&self.reference, start));
                pair.previous = if ended.start + len == start {
                    Some(ended)
                } else {
                    Some(Counts::empty(&self.reference, start.saturating_sub(len)))
                };
            }
        }
    }

    /// The state to persist, when it changed since the last call.
    pub fn take_dirty(&self) -> Option<DriftState> {
        self.with_state(|state, dirty| std::mem::take(dirty).then(|| state.clone()))
    }

    /// PSI of the score and every feature in each window (computed outside the lock
    /// the batcher takes).
    pub fn report(&self) -> DriftReport {
        let now = now_secs();
        let windows = self.with_state(|state, _| {
            self.roll(state, now);
            state.windows.clone()
        });
        let mut out = Vec::new();
        for (pair, (name, _)) in windows.iter().zip(WINDOWS) {
            out.push(self.window_report(name.to_string(), &pair.current));
            if let Some(prev) = &pair.previous {
                out.push(self.window_report(format!("previous {name}"), prev));
            }
        }
        DriftReport {
            model: self.model.clone(),
            version: self.version.clone(),
            psi_watch: self.reference.psi_watch,
            psi_act: self.reference.psi_act,
            min_rows: self.min_rows,
            windows: out,
        }
    }

    /// Closed windows not reported yet (with at least `min_rows` rows), each returned
    /// once; the mark is persisted with the counts.
    pub fn take_closed(&self) -> Vec<ClosedWindow> {
        let now = now_secs();
        let closed: Vec<(usize, Counts)> = self.with_state(|state, dirty| {
            self.roll(state, now);
            let mut out = Vec::new();
            for (i, pair) in state.windows.iter().enumerate() {
                let Some(prev) = &pair.previous else { continue };
                if prev.start > state.reported[i] {
                    state.reported[i] = prev.start;
                    *dirty = true;
                    out.push((i, prev.clone()));
                }
            }
            out
        });
        closed
            .into_iter()
            .filter(|(_, c)| c.rows >= self.min_rows)
            .map(|(i, c)| {
                let report = self.window_report(WINDOWS[i].0.to_string(), &c);
                ClosedWindow {
                    window: WINDOWS[i].0.to_string(),
                    start: c.start,
                    rows: c.rows,
                    psi: report
                        .score
                        .iter()
                        .chain(&report.features)
                        .map(|p| (p.name.clone(), p.psi))
                        .collect(),
                }
            })
            .collect()
    }

    /// Readings of the current windows (with at least `min_rows` rows) that reached
    /// "watch" or "act" for the first time in that window; each level alerts once per
    /// window and distribution, also across restarts.
    pub fn take_alerts(&self, report: &DriftReport) -> Vec<Alert> {
        let current: Vec<&WindowReport> = report
            .windows
            .iter()
            .filter(|w| !w.window.starts_with("previous") && w.rows >= self.min_rows)
            .collect();
        self.with_state(|state, dirty| {
            let starts: Vec<u64> = state.windows.iter().map(|p| p.current.start).collect();
            let before = state.alerted.len();
            state
                .alerted
                .retain(|(_, start, _, _)| starts.contains(start));
            let mut out = Vec::new();
            for w in current {
                for p in w.score.iter().chain(&w.features) {
                    let reading =
                        Reading::of(p.psi, self.reference.psi_watch, self.reference.psi_act);
                    if reading == Reading::Stable {
                        continue;
                    }
                    let mark = state.alerted.iter_mut().find(|(win, start, name, _)| {
                        *win == w.window && *start == w.start && *name == p.name
                    });
                    let was = mark.as_ref().map_or(0, |m| m.3);
                    if level(reading) > was {
                        match mark {
                            Some(m) => m.3 = level(reading),
                            None => state.alerted.push((
                                w.window.clone(),
                                w.start,
                                p.name.clone(),
                                level(reading),
                            )),
                        }
                        out.push(Alert {
                            window: w.window.clone(),
                            start: w.start,
                            distribution: p.name.clone(),
                            psi: p.psi,
                            reading,
                        });
                    }
                }
            }
            if !out.is_empty() || state.alerted.len() != before {
                *dirty = true;
            }
            out
        })
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
            reading: self.reading(counts.rows, v).into(),
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
                    reading: self.reading(counts.rows, v).into(),
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
}

impl BatchObserver for DriftTracker {
    fn inputs(&self, inputs: &[Tensor]) {
        // Binned outside the lock into one list of (feature, bin) hits (one allocation a
        // batch: most batches are a single row); the lock only adds them up.
        let mut hits: Vec<(u32, u32)> = Vec::new();
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
            let last = f.proportions.len().saturating_sub(1);
            if hits.capacity() == 0 {
                hits.reserve(t.rows() * self.columns.len());
            }
            for r in 0..t.rows() {
                if let Some(x) = t.data.get_f64(r * width + col.column) {
                    hits.push((i as u32, bin_index(&f.edges, x).min(last) as u32));
                }
            }
        }
        let now = now_secs();
        self.with_state(|state, dirty| {
            self.roll(state, now);
            for pair in &mut state.windows {
                let features = &mut pair.current.features;
                for &(i, b) in &hits {
                    if let Some(c) = features
                        .get_mut(i as usize)
                        .and_then(|f| f.get_mut(b as usize))
                    {
                        *c += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn manifest() -> Manifest {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/fixtures/credit-lr/1.0.0/manifest.toml");
        Manifest::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn feed(t: &DriftTracker, value: f64, score: f32, rows: usize) {
        let width = t.reference.features.len();
        let mut data = vec![0f32; rows * width];
        for r in 0..rows {
            data[r * width] = value as f32;
        }
        t.inputs(&[Tensor {
            name: "features".into(),
            shape: vec![rows, width],
            data: TensorData::F32(data),
        }]);
        t.outputs(&[Tensor {
            name: t.score_output.clone(),
            shape: vec![rows, 1],
            data: TensorData::F32(vec![score; rows]),
        }]);
    }

    #[test]
    fn windows_roll_over_gaps_and_ignore_a_clock_that_went_back() {
        let t = DriftTracker::new(&manifest(), None, 10).unwrap();
        feed(&t, 5.0, 0.3, 20);
        t.with_state(|state, _| {
            let start = state.windows[0].current.start;
            // The clock goes back an hour: still the same window.
            t.roll(state, start - 10);
            assert_eq!(state.windows[0].current.start, start);
            assert_eq!(state.windows[0].current.rows, 20);
            // The next hour: the counts move to "previous".
            t.roll(state, start + 3600);
            assert_eq!(state.windows[0].previous.as_ref().unwrap().rows, 20);
            assert_eq!(state.windows[0].current.rows, 0);
            // Three quiet hours later: "previous" is the empty hour before now.
            t.roll(state, start + 4 * 3600 + 5);
            let prev = state.windows[0].previous.as_ref().unwrap();
            assert_eq!((prev.start, prev.rows), (start + 3 * 3600, 0));
        });
        // Early in the epoch nothing underflows.
        t.with_state(|state, _| t.roll(state, 5));
    }

    #[test]
    fn alerts_fire_once_per_level_and_window_also_after_a_restart() {
        let m = manifest();
        let t = DriftTracker::new(&m, None, 10).unwrap();
        let top = *t.reference.features[0].edges.last().unwrap();
        feed(&t, top + 100.0, 0.3, 50);
        let report = t.report();
        let alerts = t.take_alerts(&report);
        assert!(
            alerts.iter().any(
                |a| a.distribution == t.reference.features[0].name && a.reading == Reading::Act
            ),
            "{alerts:?}"
        );
        assert!(t.take_alerts(&t.report()).is_empty(), "not twice");
        // Saved and reloaded: the marks come back with the counts.
        let saved = t.take_dirty().unwrap();
        let again = DriftTracker::new(&m, Some(saved.clone()), 10).unwrap();
        assert!(again.take_alerts(&again.report()).is_empty());
        assert_eq!(again.report().windows[0].rows, 50);
        // Counts saved for other bins are dropped, not misread.
        let mut other = saved;
        other.reference = "0".repeat(64);
        let fresh = DriftTracker::new(&m, Some(other), 10).unwrap();
        assert_eq!(fresh.report().windows[0].rows, 0);
    }
}
