//! Panics on an engine's own thread (the scoring batcher, the chat decode loop),
//! contained. Engine code (tract, llama-cpp-2, a drift observer) can panic on an input
//! nobody foresaw; uncontained, that kills the version's thread and every later request
//! gets an error while `/readyz` still says ready. [`EngineFaults::contain`] runs one
//! batch or decode step; a panic there fails only the work in hand, is counted
//! (`coffer_engine_restarts_total`), reported to a [`FaultSink`] (the audit log and the
//! daemon log), and the thread carries on from a clean state (the caller drops whatever
//! the step held). A version with [`FAILING_AFTER`] faults within [`WINDOW`] reports
//! itself failing: its readiness says so until the window has passed without one.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Faults within [`WINDOW`] that make a version failing.
pub const FAILING_AFTER: usize = 3;
/// How far back faults count.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The labels of the restart counter family: one model version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelVersionLabels {
    pub model: String,
    pub version: String,
}

/// Where contained faults are reported, besides the counter: the daemon wires the audit
/// log here (engines do not name it).
pub trait FaultSink: Send + Sync + std::fmt::Debug {
    fn engine_fault(&self, model: &str, version: &str, part: &'static str);
}

/// The work in hand panicked; it failed, and the engine carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine failed on this request and was restarted")]
pub struct Panicked;

/// Makes [`EngineFaults`] for each loaded version, sharing one counter family and sink.
#[derive(Debug, Clone, Default)]
pub struct FaultWatch {
    restarts: Family<ModelVersionLabels, Counter>,
    sink: Option<Arc<dyn FaultSink>>,
}

impl FaultWatch {
    pub fn new(
        restarts: Family<ModelVersionLabels, Counter>,
        sink: Option<Arc<dyn FaultSink>>,
    ) -> Self {
        FaultWatch { restarts, sink }
    }

    pub fn for_version(&self, model: &str, version: &str) -> Arc<EngineFaults> {
        let restarts = self
            .restarts
            .get_or_create(&ModelVersionLabels {
                model: model.to_string(),
                version: version.to_string(),
            })
            .clone();
        Arc::new(EngineFaults {
            model: model.to_string(),
            version: version.to_string(),
            restarts,
            recent: Mutex::new(VecDeque::new()),
            sink: self.sink.clone(),
        })
    }
}

/// One version's contained faults.
#[derive(Debug)]
pub struct EngineFaults {
    model: String,
    version: String,
    restarts: Counter,
    recent: Mutex<VecDeque<Instant>>,
    sink: Option<Arc<dyn FaultSink>>,
}

impl EngineFaults {
    /// Runs `step`; a panic in it is contained, counted and reported.
    pub fn contain<T>(&self, part: &'static str, step: impl FnOnce() -> T) -> Result<T, Panicked> {
        std::panic::catch_unwind(AssertUnwindSafe(step)).map_err(|_| {
            self.record(part);
            Panicked
        })
    }

    fn record(&self, part: &'static str) {
        self.restarts.inc();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.push_back(Instant::now());
            while recent.len() > FAILING_AFTER {
                recent.pop_front();
            }
        }
        tracing::error!(
            model = %self.model,
            version = %self.version,
            part,
            "engine panicked: the work in hand failed, the engine carries on"
        );
        if let Some(sink) = &self.sink {
            sink.engine_fault(&self.model, &self.version, part);
        }
    }

    /// Whether [`FAILING_AFTER`] faults happened within the last [`WINDOW`].
    pub fn failing(&self) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.len() >= FAILING_AFTER && recent.front().is_some_and(|t| t.elapsed() < WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<String>>);

    impl FaultSink for Seen {
        fn engine_fault(&self, model: &str, version: &str, part: &'static str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{model}@{version} {part}"));
        }
    }

    #[test]
    fn a_panic_is_contained_counted_reported_and_repeated_ones_mean_failing() {
        let seen = Arc::new(Seen::default());
        let watch = FaultWatch::new(Family::default(), Some(seen.clone() as Arc<dyn FaultSink>));
        let faults = watch.for_version("m", "1");
        assert_eq!(faults.contain("batch", || 7), Ok(7));
        for i in 0..FAILING_AFTER {
            assert!(!faults.failing(), "after {i}");
            let r: Result<(), _> = faults.contain("batch", || panic!("boom"));
            assert_eq!(r, Err(Panicked));
        }
        assert!(faults.failing());
        assert_eq!(faults.restarts.get(), FAILING_AFTER as u64);
        assert_eq!(seen.0.lock().unwrap().len(), FAILING_AFTER);
        assert_eq!(seen.0.lock().unwrap()[0], "m@1 batch");
    }
}
