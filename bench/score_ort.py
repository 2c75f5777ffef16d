"""onnxruntime's in-process throughput on the fixture models, printed like score-bench.

python bench/score_ort.py [--threads 1] [--fixtures models/fixtures]
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fixtures", default="models/fixtures")
    p.add_argument("--models", default="credit-lr,credit-mlp,credit-gbdt,aml-risk")
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.5)
    a = p.parse_args()
    for name in a.models.split(","):
        d = os.path.join(a.fixtures, name, "1.0.0")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = a.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(os.path.join(d, "model.onnx"), opts, providers=["CPUExecutionProvider"])
        with open(os.path.join(d, "eval", "holdout.json")) as f:
            ev = json.load(f)
        rows = np.array(ev["rows"], dtype=np.float32)
        for batch in [int(b) for b in a.batches.split(",")]:
            x = np.resize(rows, (batch, rows.shape[1])).astype(np.float32)
            feed = {ev["input"]: x}
            for _ in range(20):
                sess.run(None, feed)
            rates, lat = [], []
            for _ in range(a.runs):
                start = time.perf_counter()
                calls = 0
                while time.perf_counter() - start < a.seconds:
                    t = time.perf_counter()
                    sess.run(None, feed)
                    lat.append((time.perf_counter() - t) * 1e6)
                    calls += 1
                rates.append(calls * batch / (time.perf_counter() - start))
            print(json.dumps({"engine": f"onnxruntime-{ort.__version__}", "model": name, "batch": batch,
                              "rows_per_s": round(statistics.median(rates)), "call_us_p50": round(statistics.median(lat), 2)}))


if __name__ == "__main__":
    main()
