//! Telemetry for the fleet: cofferd counts what the allowlisted records need (requests
//! by route template and status, latency, rows scored, scoring decisions by outcome),
//! and every `telemetry.interval` writes the records into the [`Spool`], where the agent
//! collects them through the admin socket. Decision counts leave only with Laplace noise
//! and only when `telemetry.decisions_epsilon` is set; each period's epsilon is capped by
//! `telemetry.epsilon_per_period`. No request content is ever counted by value.

mod spool;

pub use spool::{Batch, Spool, SpoolError};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_privacy::dp::{Budget, Laplace};
use coffer_privacy::telemetry::{EventKind, Outcome, RecordBody};

use crate::config::TelemetryConfig;

/// Upper bounds (seconds) of the latency histogram shipped in records.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Count per bound; one more for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Counters {
    /// By route template, then status.
    requests: HashMap<String, HashMap<u16, u64>>,
    latency: HashMap<String, Histogram>,
    rows: HashMap<(String, String), u64>,
    /// Decisions in the current period only.
    decisions: HashMap<(String, String, Outcome), u64>,
}

/// The counters and the spool; shared by the request path and the flush task.
#[derive(Debug)]
pub struct Telemetry {
    spool: Option<Arc<Spool>>,
    counters: Mutex<Counters>,
    decisions: Option<Laplace>,
    epsilon_per_period: f64,
}

