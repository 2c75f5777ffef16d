//! Chat metrics per model version: tokens in and out, time to first token, inter-token
//! latency, slots busy, queue depth, finishes by reason, cancellations. Tokens per
//! second is `rate(coffer_chat_completion_tokens_total[1m])`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::job::Finish;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishLabels {
    pub model: String,
    pub version: String,
    pub reason: &'static str,
}

/// The families, registered once.
#[derive(Debug, Clone)]
pub struct ChatMetrics {
    prompt_tokens: Family<ModelLabels, Counter>,
    completion_tokens: Family<ModelLabels, Counter>,
    ttft: Family<ModelLabels, Histogram>,
    inter_token: Family<ModelLabels, Histogram>,
    slots_busy: Family<ModelLabels, Gauge>,
    queue_depth: Family<ModelLabels, Gauge>,
    finished: Family<FinishLabels, Counter>,
    cancelled: Family<ModelLabels, Counter>,
}

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl ChatMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            prompt_tokens: Family::default(),
            completion_tokens: Family::default(),
            ttft: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            inter_token: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            slots_busy: Family::default(),
            queue_depth: Family::default(),
            finished: Family::default(),
            cancelled: Family::default(),
        };
        metrics.with_registry(|r| {
            r.register(
                "chat_prompt_tokens",
                "Prompt tokens processed",
                m.prompt_tokens.clone(),
            );
            r.register(
                "chat_completion_tokens",
                "Tokens generated",
                m.completion_tokens.clone(),
            );
            r.register(
                "chat_time_to_first_token_seconds",
                "From arrival in the engine's queue to the first generated token",
                m.ttft.clone(),
            );
            r.register(
                "chat_inter_token_seconds",
                "Time between two generated tokens of one sequence",
                m.inter_token.clone(),
            );
            r.register(
                "chat_slots_busy",
                "Sequences being served",
                m.slots_busy.clone(),
            );
            r.register(
                "chat_queue_depth",
                "Requests waiting for a sequence slot",
                m.queue_depth.clone(),
            );
            r.register(
                "chat_finished",
                "Completions by finish reason",
                m.finished.clone(),
            );
            r.register(
                "chat_cancelled",
                "Completions abandoned by their client (slot freed)",
                m.cancelled.clone(),
            );
        });
        m
    }

    /// The handles of one model version.
    pub fn for_model(&self, model: &str, version: &str) -> ChatModelMetrics {
        let l = ModelLabels {
            model: model.to_string(),
            version: version.to_string(),
        };
        ChatModelMetrics {
            prompt_tokens: self.prompt_tokens.get_or_create(&l).clone(),
            completion_tokens: self.completion_tokens.get_or_create(&l).clone(),
            ttft: self.ttft.get_or_create(&l).clone(),
            inter_token: self.inter_token.get_or_create(&l).clone(),
            slots_busy: self.slots_busy.get_or_create(&l).clone(),
            queue_depth: self.queue_depth.get_or_create(&l).clone(),
            cancelled: self.cancelled.get_or_create(&l).clone(),
            finished: self.finished.clone(),
            labels: l,
        }
    }
}

/// One model version's metric handles (cheap to update from the engine thread).
#[derive(Debug, Clone)]
pub struct ChatModelMetrics {
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    ttft: Histogram,
    inter_token: Histogram,
    pub slots_busy: Gauge,
    pub queue_depth: Gauge,
    pub cancelled: Counter,
    finished: Family<FinishLabels, Counter>,
    labels: ModelLabels,
}

impl ChatModelMetrics {
    pub fn ttft(&self, d: Duration) {
        self.ttft.observe(d.as_secs_f64());
    }

    pub fn inter_token(&self, d: Duration) {
        self.inter_token.observe(d.as_secs_f64());
    }

    pub fn finished(&self, finish: Finish) {
        self.finished
            .get_or_create(&FinishLabels {
                model: self.labels.model.clone(),
                version: self.labels.version.clone(),
                reason: finish.as_str(),
            })
            .inc();
    }
}
