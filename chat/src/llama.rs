//! The llama.cpp chat engine (`llama-cpp-2`): one thread per model version owns the
//! model and a context with `slots` sequences. Continuous batching: between decode
//! steps, queued jobs take free slots and finished or cancelled ones leave; each step
//! decodes one token for every generating sequence, then one prompt chunk of one new
//! sequence, so a long prompt never stalls the others' tokens for more than a chunk. A
//! sequence that ends or whose client went away has its KV cells removed at once.
//!
//! Batching changes no answer (for weights that llama.cpp's CPU kernels compute row by
//! row alike; docs/chat.md): each sequence has a KV cache of its own (its attention is
//! computed alone), and a prompt is decoded on its own in chunks of `n_batch` tokens
//! counted from its first token, the same pieces whatever else is running.
//!
//! Prefix reuse ([`crate::prefix`]): a finished sequence's prompt KV stays in its slot
//! (its generated cells go) until the slot is needed, least recently used first; a new
//! prompt goes to the free slot holding its longest reusable prefix, or has a busy
//! slot's prefix copied into a free one (llama.cpp copies a whole per-sequence KV
//! buffer, then the tail is cut), and computes only the rest. Prompts are cut into
//! chunks that never cross a message's end, so what is reused is exactly what a cold
//! start would compute. System prompts that recur are saved to the state directory and
//! loaded into free slots at start ([`crate::prefix_store`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Instant;

use coffer_engine::{CoreShare, EngineFaults};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::engine::{ChatEngine, LoadError, SubmitError};
use crate::job::{ChatEvent, ChatFailure, ChatJob, Finish, GenParams, Message, Prompt};
use crate::metrics::{ChatModelMetrics, Completed};
use crate::prefix::chunk_ends;
use crate::prefix_store::PrefixStore;
use crate::prompt::{Prompter, chat_template};
use crate::settings::ChatSettings;
use crate::text::{Released, TextAssembler};

mod reuse;
use reuse::Residue;

/// The handle the request path holds.
#[derive(Debug)]
pub struct LlamaEngine {
    tx: SyncSender<ChatJob>,
    queue_depth: prometheus_client::metrics::gauge::Gauge,
    prompter: Prompter,
    slots: usize,
}

impl ChatEngine for LlamaEngine {
    fn prompt(&self, messages: &[Message]) -> Result<Prompt, ChatFailure> {
        self.prompter.prompt(messages)
    }

    fn submit(&self, job: ChatJob) -> Result<(), SubmitError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::QueueFull,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })?;
        self.queue_depth.inc();
        Ok(())
    }

    fn context_per_request(&self) -> usize {
        self.prompter.per_request()
    }

    fn slots(&self) -> usize {
        self.slots
    }
}

