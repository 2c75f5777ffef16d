//! Scoring metrics per model and version: batch sizes, queue time, compute time, rows
//! scored, requests refused because the model's queue was full.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
}

/// The metric families, registered once.
#[derive(Debug, Clone)]
pub struct ScoreMetrics {
    batch_rows: Family<ModelLabels, Histogram>,
    queue_seconds: Family<ModelLabels, Histogram>,
    compute_seconds: Family<ModelLabels, Histogram>,
    rows: Family<ModelLabels, Counter>,
    queue_full: Family<ModelLabels, Counter>,
}

fn rows_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.5, 14))
}

impl ScoreMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            batch_rows: Family::new_with_constructor(rows_histogram as fn() -> Histogram),
            queue_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            compute_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            rows: Family::default(),
            queue_full: Family::default(),
        };
        registry.register(
            "score_batch_rows",
            "Rows per executed batch",
            m.batch_rows.clone(),
        );
        registry.register(
            "score_queue_seconds",
            "Time a request waited in its model's batch queue",
            m.queue_seconds.clone(),
        );
        registry.register(
            "score_compute_seconds",
            "Time to run one batch",
            m.compute_seconds.clone(),
        );
        registry.register("score_rows", "Rows scored", m.rows.clone());
        registry.register(
            "score_queue_full",
            "Requests refused because the model's queue was full",
            m.queue_full.clone(),
        );
        m
    }

    /// The handles of one model version.
    pub fn for_model(&self, model: &str, version: &str) -> ModelMetrics {
        let labels = ModelLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        ModelMetrics {
            batch_rows: self.batch_rows.get_or_create(&labels).clone(),
            queue_seconds: self.queue_seconds.get_or_create(&labels).clone(),
            compute_seconds: self.compute_seconds.get_or_create(&labels).clone(),
            rows: self.rows.get_or_create(&labels).clone(),
            queue_full: self.queue_full.get_or_create(&labels).clone(),
        }
    }
}

/// Metric handles of one model version (cheap to clone, no lookups on the hot path).
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    pub batch_rows: Histogram,
    pub queue_seconds: Histogram,
    pub compute_seconds: Histogram,
    pub rows: Counter,
    pub queue_full: Counter,
}

impl ModelMetrics {
    pub fn observe_batch(&self, rows: usize, elapsed: std::time::Duration) {
        self.batch_rows.observe(rows as f64);
        self.compute_seconds.observe(elapsed.as_secs_f64());
        self.rows.inc_by(rows as u64);
    }
}
