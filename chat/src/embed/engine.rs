//! The llama.cpp embedding engine: one thread per model version owns the model and an
//! encoder context. It blocks for a job, takes whatever else is queued (up to one
//! pass's worth of tokens), encodes the inputs in passes ([`super::pack`]), reads each
//! sequence's pooled vector, normalizes it when the model's manifest says so, and
//! answers each job. A panic in a pass is contained (`coffer_engine`): that pass's jobs
//! fail, the engine carries on.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use coffer_engine::EngineFaults;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use super::{EmbedFailure, EmbedJob, EmbedSettings, normalize, pack};
use crate::backend::backend;
use crate::engine::{LoadError, SubmitError};

/// What the manifest says of an embedding model.
#[derive(Debug, Clone)]
pub struct EmbedSpec {
    /// Tokens one input may have, special tokens included.
    pub max_tokens: usize,
    /// Scale each vector to unit length.
    pub normalize: bool,
}

/// The handle the request path holds.
pub struct LlamaEmbedder {
    tx: SyncSender<EmbedJob>,
    model: Arc<LlamaModel>,
    dimensions: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for LlamaEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaEmbedder")
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl LlamaEmbedder {
    /// Loads `gguf` on a new engine thread; returns once the model is loaded (or not).
    pub fn start(
        gguf: &Path,
        spec: &EmbedSpec,
        settings: &EmbedSettings,
        faults: Arc<EngineFaults>,
    ) -> Result<LlamaEmbedder, LoadError> {
        if !gguf.is_file() {
            return Err(LoadError::Missing(gguf.to_path_buf()));
        }
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(settings.n_gpu_layers);
        let model = Arc::new(
            LlamaModel::load_from_file(backend, gguf, &params)
                .map_err(|e| LoadError::Model(e.to_string()))?,
        );
        let train = model.n_ctx_train() as usize;
        if spec.max_tokens == 0 || spec.max_tokens > train {
            return Err(LoadError::Context(format!(
                "max_tokens {} is outside 1..={train}, the model's trained context",
                spec.max_tokens
            )));
        }
        let dimensions = usize::try_from(model.n_embd_out()).unwrap_or(0);
        // One input always fits a pass.
        let batch_tokens = settings.batch_tokens.max(spec.max_tokens);
        let n = u32::try_from(batch_tokens).unwrap_or(u32::MAX);
        let threads = i32::try_from(settings.threads.max(1)).unwrap_or(1);
        let sequences = settings.max_sequences.clamp(1, 256);
        let ctx_params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_n_ctx(NonZeroU32::new(n))
            .with_n_batch(n)
            .with_n_ubatch(n)
            .with_n_seq_max(u32::try_from(sequences).unwrap_or(1))
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let (tx, rx) = sync_channel::<EmbedJob>(settings.max_queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), LoadError>>();
        let thread_model = Arc::clone(&model);
        let normalize = spec.normalize;
        std::thread::Builder::new()
            .name("coffer-embed".into())
            .spawn(move || {
                let model = thread_model;
                let ctx = match model.new_context(backend, ctx_params) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(LoadError::Context(e.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                Engine {
                    ctx,
                    rx,
                    batch_tokens,
                    sequences,
                    normalize,
                    faults,
                }
                .run();
            })
            .map_err(|e| LoadError::Thread(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| LoadError::Thread("engine thread ended while loading".into()))??;
        Ok(LlamaEmbedder {
            tx,
            model,
            dimensions,
            max_tokens: spec.max_tokens,
        })
    }

    /// The width of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokenizes texts as the model's tokenizer does (special tokens added, none parsed
    /// from the text) and checks their lengths. Blocking: call it off the async workers.
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<i32>>, EmbedFailure> {
        let vocab = self.model.vocab();
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                if text.is_empty() {
                    return Err(EmbedFailure::Empty { index });
                }
                let tokens = vocab.tokenize(text.as_bytes(), true, false);
                self.check_length(index, tokens.len())?;
                Ok(tokens.into_iter().map(|t| t.0).collect())
            })
            .collect()
    }

    /// Checks inputs given as token ids: taken as they are (no special tokens added).
    pub fn check_tokens(&self, inputs: Vec<Vec<i64>>) -> Result<Vec<Vec<i32>>, EmbedFailure> {
        let last = i64::from(self.model.n_vocab()) - 1;
        inputs
            .into_iter()
            .enumerate()
            .map(|(index, ids)| {
                if ids.is_empty() {
                    return Err(EmbedFailure::Empty { index });
                }
                self.check_length(index, ids.len())?;
                ids.into_iter()
                    .map(|id| match i32::try_from(id) {
                        Ok(t) if (0..=last).contains(&id) => Ok(t),
                        _ => Err(EmbedFailure::UnknownToken { index, id, last }),
                    })
                    .collect()
            })
            .collect()
    }

    fn check_length(&self, index: usize, tokens: usize) -> Result<(), EmbedFailure> {
        if tokens > self.max_tokens {
            return Err(EmbedFailure::TooLong {
                index,
                tokens,
                max: self.max_tokens,
            });
        }
        Ok(())
    }

    /// Queues a job; its answer arrives on the job's reply channel.
    pub fn submit(&self, job: EmbedJob) -> Result<(), SubmitError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::QueueFull,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }
}

struct Engine<'m> {
    ctx: LlamaContext<'m>,
    rx: Receiver<EmbedJob>,
    batch_tokens: usize,
    sequences: usize,
    normalize: bool,
    faults: Arc<EngineFaults>,
}