impl LlamaEngine {
    /// Loads `gguf` on a new engine thread; returns once the model is loaded (or not).
    pub fn start(
        gguf: &Path,
        template_name: Option<String>,
        prefixes: Option<PrefixStore>,
        settings: &ChatSettings,
        metrics: ChatModelMetrics,
        faults: Arc<EngineFaults>,
    ) -> Result<LlamaEngine, LoadError> {
        if !gguf.is_file() {
            return Err(LoadError::Missing(gguf.to_path_buf()));
        }
        let backend = backend()?;
        let (tx, rx) = sync_channel::<ChatJob>(settings.max_queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Prompter, LoadError>>();
        let path = gguf.to_path_buf();
        let settings = settings.clone();
        let slots = settings.slots;
        let queue_depth = metrics.queue_depth.clone();
        std::thread::Builder::new()
            .name("coffer-chat".into())
            .spawn(move || {
                let layers = settings.n_gpu_layers.resolved();
                let mut params = LlamaModelParams::default().with_n_gpu_layers(layers);
                let single = llama_cpp_2::model::params::LlamaSplitMode::None;
                if layers == 0 {
                    // No GPU at all: with none of its layers there, llama.cpp would still
                    // start every GPU's backend and send prompt batches to one of them.
                    params = params.with_split_mode(single).with_main_gpu(-1);
                } else if let Some(gpu) = settings.main_gpu {
                    // The whole model on the chosen GPU, not split over every GPU.
                    params = params
                        .with_split_mode(single)
                        .with_main_gpu(i32::try_from(gpu).unwrap_or(0));
                }
                let model = match LlamaModel::load_from_file(backend, &path, &params) {
                    Ok(m) => Arc::new(m),
                    Err(e) => {
                        let _ = ready_tx.send(Err(LoadError::Model(e.to_string())));
                        return;
                    }
                };
                let Some(template) = chat_template(&model, template_name.as_deref()) else {
                    let _ = ready_tx.send(Err(LoadError::NoTemplate));
                    return;
                };
                let per_request = settings.context.min(model.n_ctx_train() as usize).max(64);
                let n_ctx = NonZeroU32::new(
                    u32::try_from(per_request * settings.slots).unwrap_or(u32::MAX),
                );
                let threads = i32::try_from(settings.threads).unwrap_or(1);
                let ctx_params = LlamaContextParams::default()
                    .with_n_ctx(n_ctx)
                    .with_n_batch(settings.n_batch)
                    .with_n_ubatch(settings.n_batch)
                    .with_n_seq_max(u32::try_from(settings.slots).unwrap_or(1))
                    // A KV cache split per slot (llama.cpp's default for several
                    // sequences): each sequence's attention is computed on its own,
                    // so batching never changes a result. One unified pool sums over
                    // shared cells in a different order and changed greedy answers
                    // (docs/chat.md).
                    .with_kv_unified(false)
                    .with_n_threads(threads)
                    .with_n_threads_batch(threads);
                let ctx = match model.new_context(backend, ctx_params) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(LoadError::Context(e.to_string())));
                        return;
                    }
                };
                let prompter = Prompter::new(Arc::clone(&model), template, per_request);
                let _ = ready_tx.send(Ok(prompter));
                let mut engine = Engine {
                    model: &model,
                    ctx,
                    rx,
                    slots: (0..settings.slots).map(|_| None).collect(),
                    residue: (0..settings.slots).map(|_| None).collect(),
                    per_request,
                    n_batch: settings.n_batch as usize,
                    reuse: settings.prefix_reuse,
                    prefixes,
                    seen: HashMap::new(),
                    metrics,
                    faults,
                    threads: (settings.threads, settings.threads_beside_scoring),
                    decoding_threads: threads,
                    cores: Arc::clone(&settings.cores),
                };
                engine.load_saved_prefixes();
                engine.run();
            })
            .map_err(|e| LoadError::Thread(e.to_string()))?;
        let prompter = ready_rx
            .recv()
            .map_err(|_| LoadError::Thread("engine thread ended while loading".into()))??;
        Ok(LlamaEngine {
            tx,
            queue_depth,
            prompter,
            slots,
        })
    }
}

/// One sequence being served.
struct Active {
    job: ChatJob,
    sampler: LlamaSampler,
    prompt: Vec<LlamaToken>,
    /// The ends of the prompt's chunks ([`chunk_ends`]).
    ends: Vec<usize>,
    /// Prompt tokens already decoded (or taken from the prefix cache).
    fed: usize,
    /// Prompt tokens taken from the prefix cache.
    cached: usize,
    /// Position of the next token in this sequence.
    pos: i32,
    /// The token to feed next once the prompt is in.
    next: Option<LlamaToken>,
    /// Index in the batch just decoded whose logits this sequence samples from.
    logits_at: Option<i32>,
    generated: usize,
    max_tokens: usize,
    text: TextAssembler,
    /// Everything sent to the client so far, for the quality signals at the end
    /// ([`Completed`]); dropped with the slot, never logged.
    answer: String,
    first_token_at: Option<Instant>,
    last_token_at: Instant,
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    rx: Receiver<ChatJob>,
    slots: Vec<Option<Active>>,
    /// What each free slot still holds for reuse (`None` for busy or empty slots).
    residue: Vec<Option<Residue>>,
    per_request: usize,
    n_batch: usize,
    reuse: bool,
    prefixes: Option<PrefixStore>,
    /// How often each system prompt was seen (by hash): one seen twice is saved.
    seen: HashMap<u64, u32>,
    metrics: ChatModelMetrics,
    faults: Arc<EngineFaults>,
    /// Threads: all, and beside scoring.
    threads: (usize, usize),
    /// The threads the context decodes with now.
    decoding_threads: i32,
    cores: Arc<CoreShare>,
}

