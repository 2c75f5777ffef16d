//! The evaluation gate of a chat model version (`[chat.eval]` in its manifest), run in
//! an engine instance of its own (its own `LlamaModel` and `LlamaContext` on the calling
//! thread, CPU only), never the serving one:
//!
//! - perplexity on the version's eval text: the text is tokenized (with BOS where the
//!   model adds one) and evaluated in consecutive, non-overlapping windows of at most
//!   [`N_CTX`] tokens, each starting with BOS on an empty KV cache; every next token's
//!   negative log-likelihood comes from a log-softmax over llama.cpp's logits, and the
//!   perplexity is `exp(mean NLL)` over at most [`MAX_TOKENS`] predicted tokens;
//! - golden answers (optional): each conversation becomes tokens through the serving
//!   engine's own renderer ([`crate::prompt::render`], with the template
//!   [`crate::prompt::chat_template`] picks), so the gate judges the prompts that are
//!   served; it is decoded greedily for the answer's token count plus [`EXTRA_TOKENS`],
//!   and passes if the completion (leading whitespace trimmed) starts with the expected
//!   answer.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use coffer_models::Manifest;
use coffer_models::manifest::GoldenAnswer;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::job::{ChatFailure, Message, Role};
use crate::prompt::{chat_template, render};
use crate::text::{Released, TextAssembler};

/// Context (and batch) of the evaluation engine, in tokens: one perplexity window, or
/// one golden prompt with its answer.
pub const N_CTX: u32 = 512;
/// Predicted tokens of the eval text that count towards the perplexity, at most.
pub const MAX_TOKENS: usize = 2048;
/// Tokens generated for a golden answer beyond the answer's own token count.
pub const EXTRA_TOKENS: usize = 8;
/// Characters of a failed golden completion shown in its failure message, at most.
const SHOWN_CHARS: usize = 80;

/// Result of running a chat model version's own evaluation set in a separate engine
/// instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvalReport {
    /// `exp(mean negative log-likelihood)` of the eval text's tokens.
    pub perplexity: f64,
    /// Predicted tokens the perplexity was computed on.
    pub tokens: usize,
    /// The gate's bound.
    pub perplexity_max: f64,
    pub golden_passed: usize,
    pub golden_total: usize,
    /// One line per golden answer that failed.
    pub failures: Vec<String>,
}

impl ChatEvalReport {
    /// The perplexity is within the bound (and finite) and no golden answer failed.
    pub fn passed(&self) -> bool {
        self.perplexity.is_finite()
            && self.perplexity <= self.perplexity_max
            && self.failures.is_empty()
    }

    /// One line: `perplexity 12.34 <= 40 on 512 tokens; golden 2/2`, or why it failed.
    pub fn summary(&self) -> String {
        let perplexity = if !self.perplexity.is_finite() {
            format!(
                "perplexity is not finite ({}) on {} tokens",
                self.perplexity, self.tokens
            )
        } else if self.perplexity <= self.perplexity_max {
            format!(
                "perplexity {:.2} <= {} on {} tokens",
                self.perplexity, self.perplexity_max, self.tokens
            )
        } else {
            format!(
                "perplexity {:.2} exceeds perplexity_max {} on {} tokens",
                self.perplexity, self.perplexity_max, self.tokens
            )
        };
        let golden = if self.golden_total == 0 {
            "no golden answers".to_string()
        } else {
            format!("golden {}/{}", self.golden_passed, self.golden_total)
        };
        let mut line = format!("{perplexity}; {golden}");
        for failure in &self.failures {
            line.push_str("; ");
            line.push_str(failure);
        }
        line
    }
}

/// Why the evaluation could not be run (as opposed to ran and failed the gate).
#[derive(Debug, thiserror::Error)]
pub enum ChatEvalError {
    #[error("{0} has no chat evaluation gate ([chat.eval] in its manifest)")]
    NoGate(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("eval text {} has {tokens} tokens; at least 2 are needed", path.display())]
    TextTooShort { path: PathBuf, tokens: usize },
    #[error("golden answers {}: {problem}", path.display())]
    Golden { path: PathBuf, problem: String },
    #[error("model file {} is missing", .0.display())]
    MissingModel(PathBuf),
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    #[error("llama.cpp cannot load {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("llama.cpp cannot create an evaluation context for {}: {message}", path.display())]
    Context { path: PathBuf, message: String },
    #[error(
        "{} has no chat template and the manifest names none ([chat] template); golden answers {} need one",
        model.display(),
        golden.display()
    )]
    NoTemplate { model: PathBuf, golden: PathBuf },
    #[error("llama.cpp failed on {}: {message}", path.display())]
    Decode { path: PathBuf, message: String },
}

