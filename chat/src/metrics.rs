//! Chat metrics per model version: tokens in and out, time to first token, inter-token
//! latency, slots busy, queue depth, finishes by reason, cancellations, and the prefix
//! cache (tokens looked up and found, bytes saved). Tokens per
//! second is `rate(coffer_chat_completion_tokens_total[1m])`.
//!
//! Quality signals that need no content to leave the box, counted on the engine thread
//! when a sequence finishes ([`ChatModelMetrics::completed`]): finishes by reason (the
//! `length` share shows answers cut short), JSON-mode answers checked and those that do
//! not parse, empty answers, and generated tokens per completion. Only counts: the
//! text is looked at and dropped, never stored or logged.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::Finish;

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
    json_checked: Family<ModelLabels, Counter>,
    json_invalid: Family<ModelLabels, Counter>,
    empty_answers: Family<ModelLabels, Counter>,
    tokens_per_request: Family<ModelLabels, Histogram>,
    prefix_queried: Family<ModelLabels, Counter>,
    prefix_hit: Family<ModelLabels, Counter>,
    prefix_saved_bytes: Family<ModelLabels, Gauge>,
    threads: Family<ModelLabels, Gauge>,
    gpu_layers: Family<ModelLabels, Gauge>,
    gpu_weights_bytes: Family<ModelLabels, Gauge>,
    gpu_kv_bytes: Family<ModelLabels, Gauge>,
}

/// Generated tokens per completion: 1, 2, 4, … 16384 (past any context served).
fn tokens_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl ChatMetrics {
    /// Registers the families in `r` (the daemon's registry, under its `coffer_` prefix).
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            prompt_tokens: Family::default(),
            completion_tokens: Family::default(),
            ttft: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            inter_token: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            slots_busy: Family::default(),
            queue_depth: Family::default(),
            finished: Family::default(),
            cancelled: Family::default(),
            json_checked: Family::default(),
            json_invalid: Family::default(),
            empty_answers: Family::default(),
            tokens_per_request: Family::new_with_constructor(tokens_histogram as fn() -> Histogram),
            prefix_queried: Family::default(),
            prefix_hit: Family::default(),
            prefix_saved_bytes: Family::default(),
            threads: Family::default(),
            gpu_layers: Family::default(),
            gpu_weights_bytes: Family::default(),
            gpu_kv_bytes: Family::default(),
        };
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
        r.register(
                "chat_json_checked",
                "Completions whose response_format asked for JSON (json_object or json_schema), checked at the end",
                m.json_checked.clone(),
            );
        r.register(
                "chat_json_invalid",
                "JSON-mode completions whose text does not parse as JSON (most often cut by max_tokens)",
                m.json_invalid.clone(),
            );
        r.register(
            "chat_empty_answers",
            "Completions whose text is empty or only whitespace after stop handling",
            m.empty_answers.clone(),
        );
        r.register(
            "chat_completion_tokens_per_request",
            "Tokens generated per finished completion (mean = sum / count)",
            m.tokens_per_request.clone(),
        );
        r.register(
            "chat_prefix_cache_queried_tokens",
            "Prompt tokens looked up in the prefix cache",
            m.prefix_queried.clone(),
        );
        r.register(
            "chat_prefix_cache_hit_tokens",
            "Prompt tokens whose KV came from the prefix cache instead of being computed",
            m.prefix_hit.clone(),
        );
        r.register(
            "chat_prefix_cache_saved_bytes",
            "Bytes of prefix KV state saved in the state directory for this version",
            m.prefix_saved_bytes.clone(),
        );
        r.register(
            "chat_threads",
            "llama.cpp threads of the last decode step: fewer while scoring requests come in (chat.threads_beside_scoring)",
            m.threads.clone(),
        );
        r.register(
            "chat_gpu_layers",
            "Layers of this version on the GPU (llama.cpp's n_gpu_layers; chat.n_gpu_layers = \"auto\" decides it at load)",
            m.gpu_layers.clone(),
        );
        r.register(
            "chat_gpu_weights_bytes",
            "Bytes of this version's weights on the GPU",
            m.gpu_weights_bytes.clone(),
        );
        r.register(
            "chat_gpu_kv_cache_bytes",
            "Bytes of this version's KV cache on the GPU",
            m.gpu_kv_bytes.clone(),
        );
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
            // Both reasons exist from the start, so a rate of `length` is 0, not absent.
            finished_stop: self.finished_counter(&l, Finish::Stop),
            finished_length: self.finished_counter(&l, Finish::Length),
            json_checked: self.json_checked.get_or_create(&l).clone(),
            json_invalid: self.json_invalid.get_or_create(&l).clone(),
            empty_answers: self.empty_answers.get_or_create(&l).clone(),
            tokens_per_request: self.tokens_per_request.get_or_create(&l).clone(),
            prefix_queried: self.prefix_queried.get_or_create(&l).clone(),
            prefix_hit: self.prefix_hit.get_or_create(&l).clone(),
            prefix_saved_bytes: self.prefix_saved_bytes.get_or_create(&l).clone(),
            threads: self.threads.get_or_create(&l).clone(),
            gpu_layers: self.gpu_layers.get_or_create(&l).clone(),
            gpu_weights_bytes: self.gpu_weights_bytes.get_or_create(&l).clone(),
            gpu_kv_bytes: self.gpu_kv_bytes.get_or_create(&l).clone(),
        }
    }

    fn finished_counter(&self, l: &ModelLabels, finish: Finish) -> Counter {
        self.finished
            .get_or_create(&FinishLabels {
                model: l.model.clone(),
                version: l.version.clone(),
                reason: finish.as_str(),
            })
            .clone()
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
    finished_stop: Counter,
    finished_length: Counter,
    json_checked: Counter,
    json_invalid: Counter,
    empty_answers: Counter,
    tokens_per_request: Histogram,
    pub prefix_queried: Counter,
    pub prefix_hit: Counter,
    pub prefix_saved_bytes: Gauge,
    /// llama.cpp threads of the last decode step.
    pub threads: Gauge,
    /// Where the version's layers went at load ([`crate::gpu_plan`]).
    pub gpu_layers: Gauge,
    pub gpu_weights_bytes: Gauge,
    pub gpu_kv_bytes: Gauge,
}

