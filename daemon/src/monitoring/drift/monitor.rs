//! Persists, publishes and alerts on drift: every `drift_interval` the current
//! windows' PSI values become gauges (`coffer_drift_psi{model,version,window,distribution}`,
//! `coffer_drift_rows`); a reading of a current window (at least `min_rows` rows)
//! that reaches "watch" or "act" for the first time in that window is logged, written
//! to the audit log (`drift_alert`) and sent as a telemetry event, once per level;
//! each window that closed (an hour, a day) with at least `min_rows` rows is sent once
//! as a telemetry record of its final PSI values (no row count, no values: bin-level
//! aggregates only). Counts and marks are saved to sled (tree `drift`, `name@version`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{DriftState, DriftTracker};
use crate::audit::{AuditEvent, AuditLog};
use crate::telemetry::Telemetry;

/// The sled tree of persisted drift counts.
#[derive(Debug, Clone)]
pub struct DriftStore {
    tree: sled::Tree,
    pub min_rows: u64,
}

impl DriftStore {
    pub fn open(db: &sled::Db, min_rows: u64) -> Result<DriftStore, sled::Error> {
        Ok(DriftStore {
            tree: db.open_tree("drift")?,
            min_rows,
        })
    }

    /// Forgets a removed version's counts.
    pub fn forget(&self, model: &str, version: &str) {
        if let Err(e) = self.tree.remove(format!("{model}@{version}")) {
            tracing::warn!(%model, %version, error = %e, "drift counts not removed");
        }
    }

    pub fn load(&self, model: &str, version: &str) -> Option<DriftState> {
        let bytes = self.tree.get(format!("{model}@{version}")).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, model: &str, version: &str, state: &DriftState) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(state).unwrap_or_default();
        self.tree.insert(format!("{model}@{version}"), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Saves every tracker whose counts changed.
    pub fn save_all(&self, trackers: &[Arc<DriftTracker>]) {
        for t in trackers {
            if let Some(state) = t.take_dirty() {
                if let Err(e) = self.save(&t.model, &t.version, &state) {
                    tracing::warn!(model = %t.model, version = %t.version, error = %e, "drift counts not saved");
                }
            }
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PsiLabels {
    model: String,
    version: String,
    window: String,
    distribution: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    model: String,
    version: String,
    window: String,
}

/// Drift gauges.
#[derive(Debug, Clone)]
pub struct DriftMetrics {
    psi: Family<PsiLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rows: Family<RowLabels, Gauge>,
}

impl DriftMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            psi: Family::default(),
            rows: Family::default(),
        };
        registry.register(
            "drift_psi",
            "Population Stability Index against the release's reference, per window and distribution (score or feature), once the window has min_rows rows",
            m.psi.clone(),
        );
        registry.register(
            "drift_rows",
            "Rows observed for drift in the window",
            m.rows.clone(),
        );
        m
    }
}

/// One publication round: gauges of the current windows, then each window that closed
/// since the last round, once: its PSI values as a telemetry record and, for every
/// distribution reading "watch" or worse, an alert (log, audit, telemetry event);
/// then the counts are saved (with the "reported" marks, so a restart does not repeat
/// them).
pub fn publish(
    store: &DriftStore,
    trackers: &[Arc<DriftTracker>],
    metrics: &DriftMetrics,
    audit: Option<&AuditLog>,
    telemetry: &Telemetry,
) {
    for t in trackers {
        let report = t.report();
        for w in report
            .windows
            .iter()
            .filter(|w| !w.window.starts_with("previous"))
        {
            metrics
                .rows
                .get_or_create(&RowLabels {
                    model: t.model.clone(),
                    version: t.version.clone(),
                    window: w.window.clone(),
                })
                .set(w.rows as i64);
            // Below min_rows a window has no reading: NaN, not the last hour's value.
            let enough = w.rows >= store.min_rows;
            for p in w.score.iter().chain(&w.features) {
                metrics
                    .psi
                    .get_or_create(&PsiLabels {
                        model: t.model.clone(),
                        version: t.version.clone(),
                        window: w.window.clone(),
                        distribution: p.name.clone(),
                    })
                    .set(if enough { p.psi } else { f64::NAN });
            }
        }
        for alert in t.take_alerts(&report) {
            tracing::warn!(model = %t.model, version = %t.version, window = %alert.window, start = alert.start, distribution = %alert.distribution, psi = alert.psi, reading = alert.reading.as_str(), "model drift");
            telemetry.event(
                coffer_privacy::telemetry::EventKind::DriftAlert,
                Some(&t.model),
                Some(&t.version),
            );
            if let Some(a) = audit {
                a.record_blocking(AuditEvent::DriftAlert {
                    model: t.model.clone(),
                    version: t.version.clone(),
                    window: alert.window,
                    distribution: alert.distribution,
                    psi: alert.psi,
                    reading: alert.reading.as_str().into(),
                });
            }
        }
        for closed in t.take_closed() {
            telemetry.drift(&t.model, &t.version, &closed.window, closed.psi);
        }
    }
    store.save_all(trackers);
}

/// Runs [`publish`] every `interval` until dropped; `trackers` reads the served ones.
pub fn spawn(
    store: DriftStore,
    interval: Duration,
    trackers: Arc<dyn Fn() -> Vec<Arc<DriftTracker>> + Send + Sync>,
    metrics: DriftMetrics,
    audit: Option<Arc<AuditLog>>,
    telemetry: Arc<Telemetry>,
) -> tokio::task::JoinHandle<()> {
    crate::periodic::every(interval, move || {
        let (store, trackers, metrics, audit, telemetry) = (
            store.clone(),
            trackers(),
            metrics.clone(),
            audit.clone(),
            Arc::clone(&telemetry),
        );
        Box::new(move || publish(&store, &trackers, &metrics, audit.as_deref(), &telemetry))
    })
}
