"""Runs the unmodified tritonclient[http] package against a running cofferd.

Environment: COFFER_URL (https://host:port), COFFER_CA, COFFER_API_KEY, COFFER_FIXTURES
(the models/fixtures directory). Exits non-zero on the first mismatch.
"""

import json
import os
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODELS = {"credit-lr": "features", "credit-mlp": "features", "credit-gbdt": "features", "aml-risk": "transaction"}


def main() -> int:
    url = os.environ["COFFER_URL"].removeprefix("https://")
    headers = {"Authorization": f"Bearer {os.environ['COFFER_API_KEY']}"}
    fixtures = os.environ["COFFER_FIXTURES"]
    client = httpclient.InferenceServerClient(url=url, ssl=True, ssl_options={"ca_certs": os.environ["COFFER_CA"]})

    assert client.is_server_live(headers=headers), "server not live"
    assert client.is_server_ready(headers=headers), "server not ready"
    assert client.get_server_metadata(headers=headers)["name"] == "cofferd"
    index = client.get_model_repository_index(headers=headers)
    assert sorted(m["name"] for m in index) == sorted(MODELS), index

    for name, input_name in MODELS.items():
        assert client.is_model_ready(name, headers=headers), f"{name} not ready"
        meta = client.get_model_metadata(name, headers=headers)
        assert meta["inputs"][0]["name"] == input_name, meta
        with open(os.path.join(fixtures, name, "1.0.0", "eval", "holdout.json")) as f:
            evalset = json.load(f)
        rows = np.array(evalset["rows"][:64], dtype=np.float32)
        for binary in (True, False):
            tensor = httpclient.InferInput(input_name, list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
            # A fresh dict per call: infer() adds Inference-Header-Content-Length to the one given.
            result = client.infer(name, [tensor], outputs=outputs, headers=dict(headers), request_id=f"compat-{name}")
            assert result.get_response()["id"] == f"compat-{name}"
            for out in meta["outputs"]:
                got = result.as_numpy(out["name"])
                want = np.array(evalset["reference"][out["name"]])[:64]
                assert got.shape == want.shape, (name, out["name"], got.shape, want.shape)
                diff = float(np.max(np.abs(got.astype(np.float64) - want)))
                assert diff <= 1e-5, f"{name}/{out['name']} binary={binary}: max abs diff {diff}"
        # The same rows as raw attributes (names, types and categories from the metadata).
        attrs = meta["attributes"]
        raw = evalset["attributes"]
        for binary in (True, False):
            tensors = []
            for a in attrs:
                values = raw[a["name"]][:64]
                if a["datatype"] == "BYTES":
                    assert all(v in a["categories"] for v in values), a["name"]
                    data = np.array(values, dtype=np.object_)
                elif all(float(v).is_integer() for v in values):
                    data = np.array(values, dtype=np.int64)
                else:
                    data = np.array(values, dtype=np.float32)
                dtype = {"BYTES": "BYTES"}.get(a["datatype"], str(data.dtype).upper().replace("FLOAT", "FP"))
                t = httpclient.InferInput(a["name"], [len(values)], dtype)
                t.set_data_from_numpy(data, binary_data=binary)
                tensors.append(t)
            result = client.infer(name, tensors, headers=dict(headers))
            for out in meta["outputs"]:
                got = result.as_numpy(out["name"])
                want = np.array(evalset["reference"][out["name"]])[:64]
                diff = float(np.max(np.abs(got.astype(np.float64) - want)))
                assert diff <= 1e-6, f"{name}/{out['name']} raw attributes binary={binary}: {diff}"
        print(f"{name}: metadata, ready, infer (encoded and raw attributes, binary and JSON) match the reference")

    try:
        client.get_model_metadata("credit-lr", headers={"Authorization": "Bearer coffer_wrong"})
        raise AssertionError("a wrong key was accepted")
    except InferenceServerException as e:
        assert "invalid" in str(e).lower() or "401" in str(e), e
    try:
        client.get_model_metadata("no-such-model", headers=headers)
        raise AssertionError("an unknown model was found")
    except InferenceServerException as e:
        assert "no-such-model" in str(e), e
    print("tritonclient compatibility: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
