//! How many of a GGUF model's layers go on the GPU (`chat.n_gpu_layers = "auto"`): the
//! model's own tensor sizes ([`ModelShape::read`], from the file's header only) against
//! the GPU's free memory, after reserving the KV cache of every slot's context, the
//! compute buffers and a stated headroom ([`plan`]). Pure arithmetic once the shape is
//! read, so it is tested without a GPU.
//!
//! llama.cpp's placement, which the sizes follow (`llama_model::load_tensors`): layers are
//! numbered `0..=n_layer`, the repeating blocks (`blk.N.*`) then the output layer
//! (`output.weight`, or the tied `token_embd.weight` it duplicates, and `output_norm`),
//! and `n_gpu_layers = k` puts the last `k` of them on the GPU: the output layer first,
//! then the last `k - 1` blocks with their KV cache. The input embedding stays on the CPU.

use std::path::Path;

use llama_cpp_2::gguf::GgufContext;

/// Bytes of one KV cache element (llama.cpp's default cache type is f16).
const KV_ELEMENT_BYTES: u64 = 2;
/// llama.cpp rounds a context up to a multiple of this many cells.
const CONTEXT_PAD: u64 = 256;

/// What offload planning needs to know of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelShape {
    /// Bytes of each repeating block's weights, in order.
    pub layer_bytes: Vec<u64>,
    /// Bytes of the output layer (output norm and output matrix, or the tied embedding).
    pub output_bytes: u64,
    /// KV cache bytes of one context cell in one layer (keys and values).
    pub kv_cell_bytes: u64,
    pub n_vocab: u64,
    pub n_embd: u64,
    pub n_head: u64,
    /// The context the model was trained for (0: not stated).
    pub n_ctx_train: u64,
}

/// Why a model's shape could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("{0}: not a readable GGUF file")]
    Unreadable(String),
    #[error("{path}: {detail}")]
    Missing { path: String, detail: String },
}

fn u64_value(gguf: &GgufContext, key: &str) -> Option<u64> {
    gguf.val_uint(gguf.find_key(key))
}

impl ModelShape {
    /// Reads a GGUF file's header (no weights).
    pub fn read(path: &Path) -> Result<Self, ShapeError> {
        let shown = path.display().to_string();
        let gguf =
            GgufContext::from_file(path).ok_or_else(|| ShapeError::Unreadable(shown.clone()))?;
        let missing = |detail: &str| ShapeError::Missing {
            path: shown.clone(),
            detail: detail.to_string(),
        };
        let idx = gguf.find_key("general.architecture");
        let arch = gguf
            .val_string(idx)
            .ok_or_else(|| missing("no general.architecture"))?
            .to_string();
        let key = |k: &str| u64_value(&gguf, &format!("{arch}.{k}"));
        let n_layer = key("block_count").ok_or_else(|| missing("no block_count"))?;
        let n_embd = key("embedding_length").ok_or_else(|| missing("no embedding_length"))?;
        let n_head = key("attention.head_count").ok_or_else(|| missing("no head_count"))?;
        if n_head == 0 || n_layer == 0 || n_layer > 4096 {
            return Err(missing("implausible block_count or head_count"));
        }
        // Per-layer head counts (arrays) exist for some architectures: take the
        // model-wide value when it is a number, else assume no grouping (the larger).
        let n_head_kv = key("attention.head_count_kv").unwrap_or(n_head);
        let head_k = key("attention.key_length").unwrap_or(n_embd / n_head);
        let head_v = key("attention.value_length").unwrap_or(n_embd / n_head);
        let vocab_idx = gguf.find_key("tokenizer.ggml.tokens");
        let n_vocab = gguf.arr_len(vocab_idx).unwrap_or(0) as u64;

        let mut layer_bytes = vec![0u64; usize::try_from(n_layer).unwrap_or(0)];
        let (mut output, mut output_norm, mut token_embd) = (None, 0u64, 0u64);
        for i in 0..gguf.n_tensors() {
            let (Some(name), Some(size)) = (gguf.tensor_name(i), gguf.tensor_size(i)) else {
                continue;
            };
            let size = size as u64;
            if let Some(rest) = name.strip_prefix("blk.") {
                let block = rest.split('.').next().and_then(|n| n.parse::<usize>().ok());
                if let Some(slot) = block.and_then(|b| layer_bytes.get_mut(b)) {
                    *slot = slot.saturating_add(size);
                }
            } else if name.starts_with("output_norm.") {
                output_norm = output_norm.saturating_add(size);
            } else if name.starts_with("output.") {
                let o = output.get_or_insert(0u64);
                *o = o.saturating_add(size);
            } else if name.starts_with("token_embd.") {
                token_embd = token_embd.saturating_add(size);
            }
        }
        Ok(Self {
            layer_bytes,
            // Tied embeddings: llama.cpp duplicates the input embedding as the output.
            output_bytes: output_norm.saturating_add(output.unwrap_or(token_embd)),
            kv_cell_bytes: n_head_kv
                .saturating_mul(head_k.saturating_add(head_v))
                .saturating_mul(KV_ELEMENT_BYTES),
            n_vocab,
            n_embd,
            n_head,
            n_ctx_train: key("context_length").unwrap_or(0),
        })
    }