/// Runs the evaluation set of the chat model version in `dir` (its manifest `manifest`)
/// on `model_file` (the chosen variant's GGUF) with `threads` llama.cpp threads, on the
/// calling thread (it blocks for as long as the evaluation takes).
pub fn evaluate(
    dir: &Path,
    manifest: &Manifest,
    model_file: &Path,
    threads: usize,
) -> Result<ChatEvalReport, ChatEvalError> {
    let gate = manifest
        .chat_gate()
        .ok_or_else(|| ChatEvalError::NoGate(manifest.id()))?;
    let text_path = dir.join(&gate.text);
    let text = std::fs::read_to_string(&text_path).map_err(|source| ChatEvalError::Read {
        path: text_path.clone(),
        source,
    })?;
    let golden = match &gate.golden {
        Some(file) => {
            let path = dir.join(file);
            let answers = read_golden(&path)?;
            Some((path, answers))
        }
        None => None,
    };

    if !model_file.is_file() {
        return Err(ChatEvalError::MissingModel(model_file.to_path_buf()));
    }
    let backend = backend().map_err(|e| ChatEvalError::Backend(e.to_string()))?;
    let params = LlamaModelParams::default().with_n_gpu_layers(0);
    let model = LlamaModel::load_from_file(backend, model_file, &params).map_err(|e| {
        ChatEvalError::Load {
            path: model_file.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    let n_ctx = N_CTX.min(model.n_ctx_train()).max(2);
    let threads = i32::try_from(threads.max(1)).unwrap_or(1);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(1)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model
        .new_context(backend, ctx_params)
        .map_err(|e| ChatEvalError::Context {
            path: model_file.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut engine = EvalEngine {
        model: &model,
        ctx: &mut ctx,
        batch: LlamaBatch::new(n_ctx as usize, 1),
        n_ctx: n_ctx as usize,
    };

    let (perplexity, tokens) = engine.perplexity(&text, &text_path)?;

    let mut golden_passed = 0;
    let mut golden_total = 0;
    let mut failures = Vec::new();
    if let Some((golden_path, answers)) = golden {
        let named = manifest.chat.as_ref().and_then(|c| c.template.as_deref());
        let Some(template) = chat_template(&model, named) else {
            return Err(ChatEvalError::NoTemplate {
                model: model_file.to_path_buf(),
                golden: golden_path,
            });
        };
        golden_total = answers.len();
        for (i, answer) in answers.iter().enumerate() {
            match engine.golden(&template, answer, &golden_path, i)? {
                None => golden_passed += 1,
                Some(failure) => failures.push(failure),
            }
        }
    }

    Ok(ChatEvalReport {
        perplexity,
        tokens,
        perplexity_max: gate.perplexity_max,
        golden_passed,
        golden_total,
        failures,
    })
}

/// Parses and checks a golden answers file.
fn read_golden(path: &Path) -> Result<Vec<GoldenAnswer>, ChatEvalError> {
    let bytes = std::fs::read(path).map_err(|source| ChatEvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |problem: String| ChatEvalError::Golden {
        path: path.to_path_buf(),
        problem,
    };
    let answers: Vec<GoldenAnswer> = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "not a JSON list of {{\"messages\": [...], \"answer\": \"...\"}}: {e}"
        ))
    })?;
    if answers.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    for (i, a) in answers.iter().enumerate() {
        if a.messages.is_empty() {
            return Err(bad(format!("[{i}].messages is empty")));
        }
        if a.answer.trim().is_empty() {
            return Err(bad(format!("[{i}].answer is empty")));
        }
        for (j, m) in a.messages.iter().enumerate() {
            if role(&m.role).is_none() {
                return Err(bad(format!(
                    "[{i}].messages[{j}].role {:?} is not supported; use system, user or assistant",
                    m.role
                )));
            }
        }
    }
    Ok(answers)
}

/// A message role as the chat API accepts it (`api::chat::request`).
fn role(name: &str) -> Option<Role> {
    match name {
        "system" | "developer" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

/// The evaluation instance: its model, its one-sequence context and a batch of `n_ctx`.
struct EvalEngine<'a, 'm> {
    model: &'m LlamaModel,
    ctx: &'a mut LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_ctx: usize,
}

impl EvalEngine<'_, '_> {
    /// Decodes `tokens` at positions `from..` of sequence 0; logits for every token when
    /// `all_logits`, else for the last one only.
    fn decode(
        &mut self,
        tokens: &[LlamaToken],
        from: usize,
        all_logits: bool,
        file: &Path,
    ) -> Result<(), ChatEvalError> {
        let failed = |message: String| ChatEvalError::Decode {
            path: file.to_path_buf(),
            message,
        };
        self.batch.clear();
        for (i, &token) in tokens.iter().enumerate() {
            let pos = i32::try_from(from + i).map_err(|e| failed(e.to_string()))?;
            self.batch
                .add(token, pos, &[0], all_logits || i + 1 == tokens.len())
                .map_err(|e| failed(e.to_string()))?;
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| failed(e.to_string()))
    }

    /// Perplexity of `text` and the number of predicted tokens it is computed on.
    fn perplexity(&mut self, text: &str, file: &Path) -> Result<(f64, usize), ChatEvalError> {
        let vocab = self.model.vocab();
        let bos = vocab.should_add_bos().then(|| vocab.bos());
        let tokens = vocab.tokenize(text.as_bytes(), false, false);
        if tokens.len() < 2 {
            return Err(ChatEvalError::TextTooShort {
                path: file.to_path_buf(),
                tokens: tokens.len(),
            });
        }
        let per_window = self.n_ctx - usize::from(bos.is_some());
        let mut nll = 0.0_f64;
        let mut scored = 0_usize;
        for chunk in tokens.chunks(per_window) {
            let window: Vec<LlamaToken> = bos.into_iter().chain(chunk.iter().copied()).collect();
            // Position i predicts token i + 1.
            let predictions = (window.len() - 1).min(MAX_TOKENS - scored);
            if predictions == 0 {
                continue;
            }
            self.ctx.clear_kv_cache();
            self.decode(&window[..predictions], 0, true, file)?;
            for (i, target) in window[1..=predictions].iter().enumerate() {
                // `i < predictions <= n_ctx` fits an i32.
                let logits = self.ctx.get_logits_ith(i as i32);
                nll += negative_log_likelihood(logits, *target).ok_or_else(|| {
                    ChatEvalError::Decode {
                        path: file.to_path_buf(),
                        message: format!("token {} is outside the vocabulary", target.0),
                    }
                })?;
            }
            scored += predictions;
            if scored >= MAX_TOKENS {
                break;
            }
        }
        self.ctx.clear_kv_cache();
        Ok(((nll / scored as f64).exp(), scored))
    }

    /// Runs golden answer `index`: `None` if it passed, else why not.
    fn golden(
        &mut self,
        template: &LlamaChatTemplate,
        golden: &GoldenAnswer,
        file: &Path,
        index: usize,
    ) -> Result<Option<String>, ChatEvalError> {
        let bad = |problem: String| ChatEvalError::Golden {
            path: file.to_path_buf(),
            problem,
        };
        let messages: Vec<Message> = golden
            .messages
            .iter()
            .map(|m| Message {
                role: role(&m.role).unwrap_or(Role::User),
                content: m.content.clone(),
            })
            .collect();
        let vocab = self.model.vocab();
        let budget = vocab.tokenize(golden.answer.as_bytes(), false, false).len() + EXTRA_TOKENS;
        let too_long = |prompt: String| {
            format!(
                "golden[{index}]: a prompt of {prompt} tokens and {budget} answer tokens do not fit the evaluation context of {}",
                self.n_ctx
            )
        };
        // Exactly the tokens the serving engine would decode for these messages.
        let tokens = match render(self.model, template, &messages, self.n_ctx) {
            Ok((tokens, _)) => tokens,
            Err(ChatFailure::ContextLengthExceeded { prompt_tokens, .. }) => {
                return Ok(Some(too_long(format!("at least {prompt_tokens}"))));
            }
            Err(e) => return Err(bad(format!("[{index}]: {e}"))),
        };
        if tokens.is_empty() || tokens.len() + budget > self.n_ctx {
            return Ok(Some(too_long(tokens.len().to_string())));
        }
        self.ctx.clear_kv_cache();
        self.decode(&tokens, 0, false, file)?;
        let mut at = self.batch.n_tokens() - 1;
        let mut pos = tokens.len();
        let mut sampler = LlamaSampler::chain_simple([LlamaSampler::greedy()]);
        let mut text = TextAssembler::new(Vec::new());
        let mut out = String::new();
        for step in 0..budget {
            let token = sampler.sample(&*self.ctx, at);
            if vocab.is_eog(token) {
                break;
            }
            match text.push(&vocab.token_to_piece(token, false, None)) {
                Released::Text(t) | Released::Stopped(t) => out.push_str(&t),
            }
            if step + 1 < budget {
                self.decode(&[token], pos, false, file)?;
                pos += 1;
                at = 0;
            }
        }
        out.push_str(&text.finish());
        self.ctx.clear_kv_cache();
        if out.trim_start().starts_with(&golden.answer) {
            return Ok(None);
        }
        let shown: String = out.chars().take(SHOWN_CHARS).collect();
        let more = if out.chars().count() > SHOWN_CHARS {
            "…"
        } else {
            ""
        };
        Ok(Some(format!(
            "golden[{index}]: expected {:?}, got {shown:?}{more}",
            golden.answer
        )))
    }
}

/// `-log softmax(logits)[target]`, computed stably (in f64, shifted by the maximum).
fn negative_log_likelihood(logits: &[f32], target: LlamaToken) -> Option<f64> {
    let target = logits.get(usize::try_from(target.0).ok()?)?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    Some(max + sum.ln() - f64::from(*target))
}

#[cfg(test)]
mod tests {
    use super::*;

    use coffer_models::ChatEvalGate;

    /// The model `models/fetch-smollm2` writes, as `daemon/tests/api/chat.rs` finds it:
    /// absent, the tests say so and pass, except under CI.
    fn model_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("COFFER_CHAT_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/chat/smollm2-135m/1.0.0")
            });
        if dir.join("manifest.toml").is_file() {
            return Some(dir);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must fetch the chat model (models/fetch-smollm2 in .ci/run)"
        );
        eprintln!(
            "skipped: no chat model at {} (run models/fetch-smollm2)",
            dir.display()
        );
        None
    }

    struct Shipped {
        dir: PathBuf,
        manifest: Manifest,
        model_file: PathBuf,
    }

    fn shipped() -> Option<Shipped> {
        let dir = model_dir()?;
        let text = std::fs::read_to_string(dir.join("manifest.toml")).unwrap();
        let manifest = Manifest::parse(&text).unwrap();
        assert!(
            manifest.chat_gate().is_some(),
            "{} has no [chat.eval]: rerun models/fetch-smollm2",
            dir.display()
        );
        let model_file = dir.join(&manifest.variant_file(None).unwrap().path);
        Some(Shipped {
            dir,
            manifest,
            model_file,
        })
    }

    /// The shipped manifest with its gate replaced.
    fn with_gate(manifest: &Manifest, gate: ChatEvalGate) -> Manifest {
        let mut m = manifest.clone();
        m.chat.get_or_insert_with(Default::default).eval = Some(gate);
        m
    }

    #[test]
    fn the_shipped_eval_set_passes() {
        let Some(s) = shipped() else { return };
        let report = evaluate(&s.dir, &s.manifest, &s.model_file, 2).unwrap();
        eprintln!("{}", report.summary());
        assert!(report.perplexity.is_finite() && report.perplexity > 1.0);
        assert!(report.tokens >= 200, "{}", report.tokens);
        assert_eq!(report.golden_total, 2);
        assert!(report.passed(), "{}", report.summary());
        assert!(
            report.summary().contains("golden 2/2"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn shuffled_words_are_clearly_more_perplexing() {
        let Some(s) = shipped() else { return };
        let gate = s.manifest.chat_gate().unwrap().clone();
        let text = std::fs::read_to_string(s.dir.join(&gate.text)).unwrap();
        let mut words: Vec<&str> = text.split_whitespace().collect();
        // Fisher-Yates with a fixed xorshift: the same order every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for i in (1..words.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            words.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("eval")).unwrap();
        std::fs::write(tmp.path().join("eval/shuffled.txt"), words.join(" ")).unwrap();
        std::fs::write(tmp.path().join("eval/original.txt"), &text).unwrap();
        let run = |file: &str| {
            let m = with_gate(
                &s.manifest,
                ChatEvalGate {
                    text: file.into(),
                    perplexity_max: gate.perplexity_max,
                    golden: None,
                },
            );
            evaluate(tmp.path(), &m, &s.model_file, 2).unwrap()
        };
        let original = run("eval/original.txt");
        let shuffled = run("eval/shuffled.txt");
        eprintln!(
            "original {:.2}, shuffled {:.2}",
            original.perplexity, shuffled.perplexity
        );
        assert_eq!(original.golden_total, 0);
        assert!(original.passed(), "{}", original.summary());
        assert!(
            shuffled.perplexity > 1.5 * original.perplexity,
            "shuffled {} vs original {}",
            shuffled.perplexity,
            original.perplexity
        );
        assert!(!shuffled.passed(), "{}", shuffled.summary());
    }

    #[test]
    fn a_bound_just_below_the_measured_perplexity_fails() {
        let Some(s) = shipped() else { return };
        let gate = s.manifest.chat_gate().unwrap().clone();
        let loose = with_gate(
            &s.manifest,
            ChatEvalGate {
                golden: None,
                ..gate.clone()
            },
        );
        let measured = evaluate(&s.dir, &loose, &s.model_file, 2)
            .unwrap()
            .perplexity;
        let tight = with_gate(
            &s.manifest,
            ChatEvalGate {
                perplexity_max: measured * 0.99,
                ..gate
            },
        );
        let report = evaluate(&s.dir, &tight, &s.model_file, 2).unwrap();
        assert_eq!(
            report.perplexity, measured,
            "the evaluation is deterministic"
        );
        assert!(!report.passed());
        assert_eq!(report.golden_passed, 2);
        let summary = report.summary();
        assert!(summary.contains("exceeds perplexity_max"), "{summary}");
        assert!(summary.contains("golden 2/2"), "{summary}");
    }

    #[test]
    fn errors_name_the_file() {
        let Some(s) = shipped() else { return };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("eval")).unwrap();
        std::fs::write(tmp.path().join("eval/short.txt"), "Hi").unwrap();
        std::fs::write(tmp.path().join("eval/golden.json"), "{\"answer\": 1}").unwrap();
        let gate = |text: &str, golden: Option<&str>| {
            with_gate(
                &s.manifest,
                ChatEvalGate {
                    text: text.into(),
                    perplexity_max: 10.0,
                    golden: golden.map(Into::into),
                },
            )
        };
        let err = evaluate(
            tmp.path(),
            &gate("eval/missing.txt", None),
            &s.model_file,
            1,
        )
        .unwrap_err();
        assert!(
            matches!(err, ChatEvalError::Read { .. }) && err.to_string().contains("missing.txt"),
            "{err}"
        );
        let err = evaluate(
            tmp.path(),
            &gate("eval/short.txt", Some("eval/golden.json")),
            &s.model_file,
            1,
        )
        .unwrap_err();
        assert!(
            matches!(err, ChatEvalError::Golden { .. }) && err.to_string().contains("golden.json"),
            "{err}"
        );
        let err =
            evaluate(tmp.path(), &gate("eval/short.txt", None), &s.model_file, 1).unwrap_err();
        assert!(
            matches!(err, ChatEvalError::TextTooShort { .. })
                && err.to_string().contains("short.txt"),
            "{err}"
        );
        let mut no_gate = s.manifest.clone();
        no_gate.chat = None;
        assert!(matches!(
            evaluate(tmp.path(), &no_gate, &s.model_file, 1),
            Err(ChatEvalError::NoGate(_))
        ));
    }

    #[test]
    fn log_softmax_is_stable() {
        let logits = [1000.0_f32, 1000.0, 1000.0, 1000.0];
        let nll = negative_log_likelihood(&logits, LlamaToken(2)).unwrap();
        assert!((nll - 4f64.ln()).abs() < 1e-9, "{nll}");
        let logits = [-1000.0_f32, 0.0];
        assert!(negative_log_likelihood(&logits, LlamaToken(1)).unwrap() < 1e-9);
        assert!(negative_log_likelihood(&logits, LlamaToken(2)).is_none());
        assert!(negative_log_likelihood(&logits, LlamaToken(-1)).is_none());
    }
}
