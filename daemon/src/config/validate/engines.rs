//! Validation of the llama.cpp engines' sections: `[chat]` (threads, context, batch,
//! `n_gpu_layers` as a number or `"auto"`) and `[embedding]`.

use std::path::PathBuf;
use std::time::Duration;

use coffer_chat::GpuLayers;

use super::Checker;
use crate::config::raw::{RawConfig, RawGpuLayers};
use crate::config::{ChatConfig, ChatSettings, EmbeddingConfig};

pub(super) fn embedding(c: &mut Checker, raw: &RawConfig) -> EmbeddingConfig {
    let e = &raw.embedding;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if e.batch_tokens < 16 {
        c.problem(
            "embedding.batch_tokens",
            format!("{} is too small", e.batch_tokens),
            "set at least the longest input a model takes, e.g. 2048",
        );
    }
    if !(1..=256).contains(&e.max_sequences) {
        c.problem(
            "embedding.max_sequences",
            format!("{} is outside 1..=256", e.max_sequences),
            "set e.g. 64",
        );
    }
    EmbeddingConfig {
        models: e.models.iter().map(PathBuf::from).collect(),
        engine: coffer_chat::embed::EmbedSettings {
            threads: c.positive(
                "embedding.threads",
                e.threads.unwrap_or((cores.saturating_sub(1)).max(1)),
            ),
            batch_tokens: e.batch_tokens,
            max_sequences: e.max_sequences,
            max_queue: c.positive("embedding.max_queue", e.max_queue),
            n_gpu_layers: e.n_gpu_layers,
        },
    }
}

pub(super) fn chat(c: &mut Checker, raw: &RawConfig) -> ChatConfig {
    let ch = &raw.chat;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Every core by default: while scoring requests come in, chat gives one back
    // (threads_beside_scoring), so a credit decision does not wait behind llama.cpp's
    // spinning threads (docs/chat.md, "Chat beside scoring").
    let threads = ch.threads.unwrap_or(cores).max(1);
    if ch.threads == Some(0) {
        c.problem(
            "chat.threads",
            "must be at least 1",
            "set a number of threads up to the core count",
        );
    }
    let beside = ch
        .threads_beside_scoring
        .unwrap_or(threads.saturating_sub(1))
        .max(1);
    if ch.threads_beside_scoring == Some(0) {
        c.problem(
            "chat.threads_beside_scoring",
            "must be at least 1",
            "set fewer threads than chat.threads, e.g. one fewer",
        );
    }
    if beside > threads {
        c.problem(
            "chat.threads_beside_scoring",
            format!("{beside} is more than chat.threads ({threads})"),
            "set at most chat.threads; fewer leaves cores to scoring",
        );
    }
    let scoring_quiet = c.duration("chat.scoring_quiet", &ch.scoring_quiet, Duration::ZERO);
    if ch.context < 64 {
        c.problem(
            "chat.context",
            format!("{} is too small", ch.context),
            "set at least 64 tokens, e.g. 2048",
        );
    }
    if ch.n_batch < 16 {
        c.problem(
            "chat.n_batch",
            format!("{} is too small", ch.n_batch),
            "set at least 16, e.g. 512",
        );
    }
    if (ch.n_batch as usize) < ch.slots {
        c.problem(
            "chat.n_batch",
            format!("{} is fewer than chat.slots ({})", ch.n_batch, ch.slots),
            "every generating sequence needs a place in each decode step: raise n_batch or lower slots",
        );
    }
    let n_gpu_layers = match &ch.n_gpu_layers {
        RawGpuLayers::Number(n) => GpuLayers::Fixed(*n),
        RawGpuLayers::Word(w) if w == "auto" => GpuLayers::Auto,
        RawGpuLayers::Word(w) => {
            c.problem(
                "chat.n_gpu_layers",
                format!("{w:?} is neither a number nor \"auto\""),
                "set \"auto\" (as many layers as fit on the GPU) or a number of layers, 0 for none",
            );
            GpuLayers::Fixed(0)
        }
    };
    ChatConfig {
        models: ch.models.iter().map(PathBuf::from).collect(),
        engine: ChatSettings {
            slots: c.positive("chat.slots", ch.slots),
            context: ch.context.max(64),
            n_batch: ch.n_batch.max(16),
            threads,
            threads_beside_scoring: beside.min(threads),
            cores: std::sync::Arc::new(coffer_engine::CoreShare::new(scoring_quiet)),
            max_queue: c.positive("chat.max_queue", ch.max_queue),
            n_gpu_layers,
            main_gpu: None,
            gpu_headroom_bytes: ch.gpu_headroom_mib.saturating_mul(1 << 20),
            prefix_reuse: ch.prefix_reuse,
            prefix_cache_bytes: if ch.prefix_reuse {
                ch.prefix_cache_bytes
            } else {
                0
            },
            prefix_dir: PathBuf::from(&raw.state.dir).join("chat-prefix"),
        },
        keep_alive: c.duration(
            "chat.keep_alive",
            &ch.keep_alive,
            Duration::from_millis(100),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, validate};

    fn chat_with(line: &str) -> Result<crate::config::Config, Vec<crate::config::Problem>> {
        validate(
            &parse(&format!(
                "[tls]\ncert = \"/c\"\nkey = \"/k\"\n[chat]\n{line}\n"
            ))
            .unwrap(),
        )
    }

    #[test]
    fn n_gpu_layers_is_auto_by_default_a_number_or_auto_and_nothing_else() {
        use coffer_chat::GpuLayers;
        let layers = |line: &str| chat_with(line).unwrap().chat.engine.n_gpu_layers;
        assert_eq!(layers(""), GpuLayers::Auto);
        assert_eq!(layers("n_gpu_layers = \"auto\""), GpuLayers::Auto);
        assert_eq!(layers("n_gpu_layers = 12"), GpuLayers::Fixed(12));
        assert_eq!(layers("n_gpu_layers = 0"), GpuLayers::Fixed(0));
        let cfg = chat_with("gpu_headroom_mib = 1024").unwrap();
        assert_eq!(cfg.chat.engine.gpu_headroom_bytes, 1 << 30);
        let problems = chat_with("n_gpu_layers = \"all\"").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "chat.n_gpu_layers");
        assert!(problems[0].what.contains("\"all\""), "{:?}", problems[0]);
    }
}
