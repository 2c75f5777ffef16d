"""Streaming chat clients for bench/chat: N concurrent clients each send R streamed,
greedy completions to an OpenAI-compatible server and time them. Prints one JSON line:
median time to first token, median per-stream decode tokens/s, aggregate decode
tokens/s (all completion tokens over the wall time), and the distinct answers (greedy on
one prompt: there should be one)."""

import argparse
import http.client
import json
import ssl
import statistics
import threading
import time
import urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--key", default="")
p.add_argument("--ca", default=None)
p.add_argument("--model", required=True)
p.add_argument("--prompt", required=True)
p.add_argument("--tokens", type=int, default=64)
p.add_argument("--concurrency", type=int, default=1)
p.add_argument("--requests", type=int, default=3)
p.add_argument("--label", required=True)
a = p.parse_args()
u = urllib.parse.urlparse(a.url)
body = json.dumps({
    "model": a.model,
    "messages": [{"role": "user", "content": a.prompt}],
    "max_tokens": a.tokens,
    "temperature": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
})


def connect():
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=a.ca)
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=600)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=600)


results, errors, answers, lock = [], [], set(), threading.Lock()


def client():
    conn = connect()
    for _ in range(a.requests):
        try:
            conn = one(conn)
        except Exception as e:  # counted and reported: a failed stream is a result too
            with lock:
                errors.append(repr(e))
            conn.close()
            conn = connect()
    conn.close()


def one(conn):
    headers = {"content-type": "application/json"}
    if a.key:
        headers["authorization"] = "Bearer " + a.key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read())
    first = last = None
    pieces = 0
    text = []
    usage = None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices", []):
            if c.get("delta", {}).get("content"):
                text.append(c["delta"]["content"])
                now = time.perf_counter()
                first = first or now
                last = now
                pieces += 1
    n = usage["completion_tokens"] if usage else pieces
    if r.will_close:
        # The server ends the connection after a stream; the next request reconnects.
        conn.close()
        conn = connect()
    assert first is not None, "no content in the stream"
    with lock:
        results.append((t0, first, last, n))
        answers.add("".join(text))
    return conn


start = time.perf_counter()
threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start
ttft = statistics.median((f - t0) * 1000 for t0, f, _, _ in results)
decode = statistics.median((n - 1) / (l - f) for _, f, l, n in results if n > 1 and l > f)
total = sum(n for *_, n in results)
print(json.dumps({"peer": a.label, "concurrency": a.concurrency, "ttft_ms": ttft,
                  "decode_tps": decode, "aggregate_tps": total / wall,
                  "tokens_per_request": statistics.median(n for *_, n in results),
                  "errors": len(errors), "answers": sorted(answers)}))