    pub fn n_layer(&self) -> u32 {
        u32::try_from(self.layer_bytes.len()).unwrap_or(u32::MAX)
    }
}

/// Whether this build of llama.cpp can offload layers to a GPU (the `cuda` feature).
pub fn offload_supported() -> bool {
    crate::backend::backend().is_ok_and(|b| b.supports_gpu_offload())
}

/// The context a model is loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextShape {
    /// Sequences (slots), each with a KV cache of its own (`kv_unified = false`).
    pub sequences: u64,
    /// Context of one sequence.
    pub per_sequence: u64,
    /// Tokens per decode step (`n_ubatch`).
    pub batch: u64,
}

impl ContextShape {
    /// KV cells as llama.cpp allocates them for `sequences × per_sequence`
    /// (`llama_context::llama_context`): the whole rounded up to 256, then each
    /// sequence's share rounded up to 256.
    pub fn cells(&self) -> u64 {
        let sequences = self.sequences.max(1);
        let total = self
            .per_sequence
            .saturating_mul(sequences)
            .div_ceil(CONTEXT_PAD)
            * CONTEXT_PAD;
        let per_sequence = (total / sequences).div_ceil(CONTEXT_PAD) * CONTEXT_PAD;
        per_sequence.saturating_mul(sequences)
    }
}

/// Where a model's layers go, and what that costs on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `n_gpu_layers` for llama.cpp: repeating blocks, plus one for the output layer.
    pub layers: u32,
    /// Layers the model has, output included (`layers == total`: all on the GPU).
    pub total: u32,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    /// The estimated compute buffers (zero when nothing is offloaded).
    pub compute_bytes: u64,
}

impl Plan {
    /// Bytes on the GPU: weights, KV cache and compute buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.weights_bytes
            .saturating_add(self.kv_bytes)
            .saturating_add(self.compute_bytes)
    }
}

/// The cost of putting `layers` (llama.cpp's `n_gpu_layers`) on the GPU. Header values
/// are untrusted: the arithmetic saturates, so a bad one costs too much, never too little.
pub fn cost(shape: &ModelShape, context: ContextShape, layers: u32) -> Plan {
    let n_layer = shape.n_layer();
    let layers = layers.min(n_layer + 1);
    // The output layer is the first to go, then blocks from the last one down.
    let blocks = layers.saturating_sub(1) as usize;
    let block_bytes = shape.layer_bytes[shape.layer_bytes.len() - blocks..]
        .iter()
        .fold(0u64, |sum, b| sum.saturating_add(*b));
    let output = if layers >= 1 { shape.output_bytes } else { 0 };
    let kv = (blocks as u64)
        .saturating_mul(context.cells())
        .saturating_mul(shape.kv_cell_bytes);
    // llama.cpp's graph buffers for one decode step, f32: the logits, one head's
    // attention scores over a sequence's context per head, and the activations.
    let compute = if layers == 0 {
        0
    } else {
        let per_token = shape
            .n_vocab
            .saturating_add(shape.n_head.saturating_mul(context.per_sequence))
            .saturating_add(shape.n_embd.saturating_mul(4));
        context.batch.saturating_mul(4).saturating_mul(per_token)
    };
    Plan {
        layers,
        total: n_layer + 1,
        weights_bytes: block_bytes.saturating_add(output),
        kv_bytes: kv,
        compute_bytes: compute,
    }
}

