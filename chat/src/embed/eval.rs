//! The evaluation gate of an embedding model (`[embedding.eval]`): a separate engine
//! embeds the shipped sentences, and every vector's cosine similarity to its reference
//! vector (written by the reference implementation when the release was made) must be at
//! least `cosine_min`; with a retrieval set, each query's relevant passage must be among
//! its `k` nearest passages for at least `recall_min` of the queries.

use coffer_engine::FaultWatch;
use coffer_models::Manifest;
use coffer_models::embedding::{EmbeddingEvalGate, RetrievalSet};
use std::path::{Path, PathBuf};

use super::{EmbedFailure, EmbedJob, EmbedSettings, EmbedSpec, LlamaEmbedder, cosine};
use crate::engine::LoadError;

/// Why the gate could not run (as opposed to a model that fails it).
#[derive(Debug, thiserror::Error)]
pub enum EmbedEvalError {
    #[error("the manifest has no [embedding.eval]")]
    NoGate,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Embed(#[from] EmbedFailure),
}

/// What the gate measured.
#[derive(Debug, Clone)]
pub struct EmbedEvalReport {
    pub sentences: usize,
    pub min_cosine: f64,
    pub mean_cosine: f64,
    pub cosine_min: f64,
    /// Recall@k achieved, the floor and k, with a retrieval set.
    pub recall: Option<(f64, f64, usize)>,
}

impl EmbedEvalReport {
    pub fn passed(&self) -> bool {
        self.min_cosine >= self.cosine_min && self.recall.is_none_or(|(got, min, _)| got >= min)
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "cosine to reference over {} sentences: min {:.6} (gate {}), mean {:.6}",
            self.sentences, self.min_cosine, self.cosine_min, self.mean_cosine
        );
        if let Some((got, min, k)) = self.recall {
            s.push_str(&format!("; recall@{k} {got:.3} (gate {min})"));
        }
        s
    }
}

/// Runs the gate of the version in `dir` on `model_file`.
pub fn evaluate(
    dir: &Path,
    manifest: &Manifest,
    model_file: &Path,
    threads: usize,
) -> Result<EmbedEvalReport, EmbedEvalError> {
    let spec = manifest.embedding.as_ref().ok_or(EmbedEvalError::NoGate)?;
    let gate: &EmbeddingEvalGate = spec.eval.as_ref().ok_or(EmbedEvalError::NoGate)?;
    let read = |rel: &str| {
        let path = dir.join(rel);
        std::fs::read(&path).map_err(|source| EmbedEvalError::Read { path, source })
    };
    let sentences: Vec<String> = String::from_utf8(read(&gate.sentences)?)
        .map_err(|_| EmbedEvalError::Invalid(format!("{} is not UTF-8", gate.sentences)))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let raw = read(&gate.vectors)?;
    let settings = EmbedSettings {
        threads: threads.max(1),
        ..EmbedSettings::default()
    };
    let engine = LlamaEmbedder::start(
        model_file,
        &EmbedSpec {
            max_tokens: spec.max_tokens,
            normalize: spec.normalize,
        },
        &settings,
        FaultWatch::default().for_version(&manifest.name, &manifest.version),
    )?;
    let width = engine.dimensions();
    if width == 0 || raw.len() != sentences.len() * width * 4 {
        return Err(EmbedEvalError::Invalid(format!(
            "{} holds {} bytes; {} sentences of width {width} need {}",
            gate.vectors,
            raw.len(),
            sentences.len(),
            sentences.len() * width * 4
        )));
    }
    let got = embed_all(&engine, &sentences)?;
    let mut min_cosine = f64::INFINITY;
    let mut sum = 0.0;
    for (i, v) in got.iter().enumerate() {
        let reference: Vec<f32> = raw[i * width * 4..(i + 1) * width * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let c = cosine(v, &reference);
        min_cosine = min_cosine.min(c);
        sum += c;
    }
    let recall = match (&gate.retrieval, gate.recall_min) {
        (Some(file), Some(min)) => {
            let set: RetrievalSet = serde_json::from_slice(&read(file)?)
                .map_err(|e| EmbedEvalError::Invalid(format!("{file}: {e}")))?;
            Some((recall_at_k(&engine, &set)?, min, set.k))
        }
        _ => None,
    };
    Ok(EmbedEvalReport {
        sentences: sentences.len(),
        min_cosine,
        mean_cosine: sum / sentences.len().max(1) as f64,
        cosine_min: gate.cosine_min,
        recall,
    })
}

/// Embeds texts on `engine`, waiting for the answers (a blocking caller).
pub fn embed_all(
    engine: &LlamaEmbedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, EmbedEvalError> {
    let inputs = engine.tokenize(texts)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    engine
        .submit(EmbedJob { inputs, reply })
        .map_err(|e| EmbedEvalError::Invalid(e.to_string()))?;
    answer
        .blocking_recv()
        .map_err(|_| EmbedFailure::Engine("the engine ended without an answer".into()))?
        .map_err(EmbedEvalError::from)
}

/// The share of queries whose relevant passage is among their `k` nearest.
fn recall_at_k(engine: &LlamaEmbedder, set: &RetrievalSet) -> Result<f64, EmbedEvalError> {
    let passages: Vec<String> = set.passages.iter().map(|p| p.text.clone()).collect();
    let queries: Vec<String> = set.queries.iter().map(|q| q.query.clone()).collect();
    let pv = embed_all(engine, &passages)?;
    let qv = embed_all(engine, &queries)?;
    let mut hits = 0usize;
    for (q, v) in set.queries.iter().zip(&qv) {
        let mut ranked: Vec<(f64, &str)> = set
            .passages
            .iter()
            .zip(&pv)
            .map(|(p, pvec)| (cosine(v, pvec), p.id.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        if ranked.iter().take(set.k).any(|(_, id)| *id == q.relevant) {
            hits += 1;
        }
    }
    Ok(hits as f64 / set.queries.len().max(1) as f64)
}