impl Telemetry {
    pub fn new(config: &TelemetryConfig, spool: Option<Arc<Spool>>) -> Telemetry {
        let spool = spool.filter(|_| config.enabled);
        Telemetry {
            spool,
            counters: Mutex::default(),
            // Decisions are recorded only with a valid epsilon and a valid budget
            // (config validation refuses the rest).
            decisions: config
                .decisions_epsilon
                .and_then(|e| Laplace::new(e, 1.0).ok())
                .filter(|_| Budget::new(config.epsilon_per_period).is_ok()),
            epsilon_per_period: config.epsilon_per_period,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        if self.spool.is_none() {
            return;
        }
        let mut c = self.lock();
        // Keys are allocated once per route and status, not per request.
        match c.requests.get_mut(route) {
            Some(by_status) => *by_status.entry(status).or_default() += 1,
            None => {
                c.requests
                    .insert(route.to_string(), HashMap::from([(status, 1)]));
            }
        }
        if !c.latency.contains_key(route) {
            let h = Histogram {
                counts: vec![0; LATENCY_BOUNDS.len() + 1],
                ..Histogram::default()
            };
            c.latency.insert(route.to_string(), h);
        }
        let Some(h) = c.latency.get_mut(route) else {
            return;
        };
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        h.counts[i] += 1;
        h.sum += secs;
        h.count += 1;
    }

    /// Counts scored rows, and their decisions when decisions are recorded.
    pub fn observe_scores(&self, model: &str, version: &str, rows: u64, above: u64) {
        if self.spool.is_none() {
            return;
        }
        let mut c = self.lock();
        *c.rows
            .entry((model.to_string(), version.to_string()))
            .or_default() += rows;
        if self.decisions.is_some() {
            for (outcome, n) in [(Outcome::AtOrAbove, above), (Outcome::Below, rows - above)] {
                *c.decisions
                    .entry((model.to_string(), version.to_string(), outcome))
                    .or_default() += n;
            }
        }
    }

    /// Records the drift of one closed window: its PSI values only. (No row count:
    /// a count per window would need its own share of the privacy budget, and the PSI
    /// of a closed window over at least `drift_min_rows` rows is the aggregate the
    /// fleet needs.)
    pub fn drift(&self, model: &str, version: &str, window: &str, psi: Vec<(String, f64)>) {
        self.push(RecordBody::Drift {
            model: model.to_string(),
            version: version.to_string(),
            window: window.to_string(),
            rows: None,
            psi,
        });
    }

    /// Records a lifecycle event at once.
    pub fn event(&self, event: EventKind, model: Option<&str>, version: Option<&str>) {
        self.push(RecordBody::Event {
            event,
            model: model.map(str::to_string),
            version: version.map(str::to_string),
        });
    }

    fn push(&self, body: RecordBody) {
        if let Some(spool) = &self.spool {
            if let Err(e) = spool.push(body) {
                tracing::warn!(error = %e, "telemetry record not spooled");
            }
        }
    }

    /// Writes one period's records: cumulative counters, latency, rows, noisy decisions
    /// (within the period's epsilon budget), the served model versions and the spool's
    /// drop count.
    pub fn flush(&self, active: &[(String, String, String)]) {
        let Some(spool) = &self.spool else {
            return;
        };
        let (requests, latency, rows, decisions) = {
            let mut c = self.lock();
            (
                c.requests.clone(),
                c.latency.clone(),
                c.rows.clone(),
                std::mem::take(&mut c.decisions),
            )
        };
        let mut bodies = Vec::new();
        for (route, by_status) in requests {
            for (status, count) in by_status {
                bodies.push(RecordBody::Requests {
                    route: route.clone(),
                    status,
                    count,
                });
            }
        }
        for (route, h) in latency {
            let mut cumulative = 0;
            // Finite bounds only: the +Inf bucket is `count` (JSON has no infinity).
            let buckets = LATENCY_BOUNDS
                .iter()
                .zip(&h.counts)
                .map(|(&le, &n)| {
                    cumulative += n;
                    (le, cumulative)
                })
                .collect();
            bodies.push(RecordBody::Latency {
                route,
                buckets,
                sum_seconds: h.sum,
                count: h.count,
            });
        }
        for ((model, version), rows) in rows {
            bodies.push(RecordBody::RowsScored {
                model,
                version,
                rows,
            });
        }
        let budget = Budget::new(self.epsilon_per_period).ok();
        if let (Some(mechanism), Some(mut budget)) = (&self.decisions, budget) {
            let mut rng = rand::thread_rng();
            let mut keys: Vec<_> = decisions.into_iter().collect();
            keys.sort_by(|a, b| {
                (&a.0.0, &a.0.1, a.0.2.as_str()).cmp(&(&b.0.0, &b.0.1, b.0.2.as_str()))
            });
            for ((model, version, outcome), count) in keys {
                match budget.release(mechanism, count, &mut rng) {
                    Ok(noisy) => bodies.push(RecordBody::Decisions {
                        model,
                        version,
                        outcome,
                        count: noisy,
                        epsilon: mechanism.epsilon(),
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "decision counts withheld this period");
                        break;
                    }
                }
            }
        }
        for (model, version, engine) in active {
            bodies.push(RecordBody::ActiveModel {
                model: model.clone(),
                version: version.clone(),
                engine: engine.clone(),
            });
        }
        bodies.push(RecordBody::SpoolDropped {
            count: spool.dropped(),
        });
        for body in bodies {
            self.push(body);
        }
    }
}

/// The served (model, version, engine) triples, read at each flush so that
/// activations and rollbacks show in the next period.
pub type ActiveModels = Arc<dyn Fn() -> Vec<(String, String, String)> + Send + Sync>;

/// Flushes every `interval` until the task is dropped.
pub fn spawn_flush(
    telemetry: Arc<Telemetry>,
    interval: Duration,
    active: ActiveModels,
) -> tokio::task::JoinHandle<()> {
    crate::periodic::every(interval, move || {
        let t = Arc::clone(&telemetry);
        let active = active();
        Box::new(move || t.flush(&active))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_privacy::telemetry::RecordBody;

    fn config(epsilon: Option<f64>) -> TelemetryConfig {
        TelemetryConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            spool_max_records: 1000,
            decisions_epsilon: epsilon,
            epsilon_per_period: 1.0,
        }
    }

    #[test]
    fn a_flush_writes_readable_records_with_noisy_decisions_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let spool = Arc::new(Spool::open(&db, 1000).unwrap());
        let t = Telemetry::new(&config(Some(0.5)), Some(Arc::clone(&spool)));
        t.observe_request("/v2/models/{model}/infer", 200, Duration::from_millis(3));
        t.observe_request("/v2/models/{model}/infer", 200, Duration::from_secs(30));
        for _ in 0..3 {
            t.observe_scores("m", "1", 10, 4);
        }
        t.flush(&[("m".into(), "1".into(), "onnx-tract".into())]);
        let batch = spool.batch(100).unwrap();
        let bodies: Vec<RecordBody> = batch.records.into_iter().map(|r| r.body).collect();
        let latency = bodies
            .iter()
            .find_map(|b| match b {
                RecordBody::Latency { buckets, count, .. } => Some((buckets.clone(), *count)),
                _ => None,
            })
            .unwrap();
        assert_eq!(latency.1, 2);
        assert_eq!(
            latency.0.last().unwrap().1,
            1,
            "30 s is above every finite bound"
        );
        assert!(bodies.contains(&RecordBody::RowsScored {
            model: "m".into(),
            version: "1".into(),
            rows: 30
        }));
        let decisions = bodies
            .iter()
            .filter(|b| matches!(b, RecordBody::Decisions { epsilon, .. } if *epsilon == 0.5))
            .count();
        assert_eq!(decisions, 2, "both outcomes fit in the budget of 1.0");
        // Decisions are per period: the next flush has none to release.
        t.flush(&[]);
        let later = spool.batch(1000).unwrap().records.len() - bodies.len();
        assert!(later > 0);
    }

    #[test]
    fn decisions_are_not_recorded_without_an_epsilon() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let spool = Arc::new(Spool::open(&db, 1000).unwrap());
        let t = Telemetry::new(&config(None), Some(Arc::clone(&spool)));
        t.observe_scores("m", "1", 10, 4);
        t.flush(&[]);
        let batch = spool.batch(100).unwrap();
        assert!(
            !batch
                .records
                .iter()
                .any(|r| matches!(r.body, RecordBody::Decisions { .. }))
        );
    }
}
