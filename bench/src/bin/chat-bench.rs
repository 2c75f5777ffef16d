//! In-process llama.cpp through llama-cpp-2, the peer that cofferd's chat is measured
//! against in `bench/chat`: the same GGUF, chat template, prompt and context shape as
//! cofferd (`--seqs` sequences of `--ctx` tokens, one KV cache per
//! sequence), greedy, no HTTP. The context is made once and warmed up, as a server's is; each repetition
//! starts from an empty KV cache.
//!
//! For each `--streams` count K, K sequences get the prompt (one after another, as a
//! server admits them) and then decode side by side, one token each per step. Prints one
//! JSON line per K with medians over the repetitions: prompt tokens/s and time to first
//! token (of the first sequence), decode tokens/s over all K sequences (llama.cpp's own
//! batching ceiling on this machine), and the aggregate (all generated tokens over the
//! whole time, prompts included, as `bench/chat_client.py` counts it for servers), and
//! the distinct answers (greedy on one prompt: one answer, whatever K is).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Sequences the context holds (cofferd: chat.slots).
    #[arg(long, default_value_t = 8)]
    seqs: u32,
    /// Context per sequence (cofferd: chat.context).
    #[arg(long, default_value_t = 1024)]
    ctx: u32,
    /// Sequence counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    streams: Vec<usize>,
    /// Layers offloaded to the GPU (a build with the `cuda` feature; 999: all).
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
}

struct Run {
    /// The text each sequence generated.
    answers: Vec<String>,
    prompt: Duration,
    first: Duration,
    decode: Duration,
    total: Duration,
    generated: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// K sequences: prompts one after another, then decode side by side.
fn run(
    model: &LlamaModel,
    ctx: &mut LlamaContext,
    prompt: &[LlamaToken],
    k: usize,
    tokens: usize,
) -> anyhow::Result<Run> {
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(512.max(prompt.len()), 1);
    let mut samplers: Vec<LlamaSampler> = (0..k).map(|_| LlamaSampler::greedy()).collect();
    let mut next = Vec::with_capacity(k);
    let mut answers = vec![Vec::new(); k];
    let t0 = Instant::now();
    let (mut prompt_time, mut first) = (Duration::ZERO, Duration::ZERO);
    for (s, sampler) in samplers.iter_mut().enumerate() {
        batch.clear();
        for (i, t) in prompt.iter().enumerate() {
            batch.add(*t, i as i32, &[s as i32], i + 1 == prompt.len())?;
        }
        ctx.decode(&mut batch)?;
        let decoded = t0.elapsed();
        next.push(sampler.sample(ctx, batch.n_tokens() - 1));
        if s == 0 {
            (prompt_time, first) = (decoded, t0.elapsed());
        }
    }
    let decode_start = Instant::now();
    let mut generated = k;
    for pos in prompt.len()..prompt.len() + tokens - 1 {
        batch.clear();
        for (s, token) in next.iter().enumerate() {
            answers[s].extend(model.vocab().token_to_piece(*token, false, None));
            batch.add(*token, pos as i32, &[s as i32], true)?;
        }
        ctx.decode(&mut batch)?;
        for (s, token) in next.iter_mut().enumerate() {
            *token = samplers[s].sample(ctx, s as i32);
        }
        generated += k;
    }
    for (s, token) in next.iter().enumerate() {
        answers[s].extend(model.vocab().token_to_piece(*token, false, None));
    }
    Ok(Run {
        answers: answers
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        prompt: prompt_time,
        first,
        decode: decode_start.elapsed(),
        total: t0.elapsed(),
        generated,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.tokens >= 2, "--tokens must be at least 2");
    for &k in &args.streams {
        anyhow::ensure!(
            k >= 1 && k as u32 <= args.seqs,
            "--streams {k} must be 1..=--seqs ({})",
            args.seqs
        );
    }
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let params = LlamaModelParams::default().with_n_gpu_layers(args.gpu_layers);
    let model = LlamaModel::load_from_file(&backend, &args.model, &params)?;
    let template = model.chat_template(None)?;
    let prompt = model.apply_chat_template(
        &template,
        &[LlamaChatMessage::new("user".into(), args.prompt.clone())?],
        true,
    )?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    // cofferd's context: `seqs` sequences of `ctx` tokens, a KV cache per sequence.
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(args.ctx * args.seqs))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(args.seqs)
        .with_kv_unified(false)
        .with_n_threads(args.threads)
        .with_n_threads_batch(args.threads);
    let mut ctx = model.new_context(&backend, params)?;
    let warm = *args.streams.iter().max().unwrap_or(&1);
    run(&model, &mut ctx, &tokens, warm, args.tokens)?;
    for &k in &args.streams {
        let runs = (0..args.reps)
            .map(|_| run(&model, &mut ctx, &tokens, k, args.tokens))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stat = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let answers: std::collections::BTreeSet<&str> = runs
            .iter()
            .flat_map(|r| r.answers.iter().map(String::as_str))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "peer": "llama.cpp in-process",
                "streams": k,
                "prompt_tokens": tokens.len(),
                "prompt_tps": stat(&|r| tokens.len() as f64 / r.prompt.as_secs_f64()),
                "ttft_ms": stat(&|r| r.first.as_secs_f64() * 1000.0),
                "decode_tps": stat(&|r| (r.generated - k) as f64 / r.decode.as_secs_f64()),
                "aggregate_tps": stat(&|r| r.generated as f64 / r.total.as_secs_f64()),
                "answers": answers,
            })
        );
    }
    Ok(())
}
