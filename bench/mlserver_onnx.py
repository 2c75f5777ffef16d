"""An MLServer runtime for bench/score: serves an ONNX model with onnxruntime (MLServer
has no ONNX runtime of its own; this is its documented custom-runtime interface). Each
request input is fed to the session input of the same name (or the first input) as a
NumPy array; every session output is returned, named as the model names it."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        threads = int((self._settings.parameters.extra or {}).get("threads", 1))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {}
        for i, request_input in enumerate(payload.inputs):
            name = request_input.name if request_input.name in self._inputs else self._inputs[i]
            feed[name] = NumpyCodec.decode_input(request_input).astype(np.float32)
        results = self._session.run(self._outputs, feed)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, np.asarray(r)) for n, r in zip(self._outputs, results)],
        )
