//! Sentence embeddings through llama.cpp: an encoder model (BERT and its kin, converted
//! to GGUF) whose pooled output is a fixed-width vector per input. [`LlamaEmbedder`] is
//! the handle the request path holds: it tokenizes (off the async workers), checks each
//! input against the model's limits, and queues [`EmbedJob`]s on the model's engine
//! thread, which packs the inputs of every queued job into as few encoder passes as the
//! batch allows ([`pack`]) and answers each job with its vectors in input order.
//!
//! Batching changes no vector beyond float rounding: each input is its own sequence in
//! the batch, attention never crosses sequences, and the weights multiply every row
//! alike (the tolerance is measured in `docs/embeddings.md`).

mod engine;
pub mod eval;
pub mod pack;

pub use engine::{EmbedSpec, LlamaEmbedder};

use tokio::sync::oneshot;

/// Why inputs were refused, or a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedFailure {
    #[error("input {index} is empty")]
    Empty { index: usize },
    #[error("input {index} has {tokens} tokens; this model embeds at most {max}")]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    #[error(
        "input {index} has token id {id}, which is not in the model's vocabulary (0 to {last})"
    )]
    UnknownToken { index: usize, id: i64, last: i64 },
    #[error("the embedding engine failed: {0}")]
    Engine(String),
}

/// Queued work: token sequences in, one vector per sequence out (in order).
#[derive(Debug)]
pub struct EmbedJob {
    pub inputs: Vec<Vec<i32>>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedFailure>>,
}

/// How the engine thread runs: encoder passes of at most `batch_tokens` tokens and
/// `max_sequences` inputs, `threads` CPU threads, at most `max_queue` jobs waiting.
#[derive(Debug, Clone)]
pub struct EmbedSettings {
    pub threads: usize,
    pub batch_tokens: usize,
    pub max_sequences: usize,
    pub max_queue: usize,
    /// Layers offloaded to a GPU (0: CPU only).
    pub n_gpu_layers: u32,
}

impl Default for EmbedSettings {
    fn default() -> Self {
        EmbedSettings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_tokens: 512,
            max_sequences: 64,
            max_queue: 256,
            n_gpu_layers: 0,
        }
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Cosine similarity of two vectors of the same width.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_vectors_have_unit_length_and_keep_their_direction() {
        let mut v = vec![3.0f32, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let mut zero = vec![0.0f32; 3];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 5.0]).abs() < 1e-12);
    }
}