impl Engine<'_> {
    fn run(mut self) {
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        loop {
            let faults = Arc::clone(&self.faults);
            match faults.contain("chat decode step", || self.step(&mut batch)) {
                Ok(true) => {}
                Ok(false) => return,
                // Which sequence's state the panic left half-made is unknown: every
                // sequence in flight fails, its KV cells go, and the loop starts clean.
                Err(panicked) => {
                    for seq in 0..self.slots.len() {
                        self.fail(seq, ChatFailure::Engine(panicked.to_string()));
                        self.forget(seq);
                    }
                    batch = LlamaBatch::new(self.n_batch, 1);
                }
            }
        }
    }

    /// One turn of the loop: admit, drop the cancelled, decode; false once the queue is
    /// closed.
    fn step(&mut self, batch: &mut LlamaBatch) -> bool {
        if !self.admit() {
            return false;
        }
        self.drop_cancelled();
        batch.clear();
        if self.fill_generation(batch) {
            self.decode_and_sample(batch, None);
        }
        batch.clear();
        if let Some(seq) = self.fill_prompt(batch) {
            self.decode_and_sample(batch, Some(seq));
        }
        true
    }

    /// Decodes `batch` and samples every sequence that has logits in it; on a decode
    /// error, those sequences and `chunk_of` (whose prompt chunk was in it) fail.
    fn decode_and_sample(&mut self, batch: &mut LlamaBatch, chunk_of: Option<usize>) {
        self.share_cores();
        if let Err(e) = self.ctx.decode(batch) {
            let failure = ChatFailure::Engine(e.to_string());
            for seq in 0..self.slots.len() {
                if chunk_of == Some(seq)
                    || self.slots[seq]
                        .as_ref()
                        .is_some_and(|a| a.logits_at.is_some())
                {
                    self.fail(seq, failure.clone());
                }
            }
            return;
        }
        self.sample_all();
    }

    /// Decodes the next step on fewer threads while scoring requests come in, on all of
    /// them otherwise ([`CoreShare`]). The thread count changes no result: llama.cpp's
    /// CPU kernels split rows between threads, each row computed whole by one.
    fn share_cores(&mut self) {
        let (all, beside) = self.threads;
        let want = i32::try_from(self.cores.chat_threads(all, beside)).unwrap_or(1);
        if self.decoding_threads != want {
            self.ctx.set_n_threads(want, want);
            self.decoding_threads = want;
        }
        self.metrics.threads.set(i64::from(want));
    }

    /// Takes queued jobs into free slots. Blocks while nothing is active. False when the
    /// engine should stop (its handle is gone and nothing is active).
    fn admit(&mut self) -> bool {
        while self.slots.iter().any(Option::is_none) {
            let idle = self.slots.iter().all(Option::is_none);
            let job = if idle {
                match self.rx.recv() {
                    Ok(job) => job,
                    Err(_) => return false,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            self.metrics.queue_depth.dec();
            if job.events.is_closed() {
                continue;
            }
            match self.prepare(&job) {
                Ok((prompt, max_tokens, sampler)) => {
                    if job
                        .events
                        .send(ChatEvent::Started {
                            prompt_tokens: prompt.len(),
                            max_tokens,
                        })
                        .is_err()
                    {
                        continue;
                    }
                    self.metrics.prompt_tokens.inc_by(prompt.len() as u64);
                    let ends = chunk_ends(prompt.len(), &job.prompt.breaks, self.n_batch);
                    let (free, cached) = self.place(&job.prompt, &ends);
                    self.metrics.prefix_queried.inc_by(prompt.len() as u64);
                    self.metrics.prefix_hit.inc_by(cached as u64);
                    self.slots[free] = Some(Active {
                        text: TextAssembler::new(job.params.stop.clone()),
                        answer: String::new(),
                        job,
                        sampler,
                        prompt,
                        ends,
                        fed: cached,
                        cached,
                        pos: i32::try_from(cached).unwrap_or(i32::MAX),
                        next: None,
                        logits_at: None,
                        generated: 0,
                        max_tokens,
                        first_token_at: None,
                        last_token_at: Instant::now(),
                    });
                    self.metrics.slots_busy.inc();
                }
                Err(failure) => {
                    let _ = job.events.send(ChatEvent::Failed(failure));
                }
            }
        }
        true
    }

    /// The prompt's tokens, the completion budget and the sampler of a job. Its prompt was
    /// templated, tokenized and checked off this thread (`ChatEngine::prompt`); the length
    /// is checked once more here because the engine's context depends on it, whoever
    /// built the job.
    fn prepare(
        &self,
        job: &ChatJob,
    ) -> Result<(Vec<LlamaToken>, usize, LlamaSampler), ChatFailure> {
        let tokens: Vec<LlamaToken> = job.prompt.tokens.iter().map(|&t| LlamaToken(t)).collect();
        if tokens.len() + 1 > self.per_request {
            return Err(ChatFailure::ContextLengthExceeded {
                prompt_tokens: tokens.len(),
                limit: self.per_request,
            });
        }
        let room = self.per_request - tokens.len();
        let max_tokens = job
            .params
            .max_tokens
            .map_or(room, |m| (m as usize).min(room))
            .max(1);
        let sampler = sampler(self.model, &job.params)?;
        Ok((tokens, max_tokens, sampler))
    }

    fn drop_cancelled(&mut self) {
        for seq in 0..self.slots.len() {
            if self.slots[seq]
                .as_ref()
                .is_some_and(|a| a.job.events.is_closed())
            {
                self.metrics.cancelled.inc();
                self.free(seq);
            }
        }
    }

    /// One token for every generating sequence. False if none is generating.
    fn fill_generation(&mut self, batch: &mut LlamaBatch) -> bool {
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot else { continue };
            // `chat.n_batch >= chat.slots` (checked in the config) leaves room for every
            // generating sequence.
            if let Some(token) = a.next {
                if batch.add(token, a.pos, &[seq as i32], true).is_ok() {
                    a.next = None;
                    a.logits_at = Some(batch.n_tokens() - 1);
                    a.pos += 1;
                }
            }
        }
        batch.n_tokens() > 0
    }

    /// The next chunk of the earliest queued prompt not yet decoded: `n_batch` tokens
    /// counted from its first token (the last chunk shorter), alone in the batch, so a
    /// prompt is cut into the same pieces however many sequences are running. The
    /// sequence whose chunk it is, or None if no prompt is waiting.
    fn fill_prompt(&mut self, batch: &mut LlamaBatch) -> Option<usize> {
        let (seq, a) = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(seq, slot)| slot.as_mut().map(|a| (seq, a)))
            .filter(|(_, a)| a.fed < a.prompt.len())
            .min_by_key(|(_, a)| a.job.enqueued)?;
        let end = a
            .ends
            .iter()
            .copied()
            .find(|&e| e > a.fed)
            .unwrap_or(a.prompt.len());
        while a.fed < end {
            let last = a.fed + 1 == a.prompt.len();
            if batch
                .add(a.prompt[a.fed], a.pos, &[seq as i32], last)
                .is_err()
            {
                break;
            }
            a.fed += 1;
            a.pos += 1;
            if last {
                a.logits_at = Some(batch.n_tokens() - 1);
            }
        }
        (batch.n_tokens() > 0).then_some(seq)
    }

    fn sample_all(&mut self) {
        let model: &LlamaModel = self.model;
        let vocab = model.vocab();
        for seq in 0..self.slots.len() {
            let Some(a) = self.slots[seq].as_mut() else {
                continue;
            };
            let Some(at) = a.logits_at.take() else {
                continue;
            };
            let token = a.sampler.sample(&self.ctx, at);
            let now = Instant::now();
            match a.first_token_at {
                None => {
                    a.first_token_at = Some(now);
                    self.metrics.ttft(now - a.job.enqueued);
                }
                Some(_) => self.metrics.inter_token(now - a.last_token_at),
            }
            a.last_token_at = now;
            if vocab.is_eog(token) {
                self.finish(seq, Finish::Stop, true);
                continue;
            }
            a.generated += 1;
            self.metrics.completion_tokens.inc();
            let piece = vocab.token_to_piece(token, false, None);
            let released = a.text.push(&piece);
            let (text, stopped) = match released {
                Released::Text(t) => (t, false),
                Released::Stopped(t) => (t, true),
            };
            if !text.is_empty() {
                a.answer.push_str(&text);
                if a.job.events.send(ChatEvent::Delta(text)).is_err() {
                    self.metrics.cancelled.inc();
                    self.free(seq);
                    continue;
                }
            }
            if stopped {
                // The stop string and what followed it in the piece are not sent.
                self.finish(seq, Finish::Stop, false);
            } else if a.generated >= a.max_tokens {
                self.finish(seq, Finish::Length, true);
            } else {
                a.next = Some(token);
            }
        }
    }

    /// Ends a sequence that ran to its end. `flush`: send the text held back because it
    /// could have begun a stop string (not when one was found).
    fn finish(&mut self, seq: usize, finish: Finish, flush: bool) {
        if let Some(a) = self.slots[seq].as_mut() {
            if flush {
                let rest = a.text.finish();
                if !rest.is_empty() {
                    a.answer.push_str(&rest);
                    let _ = a.job.events.send(ChatEvent::Delta(rest));
                }
            }
            // Counted before the client hears "done", so that metrics read after a
            // response include it. Here, on the engine thread, not on the async
            // runtime: the JSON check reads the whole answer once.
            self.metrics.completed(&Completed {
                finish,
                completion_tokens: a.generated,
                text: &a.answer,
                json: a.job.params.expects_json(),
            });
            let _ = a.job.events.send(ChatEvent::Done {
                finish,
                prompt_tokens: a.prompt.len(),
                cached_tokens: a.cached,
                completion_tokens: a.generated,
            });
        }
        self.free(seq);
    }

    /// Fails a sequence: its KV cells are not trusted for reuse.
    fn fail(&mut self, seq: usize, failure: ChatFailure) {
        if let Some(a) = self.slots[seq].take() {
            self.metrics.slots_busy.dec();
            let _ = a.job.events.send(ChatEvent::Failed(failure));
            self.forget(seq);
        }
    }

    /// Frees the slot. Its prompt's decoded chunks stay for reuse (with reuse on); the
    /// generated cells go.
    fn free(&mut self, seq: usize) {
        let Some(a) = self.slots[seq].take() else {
            return;
        };
        self.metrics.slots_busy.dec();
        let kept = a
            .ends
            .iter()
            .copied()
            .filter(|&e| e <= a.fed)
            .max()
            .unwrap_or(0);
        if !self.reuse || kept == 0 {
            self.forget(seq);
            return;
        }
        self.cut(seq, kept);
        self.residue[seq] = Some(Residue {
            tokens: a.job.prompt.tokens[..kept].to_vec(),
            ends: a.ends.iter().copied().filter(|&e| e <= kept).collect(),
            used: Instant::now(),
        });
        self.maybe_save(seq, a.job.prompt.shared);
    }

    /// Removes every KV cell of `seq` and what it held.
    fn forget(&mut self, seq: usize) {
        self.residue[seq] = None;
        let _ = self
            .ctx
            .clear_kv_cache_seq(u32::try_from(seq).ok(), None, None);
    }

    /// Removes the cells of `seq` from position `from` on.
    fn cut(&mut self, seq: usize, from: usize) {
        let _ =
            self.ctx
                .clear_kv_cache_seq(u32::try_from(seq).ok(), u32::try_from(from).ok(), None);
    }
}

/// The sampler chain for one request: grammar, penalties, then greedy or
/// top-p/temperature/seeded draw.
fn sampler(model: &LlamaModel, p: &GenParams) -> Result<LlamaSampler, ChatFailure> {
    let mut chain = Vec::new();
    if let Some(grammar) = &p.grammar {
        chain.push(
            LlamaSampler::grammar(model, grammar, "root")
                .map_err(|e| ChatFailure::Grammar(e.to_string()))?,
        );
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            64,
            1.0,
            p.frequency_penalty,
            p.presence_penalty,
        ));
    }
    if p.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.push(LlamaSampler::top_p(p.top_p, 1));
        chain.push(LlamaSampler::temp(p.temperature));
        chain.push(LlamaSampler::dist(p.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}
