"""sentence-transformers on the CPU, in process (no HTTP): sentences/s at one batch size,
for bench/embed. Prints one JSON line."""

import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--sentences", required=True)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seconds", type=float, default=5.0)
a = p.parse_args()
torch.set_num_threads(a.threads)
model = SentenceTransformer(a.model, device="cpu")
pool = open(a.sentences, encoding="utf-8").read().splitlines()
body = [pool[i % len(pool)] for i in range(a.batch)]
model.encode(body, batch_size=a.batch)
done, start = 0, time.perf_counter()
while time.perf_counter() - start < a.seconds:
    model.encode(body, batch_size=a.batch)
    done += a.batch
elapsed = time.perf_counter() - start
print(json.dumps({"peer": "sentence-transformers", "batch": a.batch, "sent_per_s": done / elapsed}))
