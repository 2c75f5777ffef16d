#!/usr/bin/env python3
"""Optional cross-check of the fixtures with tract, the ONNX runtime cofferd uses.

    pip install tract==0.23.9        # Python bindings of the same tract-onnx as Cargo.lock
    python models/train/check_tract.py models/fixtures

For every `<name>/<version>/manifest.toml` under the given folder: load model.onnx with
tract, run the eval set's rows (batch = all rows, with a symbolic batch dimension), and
compare every output with the reference in eval/holdout.json against `max_abs_diff`.
train.py runs this at its end when the tract package is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import tract


def run_tract(path: Path, rows: np.ndarray):
    m = tract.onnx().load(str(path))
    m.set_input_fact(0, f"B,{rows.shape[1]},f32")
    runnable = m.into_model().into_runnable()
    t = time.perf_counter()
    outs = runnable.run([rows])
    dt = time.perf_counter() - t
    return [o.to_numpy() for o in outs], dt


def check(fixtures: Path) -> int:
    print(f"tract {tract.version()}")
    failed = 0
    for manifest in sorted(fixtures.glob("*/*/manifest.toml")):
        d = manifest.parent
        m = tomllib.loads(manifest.read_text())
        ev = json.loads((d / m["eval"]["set"]).read_text())
        rows = np.asarray(ev["rows"], dtype=np.float32)
        try:
            outs, dt = run_tract(d / "model.onnx", rows)
        except Exception as e:  # noqa: BLE001
            print(f"{m['name']}@{m['version']}: tract refused: {e}")
            failed += 1
            continue
        worst = 0.0
        for spec, got in zip(m["io"]["outputs"], outs):
            ref = np.asarray(ev["reference"][spec["name"]])
            if got.shape != ref.shape:
                print(f"  {spec['name']}: shape {got.shape} != reference {ref.shape}")
                failed += 1
                continue
            if spec["datatype"] == "INT64":
                bad = int((got != ref).sum())
                if bad:
                    print(f"  {m['name']} {spec['name']}: {bad} of {len(ref)} labels differ")
                    failed += 1
            else:
                diff = float(np.abs(got.astype(np.float64) - ref).max())
                worst = max(worst, diff)
        ok = worst <= m["eval"]["max_abs_diff"]
        failed += not ok
        print(f"{m['name']}@{m['version']}: {len(rows)} rows, max |tract - reference| = "
              f"{worst:.3g} ({'ok' if ok else 'OVER ' + str(m['eval']['max_abs_diff'])}), "
              f"{dt * 1e3:.1f} ms for the batch")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures", type=Path, nargs="?", default=Path("models/fixtures"))
    return check(ap.parse_args().fixtures)


if __name__ == "__main__":
    sys.exit(main())
