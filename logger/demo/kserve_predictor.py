"""A scikit-learn model served by KServe's own Python ``ModelServer`` (V1, V2 and the binary tensor extension).

Run with the interpreter of the KServe environment (it imports only ``kserve``, ``joblib`` and ``numpy``)::

    python kserve_predictor.py --model_name digits --model_path model.joblib --http_port 8080

V2 requests: the first input tensor, shape ``[batch, ...]``, is flattened per instance and classified; the output
``predict`` is INT64 ``[batch]``, binary when the request asks for binary outputs. V1: ``instances`` in,
``predictions`` out. ``--version`` is reported as ``model_version``.
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class SklearnPredictor(Model):  # type: ignore[misc]
    """A classifier loaded from a joblib file."""

    def __init__(self, name: str, path: str, version: str) -> None:
        super().__init__(name)
        self.path = path
        self.version = version
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            x = payload.inputs[0].as_numpy()
            labels = self.model.predict(x.reshape(x.shape[0], -1)).astype(np.int64)
            out = InferOutput(name="predict", shape=list(labels.shape), datatype="INT64")
            out.set_data_from_numpy(labels, binary_data=payload.use_binary_outputs)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                model_version=self.version,
                infer_outputs=[out],
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )
        x = np.asarray(payload["instances"], dtype=np.float64)
        return {"predictions": self.model.predict(x.reshape(x.shape[0], -1)).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--version", default="1")
    args, _ = parser.parse_known_args()
    model = SklearnPredictor(args.model_name, args.model_path, args.version)
    model.load()
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
