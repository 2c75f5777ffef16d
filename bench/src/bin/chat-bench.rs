//! In-process llama.cpp through llama-cpp-2, the peer that cofferd's chat is measured
//! against in `bench/chat`: one sequence, the same chat template and prompt, greedy.
//! Prints one JSON line: prompt tokens/s, decode tokens/s, time to first token (medians
//! over the repetitions).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 1)]
    threads: i32,
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, &args.model, &LlamaModelParams::default())?;
    let template = model.chat_template(None)?;
    let prompt = model.apply_chat_template(
        &template,
        &[LlamaChatMessage::new("user".into(), args.prompt.clone())?],
        true,
    )?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let (mut prompt_tps, mut decode_tps, mut ttft_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(2048))
            .with_n_batch(512)
            .with_n_threads(args.threads)
            .with_n_threads_batch(args.threads);
        let mut ctx = model.new_context(&backend, params)?;
        let mut batch = LlamaBatch::new(512, 1);
        let t0 = Instant::now();
        for (i, t) in tokens.iter().enumerate() {
            batch.add(*t, i as i32, &[0], i + 1 == tokens.len())?;
        }
        ctx.decode(&mut batch)?;
        let t_prompt = t0.elapsed();
        let mut sampler = LlamaSampler::greedy();
        let mut token = sampler.sample(&ctx, batch.n_tokens() - 1);
        let t_first = t0.elapsed();
        let start = tokens.len() as i32;
        let mut generated = 1;
        for pos in start..start + args.tokens as i32 - 1 {
            if model.vocab().is_eog(token) {
                break;
            }
            let _ = model.vocab().token_to_piece(token, false, None);
            batch.clear();
            batch.add(token, pos, &[0], true)?;
            ctx.decode(&mut batch)?;
            token = sampler.sample(&ctx, 0);
            generated += 1;
        }
        let t_end = t0.elapsed();
        prompt_tps.push(tokens.len() as f64 / t_prompt.as_secs_f64());
        decode_tps.push((generated - 1) as f64 / (t_end - t_first).as_secs_f64());
        ttft_ms.push(t_first.as_secs_f64() * 1000.0);
    }
    println!(
        "{}",
        serde_json::json!({
            "peer": "llama.cpp in-process",
            "prompt_tokens": tokens.len(),
            "prompt_tps": median(prompt_tps),
            "decode_tps": median(decode_tps),
            "ttft_ms": median(ttft_ms),
        })
    );
    Ok(())
}
