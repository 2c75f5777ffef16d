"""The table of a chat benchmark (bench/chat on the CPU, hw-tests/gpu-chat on a GPU):
medians over the rounds of the JSON lines that chat-bench (llama.cpp in process) and
bench/chat_client.py (cofferd, llama-cpp-python) print, the ratios of those medians
against the targets, and whether greedy answers were the same everywhere.

    python3 bench/chat_summary.py RESULTS.jsonl [--gpu]

--gpu: the GPU targets (docs/gpu.md): single-stream decode >= 0.95 of llama.cpp in
process, aggregate at 8 >= 0.9 of llama.cpp's own batched throughput at 8 and >= 4 of
cofferd's single stream, TTFT overhead < 10 ms. Exits 0 whether or not targets are met:
the table says it.
"""

import argparse
import json
import statistics

IN, CO, PE = "llama.cpp in-process", "cofferd", "llama-cpp-python"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    groups = {}
    for r in rows:
        k = (r["peer"], r.get("concurrency", r.get("streams")))
        groups.setdefault(k, []).append(r)
    counts = sorted({c for (_, c) in groups})

    def med(k, f):
        vals = [r[f] for r in groups.get(k, []) if f in r]
        return statistics.median(vals) if vals else float("nan")

    def ratio(a, b):
        return a / b if b else float("nan")

    print("medians over %d rounds" % max(len(v) for v in groups.values()))
    print("%-22s %5s %10s %14s %16s %7s" % ("", "conc", "TTFT ms", "decode tok/s", "aggregate tok/s", "errors"))
    for peer in (IN, CO, PE):
        for c in counts:
            k = (peer, c)
            if k not in groups:
                continue
            errors = sum(r.get("errors", 0) for r in groups[k])
            print("%-22s %5d %10.1f %14.1f %16.1f %7d" % (
                peer, c, med(k, "ttft_ms"), med(k, "decode_tps"), med(k, "aggregate_tps"), errors))
    print("(decode tok/s: in process, all sequences together; servers, the median stream)")
    if (IN, 1) in groups:
        print("in process: prompt %.0f tok/s (%d tokens)" % (
            med((IN, 1), "prompt_tps"), groups[(IN, 1)][0]["prompt_tokens"]))
    decode_target, ttft_target = (0.95, 10) if args.gpu else (0.97, 5)
    print("cofferd single-stream decode / in-process: %.2f (target >= %.2f)" % (
        ratio(med((CO, 1), "decode_tps"), med((IN, 1), "decode_tps")), decode_target))
    print("cofferd TTFT over in-process: %+.1f ms (target < %d ms)" % (
        med((CO, 1), "ttft_ms") - med((IN, 1), "ttft_ms"), ttft_target))
    for c in counts:
        if c == 1:
            continue
        own = ratio(med((CO, c), "aggregate_tps"), med((CO, 1), "aggregate_tps"))
        lib = ratio(med((IN, c), "aggregate_tps"), med((IN, 1), "aggregate_tps"))
        target = ""
        if args.gpu and c == 8:
            target = " (target >= 4)"
        elif not args.gpu and c == 4:
            target = " (target at 4: >= 2)"
        print("aggregate at %d / own single stream: cofferd %.2f, llama.cpp in process %.2f%s" % (c, own, lib, target))
        target = " (target >= 0.9)" if args.gpu and c == 8 else ""
        print("cofferd aggregate at %d / llama.cpp in process at %d: %.2f%s" % (
            c, c, ratio(med((CO, c), "aggregate_tps"), med((IN, c), "aggregate_tps")), target))

    def answers(peer):
        return set(a for (p, _), rs in groups.items() if p == peer for r in rs for a in r.get("answers", []))

    ai, ac = answers(IN), answers(CO)
    print("distinct greedy answers over every run and stream: in process %d, cofferd %d (%s)" % (
        len(ai), len(ac), "the same text" if ai == ac and len(ai) == 1 else "DIFFERENT"))
    if (PE, 4) in groups:
        print("cofferd aggregate at 4 / llama-cpp-python at 4: %.2f (target >= 1.5)" % (
            ratio(med((CO, 4), "aggregate_tps"), med((PE, 4), "aggregate_tps"))))


if __name__ == "__main__":
    main()
