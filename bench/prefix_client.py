"""Prompt-prefix scenarios for bench/chat-prefix against an OpenAI-compatible server:
streamed, greedy completions, timed to the first token. Prints one JSON line.

  service:   one long system prompt, distinct short questions, C concurrent clients:
             TTFT of the first request, median TTFT of the others, aggregate tok/s
  turns:     one conversation of N turns (each turn carries the earlier ones and the
             model's own answers): TTFT per turn
  distinct:  distinct prompts without a shared system prompt, C clients: aggregate tok/s

The answers are printed too, so that runs with and without a cache can be compared."""

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
p.add_argument("--scenario", choices=["service", "turns", "distinct"], required=True)
p.add_argument("--system", default="")
p.add_argument("--questions", required=True, help="a file with one question per line")
p.add_argument("--tokens", type=int, default=32)
p.add_argument("--concurrency", type=int, default=1)
p.add_argument("--label", required=True)
a = p.parse_args()
u = urllib.parse.urlparse(a.url)
questions = [q.strip() for q in open(a.questions) if q.strip()]


def connect():
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=a.ca)
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=900)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=900)


def complete(messages):
    """(ttft seconds, completion tokens, text, cached tokens or None, seconds in all)"""
    body = json.dumps({
        "model": a.model, "messages": messages, "max_tokens": a.tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    })
    headers = {"content-type": "application/json"}
    if a.key:
        headers["authorization"] = "Bearer " + a.key
    conn = connect()
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read())
    first, text, usage, pieces = None, [], None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices", []):
            if c.get("delta", {}).get("content"):
                first = first or time.perf_counter()
                text.append(c["delta"]["content"])
                pieces += 1
    end = time.perf_counter()
    conn.close()
    assert first is not None, "no content in the stream"
    n = usage["completion_tokens"] if usage else pieces
    cached = ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
    return first - t0, n, "".join(text), cached, end - t0


def service_messages(q):
    return ([{"role": "system", "content": a.system}] if a.system else []) + [
        {"role": "user", "content": q}]


out = {"peer": a.label, "scenario": a.scenario, "concurrency": a.concurrency}
if a.scenario == "turns":
    messages = [{"role": "system", "content": a.system}] if a.system else []
    ttfts, answers = [], []
    for q in questions:
        messages.append({"role": "user", "content": q})
        ttft, _, text, _, _ = complete(messages)
        messages.append({"role": "assistant", "content": text})
        ttfts.append(ttft * 1000)
        answers.append(text)
    out.update(ttft_ms=ttfts, answers=answers)
else:
    make = service_messages if a.scenario == "service" else (lambda q: [{"role": "user", "content": q}])
    results, lock = {}, threading.Lock()
    order = list(enumerate(questions))
    first = None
    if a.scenario == "service" and a.concurrency == 1:
        # The first request alone: the one that computes the system prompt.
        i, q = order.pop(0)
        first = complete(make(q))
        results[i] = first
    start = time.perf_counter()

    def client(k):
        for i, q in order[k::a.concurrency]:
            r = complete(make(q))
            with lock:
                results[i] = r

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    rest = [results[i] for i, _ in order]
    out.update(
        first_ttft_ms=first[0] * 1000 if first else None,
        median_ttft_ms=statistics.median(r[0] * 1000 for r in rest),
        aggregate_tps=sum(r[1] for r in rest) / wall,
        cached_tokens_median=statistics.median(r[3] or 0 for r in rest),
        answers=[results[i][2] for i in sorted(results)],
    )
print(json.dumps(out))
