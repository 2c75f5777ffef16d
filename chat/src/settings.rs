//! [`ChatSettings`]: how the engine runs, the same for every chat model version. The
//! daemon's configuration (`[chat]`) builds it; the engine owns the type.

use std::path::PathBuf;

/// Engine settings from the `[chat]` configuration section.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Sequences decoded together (continuous batching slots).
    pub slots: usize,
    /// Context (prompt + completion tokens) of one request, at most the model's own.
    pub context: usize,
    /// Tokens per decode step (generation tokens first, then prompt chunks).
    pub n_batch: u32,
    /// llama.cpp threads while no scoring request came in lately.
    pub threads: usize,
    /// llama.cpp threads while scoring requests come in (`chat.threads_beside_scoring`):
    /// the rest are left to scoring ([`coffer_engine::CoreShare`]).
    pub threads_beside_scoring: usize,
    /// The signal scoring requests give; shared with the scoring path.
    pub cores: std::sync::Arc<coffer_engine::CoreShare>,
    /// Jobs that may wait for a slot; past it: 503 with Retry-After.
    pub max_queue: usize,
    /// Layers offloaded to the GPU (builds with the `cuda` feature).
    pub n_gpu_layers: GpuLayers,
    /// The GPU (CUDA device index, in PCI bus order) a model is placed on whole; `None`:
    /// llama.cpp's default (the first).
    pub main_gpu: Option<u32>,
    /// GPU memory `auto` leaves free beyond the model's weights, KV cache and compute
    /// buffers (the CUDA context, cuBLAS workspaces, other processes).
    pub gpu_headroom_bytes: u64,
    /// Keep a finished sequence's prompt KV for later prompts that start alike
    /// (`chat.prefix_reuse`; [`crate::prefix`]).
    pub prefix_reuse: bool,
    /// Bytes of system-prompt KV state kept in `prefix_dir` across restarts, for every
    /// version together; 0: none ([`crate::prefix_store`]).
    pub prefix_cache_bytes: u64,
    pub prefix_dir: PathBuf,
}

/// `chat.n_gpu_layers`: a number, or `auto` (as many as fit on the GPU,
/// [`crate::gpu_plan`]). The daemon turns `auto` into a number before a model loads; an
/// engine given `auto` loads on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    Fixed(u32),
    Auto,
}

impl GpuLayers {
    /// The number llama.cpp is given.
    pub fn resolved(self) -> u32 {
        match self {
            GpuLayers::Fixed(n) => n,
            GpuLayers::Auto => 0,
        }
    }
}
