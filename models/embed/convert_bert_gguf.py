#!/usr/bin/env python3
"""Converts a sentence-transformers BERT model (model.safetensors, config.json,
tokenizer.json, 1_Pooling/config.json) into a GGUF file that llama.cpp loads as an
embedding model (architecture "bert", WordPiece vocabulary, pooling in the metadata).

Standard library only, so that it runs wherever the dev model is fetched: safetensors
and GGUF are both simple framed formats. Matrices are written as IEEE half floats
(struct's "e" format rounds to nearest, ties to even), vectors and the token-type
table as 32-bit floats; the
output is byte-for-byte the same on every run, and models/fetch-minilm checks its
sha256.

    python3 models/embed/convert_bert_gguf.py MODEL_DIR OUT.gguf
"""

import json
import struct
import sys
from array import array
from pathlib import Path

GGUF_VERSION = 3
ALIGNMENT = 32
# GGUF value types
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16 = 0, 1
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3
POOLING = {"mean": 1, "cls": 2, "last": 3}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if gguf_name(name) is None:
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{name}: dtype {info['dtype']} (only F32 is converted)")
        begin, end = info["data_offsets"]
        values = array("f")
        values.frombytes(data[base + begin : base + end])
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = (info["shape"], values)
    return tensors


def gguf_name(hf):
    """The llama.cpp tensor name of a Hugging Face BERT tensor, or None to skip it."""
    hf = hf.removeprefix("bert.")
    fixed = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    if parts[:2] != ["encoder", "layer"] or len(parts) < 5:
        return None  # the pooler and position ids: not used for sentence embeddings
    block, rest = parts[2], ".".join(parts[3:])
    layer = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    stem, kind = rest.rsplit(".", 1)
    if stem not in layer:
        raise SystemExit(f"unknown tensor {hf}")
    return f"blk.{block}.{layer[stem]}.{kind}"


def phantom(token):
    """llama.cpp's WordPiece vocabulary marks word starts, not continuations."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


class Writer:
    def __init__(self):
        self.kv = []

    def string(self, s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def add(self, key, vtype, value):
        out = self.string(key) + struct.pack("<I", vtype)
        if vtype == STRING:
            out += self.string(value)
        elif vtype == ARRAY:
            etype, items = value
            out += struct.pack("<IQ", etype, len(items))
            for item in items:
                out += self.string(item) if etype == STRING else struct.pack("<i", item)
        else:
            out += struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}[vtype], value)
        self.kv.append(out)


def main(model_dir, out_path):
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    pooling_cfg = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    modes = [m for m in ("mean", "cls", "last") if pooling_cfg.get(f"pooling_mode_{m}_tokens")]
    if modes != ["mean"] and modes != ["cls"]:
        raise SystemExit(f"pooling {pooling_cfg} is not one llama.cpp applies")
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    if tokenizer["model"]["type"] != "WordPiece":
        raise SystemExit("only WordPiece tokenizers are converted")
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise SystemExit("the vocabulary's ids are not 0..n")
    special = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens = [phantom(t) for t, _ in vocab]
    types = [TOKEN_CONTROL if t in special else TOKEN_NORMAL for t, _ in vocab]

    w = Writer()
    arch = "bert"
    w.add("general.architecture", STRING, arch)
    w.add("general.name", STRING, Path(out_path).name.split(".")[0])
    w.add("general.alignment", U32, ALIGNMENT)
    w.add(f"{arch}.context_length", U32, config["max_position_embeddings"])
    w.add(f"{arch}.embedding_length", U32, config["hidden_size"])
    w.add(f"{arch}.feed_forward_length", U32, config["intermediate_size"])
    w.add(f"{arch}.block_count", U32, config["num_hidden_layers"])
    w.add(f"{arch}.attention.head_count", U32, config["num_attention_heads"])
    w.add(f"{arch}.attention.layer_norm_epsilon", F32, config["layer_norm_eps"])
    w.add(f"{arch}.attention.causal", BOOL, False)
    w.add(f"{arch}.pooling_type", U32, POOLING[modes[0]])
    w.add("tokenizer.ggml.model", STRING, "bert")
    w.add("tokenizer.ggml.pre", STRING, "default")
    w.add("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))
    w.add("tokenizer.ggml.token_type", ARRAY, (I32, types))
    w.add("tokenizer.ggml.token_type_count", U32, config.get("type_vocab_size", 2))
    for key, name in (
        ("unknown_token_id", "[UNK]"),
        ("seperator_token_id", "[SEP]"),
        ("padding_token_id", "[PAD]"),
        ("cls_token_id", "[CLS]"),
        ("mask_token_id", "[MASK]"),
    ):
        w.add(f"tokenizer.ggml.{key}", U32, special[name])
    w.add("tokenizer.ggml.bos_token_id", U32, special["[CLS]"])
    w.add("tokenizer.ggml.add_bos_token", BOOL, True)
    w.add("tokenizer.ggml.add_sep_token", BOOL, True)

    infos, blobs, offset = [], [], 0
    source = read_safetensors(model_dir / "model.safetensors")
    for hf in sorted(source):
        name = gguf_name(hf)
        shape, values = source[hf]
        # llama.cpp adds the token-type row to each input as it is: it stays F32.
        if len(shape) == 2 and name != "token_types.weight":
            ggml_type = GGML_F16
            blob = b"".join(
                struct.pack(f"<{min(1 << 20, len(values) - i)}e", *values[i : i + (1 << 20)])
                for i in range(0, len(values), 1 << 20)
            )
        else:
            ggml_type = GGML_F32
            blob = values.tobytes() if sys.byteorder == "little" else None
        dims = list(reversed(shape))
        info = w.string(name) + struct.pack("<I", len(dims))
        info += b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", ggml_type, offset)
        infos.append(info)
        pad = (-len(blob)) % ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad

    with open(out_path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", GGUF_VERSION, len(infos), len(w.kv)))
        for kv in w.kv:
            f.write(kv)
        for info in infos:
            f.write(info)
        f.write(b"\0" * ((-f.tell()) % ALIGNMENT))
        for blob in blobs:
            f.write(blob)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
