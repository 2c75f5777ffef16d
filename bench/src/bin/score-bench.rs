//! In-process scoring throughput of Coffer's engines on the fixture models: rows/s at
//! batch 1, 64 and 1024 (median of several timed runs) and the median single-row latency.
//! Prints one JSON line per model and batch; `bench/score` puts them beside onnxruntime's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coffer_score::{Tensor, TensorData};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "models/fixtures")]
    fixtures: PathBuf,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "credit-lr,credit-mlp,credit-gbdt,aml-risk"
    )]
    models: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    batches: Vec<usize>,
    /// Timed runs per point (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for name in &args.models {
        let dir = args.fixtures.join(name).join("1.0.0");
        let engine = coffer_score::load_engine(&coffer_models::VersionDir::open(&dir)?)?;
        let evalset =
            coffer_models::evalset::EvalSet::parse(&std::fs::read(dir.join("eval/holdout.json"))?)?;
        let width = evalset.rows[0].len();
        for &batch in &args.batches {
            let data: Vec<f32> = evalset
                .rows
                .iter()
                .cycle()
                .take(batch)
                .flatten()
                .map(|&x| x as f32)
                .collect();
            let input = Tensor {
                name: evalset.input.clone(),
                shape: vec![batch, width],
                data: TensorData::F32(data),
            };
            let inputs = vec![input];
            for _ in 0..20 {
                engine.run(inputs.clone(), batch)?;
            }
            let mut rates = Vec::new();
            let mut latencies = Vec::new();
            for _ in 0..args.runs {
                let started = Instant::now();
                let mut calls = 0u64;
                let mut busy = Duration::ZERO;
                while started.elapsed() < Duration::from_secs_f64(args.seconds) {
                    // The copy stands for the request decoding that produces the buffer;
                    // it is outside the timed call, as onnxruntime's input is.
                    let owned = inputs.clone();
                    let t = Instant::now();
                    engine.run(owned, batch)?;
                    let took = t.elapsed();
                    busy += took;
                    latencies.push(took.as_secs_f64() * 1e6);
                    calls += 1;
                }
                rates.push(calls as f64 * batch as f64 / busy.as_secs_f64());
            }
            println!(
                "{{\"engine\":\"coffer/{}\",\"model\":\"{name}\",\"batch\":{batch},\"rows_per_s\":{:.0},\"call_us_p50\":{:.2}}}",
                engine.platform(),
                median(rates),
                median(latencies)
            );
        }
    }
    Ok(())
}
