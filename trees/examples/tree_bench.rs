//! Rows per second of `coffer-trees` on one model, at batch sizes 1, 64 and 1024.
//!
//! ```sh
//! cargo run --release -p coffer-trees --example tree_bench -- MODEL.onnx [--threads N] [--runs K] [--nan F]
//! ```
//!
//! Rows are uniform in [-3, 3), from the same seeded xorshift generator as
//! `tests/data/ort_bench.py`, so both benchmarks score the very same rows (`--nan F` makes a
//! fraction F of the values NaN). Batch 1 cycles
//! through 1024 different rows (one call per row). Each figure is the median of `--runs`
//! (default 7) runs of about 0.3 s each. With one thread it also prints rows per second of
//! this thread's own CPU time (Linux `/proc/thread-self/schedstat`), which other processes on
//! a busy machine disturb much less than wall-clock time.

use std::time::{Duration, Instant};

use coffer_trees::TreeEnsemble;

/// xorshift64 (13, 7, 17), mapped to [-3, 3) through the top 24 bits, NaN where the low 20
/// bits fall below `nan` (a fraction); same as ort_bench.py.
fn rows(n: usize, seed: u64, nan: f64) -> Vec<f32> {
    let mut x = seed;
    let nan_below = (nan * 1_048_576.0) as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 0xF_FFFF < nan_below {
                f32::NAN
            } else {
                ((x >> 40) as f32 / 16_777_216.0) * 6.0 - 3.0
            }
        })
        .collect()
}

/// Nanoseconds this thread has spent on a CPU, when Linux says.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let mut threads = 1usize;
    let mut runs = 7usize;
    let mut nan = 0.0f64;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => {
                threads = args[i + 1].parse().expect("--threads N");
                i += 1;
            }
            "--nan" => {
                nan = args[i + 1].parse().expect("--nan F");
                i += 1;
            }
            "--runs" => {
                runs = args[i + 1].parse().expect("--runs K");
                i += 1;
            }
            p => path = Some(p.to_string()),
        }
        i += 1;
    }
    let path = path.expect("usage: tree_bench MODEL.onnx [--threads N] [--runs K] [--nan F]");
    let t = Instant::now();
    let model = TreeEnsemble::from_onnx_path(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let load = t.elapsed();
    let nf = model.n_features();
    println!(
        "model {path}: {} trees, {} nodes, {nf} features, {} outputs, loaded in {:.1} ms; threads {threads}, NaN fraction {nan}",
        model.n_trees(),
        model.n_nodes(),
        model.n_outputs(),
        load.as_secs_f64() * 1e3
    );
    let pool = rows(1024 * nf, 0x2545_f491_4f6c_dd1d, nan);
    println!(
        "{:>6} {:>14} {:>12} {:>16}",
        "batch", "rows/s", "us/call", "rows/cpu-s"
    );
    for batch in [1usize, 64, 1024] {
        // Calls per run so that one run takes about 0.3 s.
        let calls_per_run = {
            let t = Instant::now();
            let mut calls = 0usize;
            while t.elapsed() < Duration::from_millis(100) {
                let start = (calls * batch) % 1024;
                let start = if start + batch > 1024 { 0 } else { start };
                std::hint::black_box(
                    model
                        .predict(&pool[start * nf..(start + batch) * nf], batch, threads)
                        .unwrap(),
                );
                calls += 1;
            }
            (calls * 3).max(1)
        };
        let mut rates = Vec::with_capacity(runs);
        let mut cpu_rates = Vec::with_capacity(runs);
        for _ in 0..runs {
            let cpu0 = thread_cpu_ns();
            let t = Instant::now();
            for c in 0..calls_per_run {
                let start = (c * batch) % 1024;
                let start = if start + batch > 1024 { 0 } else { start };
                std::hint::black_box(
                    model
                        .predict(&pool[start * nf..(start + batch) * nf], batch, threads)
                        .unwrap(),
                );
            }
            let secs = t.elapsed().as_secs_f64();
            let n = (calls_per_run * batch) as f64;
            rates.push(n / secs);
            if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
                cpu_rates.push(n / ((b - a) as f64 * 1e-9));
            }
        }
        rates.sort_by(f64::total_cmp);
        cpu_rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let cpu = if threads == 1 && !cpu_rates.is_empty() {
            format!("{:.0}", cpu_rates[cpu_rates.len() / 2])
        } else {
            "-".to_string()
        };
        println!(
            "{batch:>6} {median:>14.0} {:>12.2} {cpu:>16}",
            batch as f64 / median * 1e6
        );
    }
}