impl Engine<'_> {
    fn run(mut self) {
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        while let Ok(first) = self.rx.recv() {
            let mut jobs = vec![first];
            let mut queued: usize = jobs[0].inputs.iter().map(Vec::len).sum();
            while queued < self.batch_tokens {
                match self.rx.try_recv() {
                    Ok(job) => {
                        queued += job.inputs.iter().map(Vec::len).sum::<usize>();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            // A client that went away needs no answer.
            jobs.retain(|j| !j.reply.is_closed());
            let lengths: Vec<Vec<usize>> = jobs
                .iter()
                .map(|j| j.inputs.iter().map(Vec::len).collect())
                .collect();
            let mut vectors: Vec<Vec<Option<Vec<f32>>>> =
                lengths.iter().map(|l| vec![None; l.len()]).collect();
            let mut failed: Vec<Option<EmbedFailure>> = vec![None; jobs.len()];
            for pass in pack::passes(&lengths, self.batch_tokens, self.sequences) {
                // A request whose client went away (or whose deadline passed) while its
                // earlier passes ran needs no more of them.
                if pass.iter().all(|&(j, _)| jobs[j].reply.is_closed()) {
                    continue;
                }
                let faults = Arc::clone(&self.faults);
                let result = faults
                    .contain("embedding pass", || self.encode(&mut batch, &jobs, &pass))
                    .map_err(|panicked| EmbedFailure::Engine(panicked.to_string()))
                    .and_then(|r| r);
                match result {
                    Ok(out) => {
                        for (&(j, i), v) in pass.iter().zip(out) {
                            vectors[j][i] = Some(v);
                        }
                    }
                    Err(e) => {
                        batch = LlamaBatch::new(self.batch_tokens, 1);
                        for &(j, _) in &pass {
                            failed[j] = Some(e.clone());
                        }
                    }
                }
            }
            for ((job, got), failure) in jobs.into_iter().zip(vectors).zip(failed) {
                let answer = match failure {
                    Some(e) => Err(e),
                    None => got
                        .into_iter()
                        .map(|v| v.ok_or_else(|| EmbedFailure::Engine("missing vector".into())))
                        .collect(),
                };
                let _ = job.reply.send(answer);
            }
        }
    }

    /// One encoder pass over the inputs at `pass`; their vectors in order.
    fn encode(
        &mut self,
        batch: &mut LlamaBatch,
        jobs: &[EmbedJob],
        pass: &[pack::Slot],
    ) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        let engine = |e: &dyn std::fmt::Display| EmbedFailure::Engine(e.to_string());
        batch.clear();
        for (seq, &(j, i)) in pass.iter().enumerate() {
            let tokens: Vec<LlamaToken> =
                jobs[j].inputs[i].iter().map(|t| LlamaToken(*t)).collect();
            let seq = i32::try_from(seq).map_err(|e| engine(&e))?;
            batch
                .add_sequence(&tokens, seq, true)
                .map_err(|e| engine(&e))?;
        }
        self.ctx.encode(batch).map_err(|e| engine(&e))?;
        (0..pass.len())
            .map(|seq| {
                let seq = i32::try_from(seq).map_err(|e| engine(&e))?;
                let mut v = self
                    .ctx
                    .embeddings_seq_ith(seq)
                    .map_err(|e| engine(&e))?
                    .to_vec();
                if self.normalize {
                    normalize(&mut v);
                }
                Ok(v)
            })
            .collect()
    }
}