/// The most layers whose weights, KV cache and compute buffers fit in `free_bytes` less
/// `headroom_bytes` (the CUDA context, cuBLAS workspaces, other processes' growth).
pub fn plan(
    shape: &ModelShape,
    context: ContextShape,
    free_bytes: u64,
    headroom_bytes: u64,
) -> Plan {
    let budget = free_bytes.saturating_sub(headroom_bytes);
    (0..=shape.n_layer() + 1)
        .rev()
        .map(|layers| cost(shape, context, layers))
        .find(|p| p.gpu_bytes() <= budget)
        .unwrap_or_else(|| cost(shape, context, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn shape() -> ModelShape {
        ModelShape {
            layer_bytes: vec![10 * MIB; 30],
            output_bytes: 40 * MIB,
            kv_cell_bytes: 1024,
            n_vocab: 1000,
            n_embd: 64,
            n_head: 4,
            n_ctx_train: 8192,
        }
    }

    fn context() -> ContextShape {
        ContextShape {
            sequences: 4,
            per_sequence: 1024,
            batch: 256,
        }
    }

    #[test]
    fn a_roomy_gpu_takes_every_layer_and_the_output() {
        let p = plan(&shape(), context(), 80 << 30, 512 * MIB);
        assert_eq!((p.layers, p.total), (31, 31));
        assert_eq!(p.weights_bytes, 300 * MIB + 40 * MIB);
        assert_eq!(p.kv_bytes, 30 * 4096 * 1024);
    }

    #[test]
    fn a_tight_gpu_takes_what_fits_and_the_plan_stays_within_the_budget() {
        let all = cost(&shape(), context(), 31).gpu_bytes();
        for free in [0, 100 * MIB, all / 2, all - 1, all, all + MIB] {
            let p = plan(&shape(), context(), free, 0);
            assert!(p.gpu_bytes() <= free || p.layers == 0, "{free}: {p:?}");
            // One layer more would not have fitted.
            if p.layers < p.total {
                assert!(cost(&shape(), context(), p.layers + 1).gpu_bytes() > free);
            }
        }
        assert_eq!(plan(&shape(), context(), all, 0).layers, 31);
        assert_eq!(plan(&shape(), context(), all - 1, 0).layers, 30);
        let half = plan(&shape(), context(), all / 2, 0);
        assert!(half.layers > 5 && half.layers < 25, "{half:?}");
    }

    #[test]
    fn the_headroom_and_the_kv_cache_of_more_slots_cost_layers() {
        let free = cost(&shape(), context(), 31).gpu_bytes();
        assert_eq!(plan(&shape(), context(), free, 0).layers, 31);
        assert!(plan(&shape(), context(), free, 50 * MIB).layers < 31);
        let more_slots = ContextShape {
            sequences: 16,
            ..context()
        };
        assert!(plan(&shape(), more_slots, free, 0).layers < 31);
    }

    #[test]
    fn no_memory_means_no_layers_and_no_cost() {
        let p = plan(&shape(), context(), 0, 512 * MIB);
        assert_eq!(p.layers, 0);
        assert_eq!(p.gpu_bytes(), 0);
    }

    #[test]
    fn the_context_is_counted_as_llama_cpp_pads_it() {
        // 4 × 300 = 1200 → 1280 in all, 320 → 512 per sequence: 2048 cells.
        let odd = ContextShape {
            sequences: 4,
            per_sequence: 300,
            ..context()
        };
        assert_eq!(odd.cells(), 2048);
        assert_eq!(context().cells(), 4096);
        // One layer is the output layer alone: no block, no KV cache.
        let one = cost(&shape(), odd, 1);
        assert_eq!((one.weights_bytes, one.kv_bytes), (40 * MIB, 0));
        assert_eq!(cost(&shape(), odd, 2).kv_bytes, 2048 * 1024);
    }

    #[test]
    fn partial_offload_counts_the_output_layer_first_as_llama_cpp_places_it() {
        // k = 5: the output layer and the last 4 blocks.
        let p = cost(&shape(), context(), 5);
        assert_eq!(p.weights_bytes, 40 * MIB + 4 * 10 * MIB);
        assert_eq!(p.kv_bytes, 4 * 4096 * 1024);
        // Beyond every layer nothing more is counted.
        assert_eq!(cost(&shape(), context(), 99), cost(&shape(), context(), 31));
    }

    #[test]
    fn absurd_header_values_cost_everything_rather_than_overflow() {
        let huge = ModelShape {
            kv_cell_bytes: u64::MAX / 3,
            ..shape()
        };
        let p = cost(&huge, context(), 31);
        assert_eq!(p.gpu_bytes(), u64::MAX);
        assert_eq!(
            plan(&huge, context(), 80 << 30, 0).layers,
            1,
            "the output layer only"
        );
    }

    #[test]
    fn smollm2s_header_gives_its_blocks_kv_heads_and_tied_output() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/chat/smollm2-135m/1.0.0/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must fetch the chat model (models/fetch-smollm2)"
            );
            eprintln!("skipped: no {}", path.display());
            return;
        }
        let shape = ModelShape::read(&path).unwrap();
        // SmolLM2-135M: 30 blocks, 9 heads of 64 over 576, 3 KV heads, 49,152 tokens.
        assert_eq!(shape.n_layer(), 30);
        assert_eq!((shape.n_embd, shape.n_head), (576, 9));
        assert_eq!(shape.kv_cell_bytes, 3 * (64 + 64) * 2);
        assert_eq!((shape.n_vocab, shape.n_ctx_train), (49_152, 8192));
        assert!(shape.layer_bytes.iter().all(|b| *b == shape.layer_bytes[0]));
        // Tied embeddings: the output layer is the input embedding's size, and all the
        // tensors together are nearly the whole file.
        let file = std::fs::metadata(&path).unwrap().len();
        let all = cost(
            &shape,
            ContextShape {
                sequences: 1,
                per_sequence: 512,
                batch: 512,
            },
            31,
        );
        assert!(
            all.weights_bytes > file * 9 / 10 && all.weights_bytes < file,
            "{all:?} of {file}"
        );
        let blocks: u64 = shape.layer_bytes.iter().sum();
        assert!(shape.output_bytes > blocks / 10, "{shape:?}");

        let missing = ModelShape::read(std::path::Path::new("/nonexistent.gguf"));
        assert!(matches!(missing, Err(ShapeError::Unreadable(_))));
    }
}
