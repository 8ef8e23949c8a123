"""The naive server: what most people write first. Starlette on uvicorn + uvloop +
httptools, V2 JSON in and out, onnxruntime called on the event loop once per request,
no batching, no validation beyond what numpy does.

    python -m bench.naive MODEL.onnx --port 8002
"""

from __future__ import annotations

import argparse

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build_app(model_path: str) -> Starlette:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name

    async def infer(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        t = doc["inputs"][0]
        x = np.asarray(t["data"], np.float32).reshape(t["shape"])
        y = sess.run([out_name], {in_name: x})[0]
        body = {
            "model_name": request.path_params["model"],
            "outputs": [
                {"name": out_name, "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}
            ],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--port", type=int, default=8002)
    args = p.parse_args()
    uvicorn.run(
        build_app(args.model),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
