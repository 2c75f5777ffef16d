"""Writes a larger llama-architecture GGUF with random Q4_1 weights, for measuring on a
GPU host that cannot receive a real larger model (hw-tests/gpu-chat brings at most
64 MiB per run). Throughput depends on the shape and the weight type, not on the
weights' values: the default shape is Qwen2.5-1.5B's (1536 wide, 28 blocks, 12 heads,
2 KV heads, 8960 feed-forward), in llama's layout and at SmolLM2's Q4_1, with SmolLM2's
tokenizer and chat template copied from its GGUF. Its answers are noise, but greedy
and deterministic, so they still compare between engines. Needs numpy and PyPI's
`gguf` (pure Python; a wheel on sys.path is enough).

    python3 hw-tests/larger_gguf.py --tokenizer-from SmolLM2.gguf --out larger.gguf
"""

import argparse
import importlib.util
import sys
import types

import numpy as np

# gguf imports PyYAML for model cards, which this script never reads: a GPU host's
# Python may not have it.
if importlib.util.find_spec("yaml") is None:
    sys.modules["yaml"] = types.ModuleType("yaml")
import gguf  # noqa: E402

QK = 32  # Q4_1: blocks of 32 weights, each f16 scale d, f16 minimum m, 16 bytes of nibbles


def q4_1_random(rng, rows, cols):
    """Raw Q4_1 bytes of a rows x cols matrix, uniform in about +-1/sqrt(cols)."""
    a = 1.0 / np.sqrt(cols)
    blocks = rows * (cols // QK)
    head = np.empty((blocks, 2), dtype=np.float16)
    head[:, 0] = 2 * a / 15  # d
    head[:, 1] = -a  # m
    nibbles = rng.integers(0, 256, size=(blocks, QK // 2), dtype=np.uint8)
    raw = np.concatenate([head.view(np.uint8), nibbles], axis=1)
    return raw.reshape(rows, (cols // QK) * 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-from", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--embd", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=8960)
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    assert args.embd % args.heads == 0 and args.embd % QK == 0 and args.ff % QK == 0

    source = gguf.GGUFReader(args.tokenizer_from)
    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(f"random-llama-{args.embd}x{args.layers}")
    w.add_context_length(args.context)
    w.add_embedding_length(args.embd)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(args.ff)
    w.add_head_count(args.heads)
    w.add_head_count_kv(args.kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(1_000_000.0)
    w.add_rope_dimension_count(args.embd // args.heads)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    n_vocab = 0
    for key, field in source.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
        w.add_key_value(key, value, vtype, sub)
    w.add_vocab_size(n_vocab)

    rng = np.random.default_rng(args.seed)
    hd = args.embd // args.heads
    q4 = gguf.GGMLQuantizationType.Q4_1

    def matrix(name, rows, cols):
        w.add_tensor(name, q4_1_random(rng, rows, cols), raw_dtype=q4)

    ones = np.ones(args.embd, dtype=np.float32)
    matrix("token_embd.weight", n_vocab, args.embd)  # tied: the output layer too
    for i in range(args.layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        matrix(f"blk.{i}.attn_q.weight", args.heads * hd, args.embd)
        matrix(f"blk.{i}.attn_k.weight", args.kv_heads * hd, args.embd)
        matrix(f"blk.{i}.attn_v.weight", args.kv_heads * hd, args.embd)
        matrix(f"blk.{i}.attn_output.weight", args.embd, args.heads * hd)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        matrix(f"blk.{i}.ffn_gate.weight", args.ff, args.embd)
        matrix(f"blk.{i}.ffn_up.weight", args.ff, args.embd)
        matrix(f"blk.{i}.ffn_down.weight", args.embd, args.ff)
    w.add_tensor("output_norm.weight", ones)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
