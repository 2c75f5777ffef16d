//! Persists, publishes and alerts on drift: every `flush` interval the trackers of the
//! served scoring versions are saved to sled (tree `drift`, key `name@version`),
//! their PSI values set as gauges (`coffer_drift_psi{model,version,window,distribution}`,
//! `coffer_drift_rows`), and a reading that got worse in a current window (stable →
//! watch → act, with at least `min_rows` rows) is logged, written to the audit log
//! (`drift_alert`) and sent as a telemetry event. One aggregate telemetry record per
//! version and window carries the PSI values (never a row, only bin-level aggregates).

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

/// One publication round: save, gauges, alerts, telemetry.
pub fn publish(
    store: &DriftStore,
    trackers: &[Arc<DriftTracker>],
    metrics: &DriftMetrics,
    audit: Option<&AuditLog>,
    telemetry: &Telemetry,
) {
    store.save_all(trackers);
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
            if w.rows < store.min_rows {
                continue;
            }
            let mut values = Vec::new();
            for p in w.score.iter().chain(&w.features) {
                metrics
                    .psi
                    .get_or_create(&PsiLabels {
                        model: t.model.clone(),
                        version: t.version.clone(),
                        window: w.window.clone(),
                        distribution: p.name.clone(),
                    })
                    .set(p.psi);
                values.push((p.name.clone(), p.psi));
            }
            telemetry.drift(&t.model, &t.version, &w.window, w.rows, values);
        }
        for (window, distribution, psi, reading) in t.new_alerts(&report) {
            tracing::warn!(model = %t.model, version = %t.version, %window, %distribution, psi, reading = reading.as_str(), "model drift");
            telemetry.event(
                coffer_privacy::telemetry::EventKind::DriftAlert,
                Some(&t.model),
                Some(&t.version),
            );
            if let Some(a) = audit {
                a.record_blocking(AuditEvent::DriftAlert {
                    model: t.model.clone(),
                    version: t.version.clone(),
                    window,
                    distribution,
                    psi,
                    reading: reading.as_str().into(),
                });
            }
        }
    }
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
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (store, trackers, metrics, audit, telemetry) = (
                store.clone(),
                trackers(),
                metrics.clone(),
                audit.clone(),
                Arc::clone(&telemetry),
            );
            // sled writes and audit sends block: off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                publish(&store, &trackers, &metrics, audit.as_deref(), &telemetry)
            })
            .await;
        }
    })
}
