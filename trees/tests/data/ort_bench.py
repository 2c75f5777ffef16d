#!/usr/bin/env python3
"""onnxruntime's rows per second on one model at batch sizes 1, 64 and 1024, for comparison
with `cargo run --release -p coffer-trees --example tree_bench -- MODEL.onnx --threads N`.

    .venv-trees/bin/python trees/tests/data/ort_bench.py MODEL.onnx [--threads N] [--runs K]
        [--nan F]

Session options are fixed: intra_op_num_threads=N, inter_op_num_threads=1, sequential
execution, all graph optimisations, CPU provider, errors-only logging. Rows come from the same seeded xorshift
generator as tree_bench (uniform in [-3, 3), a fraction F NaN); batch 1 cycles through 1024
different rows.
Each figure is the median of K (default 7) runs of about 0.3 s each. With one thread it also
prints rows per second of this thread's CPU time (ORT computes on the calling thread then),
which other processes on a busy machine disturb much less than wall-clock time.
"""

import argparse
import time

import numpy as np
import onnxruntime as ort

MASK = (1 << 64) - 1


def rows(n, seed, nan):
    x = seed
    nan_below = int(nan * 1048576.0)
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        if (x & 0xFFFFF) < nan_below:
            out[i] = np.nan
        else:
            out[i] = np.float32(np.float32(x >> 40) / np.float32(16777216.0)) \
                * np.float32(6.0) - np.float32(3.0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--nan", type=float, default=0.0, help="fraction of NaN values")
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # converters' label shapes trigger a warning per call
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    nf = inp.shape[1]
    pool = rows(1024 * nf, 0x2545F4914F6CDD1D, args.nan).reshape(1024, nf)
    print(f"onnxruntime {ort.__version__}: model {args.model}, {nf} features, "
          f"threads {args.threads}, NaN fraction {args.nan}")
    print(f"{'batch':>6} {'rows/s':>14} {'us/call':>12} {'rows/cpu-s':>16}")
    for batch in [1, 64, 1024]:
        feeds = [{inp.name: np.ascontiguousarray(pool[s:s + batch])}
                 for s in range(0, 1024 - batch + 1, batch)]
        t = time.perf_counter()
        calls = 0
        while time.perf_counter() - t < 0.1:
            sess.run(None, feeds[calls % len(feeds)])
            calls += 1
        calls_per_run = max(1, calls * 3)
        rates, cpu_rates = [], []
        for _ in range(args.runs):
            c0 = time.thread_time()
            t = time.perf_counter()
            for c in range(calls_per_run):
                sess.run(None, feeds[c % len(feeds)])
            n = calls_per_run * batch
            rates.append(n / (time.perf_counter() - t))
            cpu_rates.append(n / max(time.thread_time() - c0, 1e-9))
        rates.sort()
        cpu_rates.sort()
        median = rates[len(rates) // 2]
        cpu = f"{cpu_rates[len(cpu_rates) // 2]:.0f}" if args.threads == 1 else "-"
        print(f"{batch:>6} {median:>14.0f} {batch / median * 1e6:>12.2f} {cpu:>16}")

if __name__ == "__main__":
    main()
