#!/usr/bin/env python3
"""Writes the reference vectors the embedding tests and the evaluation gate compare
cofferd against: the sentences (models/embed/reference/sentences.txt) embedded by the
reference implementation, sentence-transformers, on the original safetensors model.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install -r models/embed/requirements.txt
    /tmp/st/bin/python models/embed/make_reference.py MODEL_DIR

MODEL_DIR is the extracted all-MiniLM-L6-v2 (models/fetch-minilm --source-only DIR).
Writes reference/vectors.f32 (little-endian float32, one row of the model's width per
sentence, in sentence order) and reference/meta.json (versions, count, width).

The sentences: the first sentence of each docstring in CPython's standard library (PSF
licence), 40 to 240 characters, deduplicated, sorted, and 1,000 of them taken evenly;
then the bank product-sheet sentences of retrieval.json. The list is written once
(--write-sentences) and committed, so the set never changes with the Python version.
"""

import argparse
import importlib
import json
import pkgutil
import re
import struct
import sys
import sysconfig
import warnings
from pathlib import Path

HERE = Path(__file__).parent / "reference"


def stdlib_sentences():
    warnings.simplefilter("ignore")
    seen = set()
    stdlib = sysconfig.get_paths()["stdlib"]
    names = sorted(
        {m.name for m in pkgutil.iter_modules([stdlib])} | set(sys.builtin_module_names)
    )
    for name in names:
        if name.startswith("_") or name in {"antigravity", "this", "idlelib", "turtledemo", "tkinter"}:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        for obj in [module] + [getattr(module, a, None) for a in sorted(dir(module))]:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            text = " ".join(doc.strip().split())
            m = re.match(r"(.+?[.!?])(\s|$)", text)
            if not m:
                continue
            s = m.group(1)
            if 40 <= len(s) <= 240 and s[0].isupper() and "http" not in s:
                seen.add(s)
    ordered = sorted(seen)
    step = len(ordered) / 1000
    return [ordered[int(i * step)] for i in range(1000)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir", nargs="?")
    p.add_argument("--write-sentences", action="store_true")
    a = p.parse_args()
    if a.write_sentences:
        retrieval = json.loads((HERE / "retrieval.json").read_text())
        bank = [x["text"] for x in retrieval["passages"]] + [q["query"] for q in retrieval["queries"]]
        (HERE / "sentences.txt").write_text("\n".join(stdlib_sentences() + bank) + "\n")
        return
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    torch.set_num_threads(1)
    sentences = (HERE / "sentences.txt").read_text().splitlines()
    model = SentenceTransformer(a.model_dir, device="cpu")
    vectors = model.encode(sentences, batch_size=32, convert_to_numpy=True)
    with open(HERE / "vectors.f32", "wb") as f:
        for row in vectors:
            f.write(struct.pack(f"<{len(row)}f", *row.tolist()))
    meta = {
        "count": len(sentences),
        "dimensions": int(vectors.shape[1]),
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "normalized": True,
        "max_seq_length": model.max_seq_length,
    }
    (HERE / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