/// A finished completion as the quality signals see it.
#[derive(Debug, Clone, Copy)]
pub struct Completed<'a> {
    pub finish: Finish,
    /// Tokens generated (the `usage.completion_tokens` returned).
    pub completion_tokens: usize,
    /// The whole text sent to the client, stop strings removed.
    pub text: &'a str,
    /// `response_format` asked for JSON (`json_object` or `json_schema`).
    pub json: bool,
}

/// What a finished completion counts as: pure, so it is tested without a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub empty: bool,
    /// `None` when JSON was not asked for; else whether the text parses.
    pub json_valid: Option<bool>,
}

impl Signals {
    pub fn of(c: &Completed<'_>) -> Self {
        Self {
            empty: c.text.trim().is_empty(),
            json_valid: c
                .json
                .then(|| serde_json::from_str::<serde::de::IgnoredAny>(c.text).is_ok()),
        }
    }
}

impl ChatModelMetrics {
    pub fn ttft(&self, d: Duration) {
        self.ttft.observe(d.as_secs_f64());
    }

    pub fn inter_token(&self, d: Duration) {
        self.inter_token.observe(d.as_secs_f64());
    }

    /// Counts a completion that ran to its end (not a cancelled or failed one).
    pub fn completed(&self, c: &Completed<'_>) {
        match c.finish {
            Finish::Stop => self.finished_stop.inc(),
            Finish::Length => self.finished_length.inc(),
        };
        self.tokens_per_request.observe(c.completion_tokens as f64);
        let signals = Signals::of(c);
        if signals.empty {
            self.empty_answers.inc();
        }
        if let Some(valid) = signals.json_valid {
            self.json_checked.inc();
            if !valid {
                self.json_invalid.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(text: &str, json: bool) -> Signals {
        Signals::of(&Completed {
            finish: Finish::Stop,
            completion_tokens: 1,
            text,
            json,
        })
    }

    #[test]
    fn empty_means_nothing_but_whitespace() {
        for text in ["", " ", "\n\t \r\n", "\u{a0}"] {
            assert!(signals(text, false).empty, "{text:?}");
        }
        for text in ["a", "  .\n", "{}"] {
            assert!(!signals(text, false).empty, "{text:?}");
        }
    }

    #[test]
    fn json_is_checked_only_when_asked_for() {
        assert_eq!(signals("not json", false).json_valid, None);
        for text in [
            "{}",
            "{\n  \"age\": 20,\n  \"name\": \"John\"\n}",
            "  [1, 2]\n",
            "3",
        ] {
            assert_eq!(signals(text, true).json_valid, Some(true), "{text:?}");
        }
        for text in [
            "",
            "{\n  \"",
            "{\"a\": 1} trailing",
            "{'a': 1}",
            "```json\n{}\n```",
        ] {
            assert_eq!(signals(text, true).json_valid, Some(false), "{text:?}");
        }
        let empty_json = signals("", true);
        assert!(empty_json.empty && empty_json.json_valid == Some(false));
    }
}
