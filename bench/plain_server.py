"""The baseline server: what an expert writes by hand for one model, in one process.

    python -m bench.plain_server --model resnet18.pt [--port 0] [--max-batch-size 8]
        [--runtime as-given|openvino] [--precision auto|bf16|f32] [--size 224]

    POST /predict (a JPEG/PNG body) ─► decode + resize + normalise in a thread pool
        ─► asyncio queue ─► one batcher task takes every waiting request, up to
           --max-batch-size, as one batch ─► the model in one inference thread
           (all cores) ─► softmax, top-5 ─► JSON

Runtimes (`--runtime`):
- `as-given` (default): the TorchScript file, run by torch with every core.
- `openvino`: the expert baseline. The file converted with `ov.convert_model` and compiled
  for the CPU with every core and the LATENCY hint, at `--precision` (`auto`: OpenVINO's own
  choice, bf16 where the CPU has it natively, else f32): the float form autodep's optimizer
  picks on such CPUs, so that a comparison with autodep measures serving, not the optimizer.

The same answer shape as autodep's /predict (`{"predictions": [{"index",
"label", "score"}]}`, label = the index), the same preprocessing as a bare
`--model` (RGB, bilinear to --size, ImageNet mean/std). No worker processes, no
shared memory, no autoscaling: the model runs in the server's own process, so
a request costs no hop between processes, and the server dies with the model.
It prints "serving MODEL on http://HOST:PORT" when ready, as autodep does.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import logging
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

log = logging.getLogger("plain")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TOP_N = 5
QUEUE_BOUND = 64  # as autodep's default --max-queue: beyond it a client waits for a 503
Forward = Callable[[np.ndarray], np.ndarray]  # a batch of images -> class probabilities


def decode(body: bytes, size: int) -> np.ndarray:
    """Image bytes -> 3 x size x size float32, normalised."""
    image = Image.open(io.BytesIO(body))
    image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when that is enough
    image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))


def as_given(path: Path, threads: int) -> tuple[Forward, str]:
    """The TorchScript file run by torch."""
    import torch

    torch.set_num_threads(threads)
    module = torch.jit.load(str(path)).eval()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            probabilities: np.ndarray = torch.softmax(module(torch.from_numpy(batch)), 1).numpy()
        return probabilities

    return forward, f"torch, {threads} threads"


def openvino(path: Path, threads: int, size: int, precision: str) -> tuple[Forward, str]:
    """The TorchScript file converted to OpenVINO, compiled with every core, LATENCY hint."""
    import openvino as ov
    import torch

    module = torch.jit.load(str(path)).eval()
    example = torch.zeros(1, 3, size, size)
    model = ov.convert_model(module, example_input=example, input=[(-1, 3, size, size)])
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision != "auto":
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(model, "CPU", config)
    request, output = compiled.create_infer_request(), compiled.outputs[0]

    def forward(batch: np.ndarray) -> np.ndarray:
        logits = request.infer([batch])[output]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return forward, f"openvino {chosen}, LATENCY hint, {threads} threads"


class Model:
    """A model's forward, run in batches on one dedicated thread."""

    def __init__(self, forward: Forward, max_batch: int, size: int) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.size = size
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.decoders = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[list[dict[str, Any]]]]] = (
            asyncio.Queue(QUEUE_BOUND)
        )

    def warm_up(self) -> None:
        """Three calls per batch size, as autodep's workers warm up before they serve."""
        for batch in range(1, self.max_batch + 1):
            for _ in range(3):
                self.forward(np.zeros((batch, 3, self.size, self.size), np.float32))

    async def batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            inputs = np.stack([tensor for tensor, _ in batch])
            try:
                probabilities = await loop.run_in_executor(self.inference, self.forward, inputs)
            except Exception as exc:  # the model failed: every request of the batch fails
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for row, (_, future) in zip(probabilities, batch, strict=True):
                if not future.cancelled():
                    future.set_result(top(row))


def top(row: np.ndarray) -> list[dict[str, Any]]:
    order = np.argsort(row)[::-1][:TOP_N]
    return [{"index": int(i), "label": str(int(i)), "score": float(row[i])} for i in order]


MODEL = web.AppKey("model", Model)
NAME = web.AppKey("name", str)


async def predict(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    loop = asyncio.get_running_loop()
    body = await request.read()
    try:
        tensor = await loop.run_in_executor(model.decoders, decode, body, model.size)
    except (OSError, ValueError) as exc:
        return web.json_response({"error": f"cannot decode the image: {exc}"}, status=400)
    if model.queue.full():
        return web.json_response({"error": "queue full"}, status=503)
    future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
    model.queue.put_nowait((tensor, future))
    return web.json_response({"model": request.app[NAME], "predictions": await future})


async def serve(args: argparse.Namespace) -> None:
    path: Path = args.model
    threads = len(os.sched_getaffinity(0))
    make = (
        functools.partial(openvino, size=args.size, precision=args.precision)
        if args.runtime == "openvino"
        else as_given
    )
    forward, runtime = make(path, threads)
    model = Model(forward, args.max_batch_size, args.size)
    model.warm_up()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[MODEL] = model
    app[NAME] = path.stem
    app.router.add_post("/predict", predict)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    batcher = asyncio.create_task(model.batcher())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound_host, bound_port = runner.addresses[0][:2]
    log.info("running %s (%s), batches of up to %d", path.name, runtime, model.max_batch)
    log.info("serving %s on http://%s:%s", path.stem, bound_host, bound_port)
    await stop.wait()
    await runner.cleanup()
    batcher.cancel()
    model.inference.shutdown()
    model.decoders.shutdown()
    log.info("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a TorchScript classifier")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--runtime", choices=("as-given", "openvino"), default="as-given")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "f32"),
        default="auto",
        help="OpenVINO's inference precision (auto: its own choice for this CPU)",
    )
    parser.add_argument("--size", type=int, default=224, help="pictures resized to size x size")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
