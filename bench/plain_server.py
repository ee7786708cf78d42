"""The baseline server: what an expert writes by hand for one model, in one process.

    python -m bench.plain_server --model resnet18.pt [--port 0] [--max-batch-size 8]

    POST /predict (a JPEG/PNG body) ─► decode + resize + normalise in a thread pool
        ─► asyncio queue ─► one batcher task takes every waiting request, up to
           --max-batch-size, as one batch ─► the TorchScript model in one
           inference thread (all cores) ─► softmax, top-5 ─► JSON

The same answer shape as autodep's /predict (`{"predictions": [{"index",
"label", "score"}]}`, label = the index), the same preprocessing as a bare
`--model` (RGB, 224x224 bilinear, ImageNet mean/std). No worker processes, no
shared memory, no autoscaling: the model runs in the server's own process, so
a request costs no hop between processes, and the server dies with the model.
It prints "serving MODEL on http://HOST:PORT" when ready, as autodep does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

log = logging.getLogger("plain")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224
TOP_N = 5
QUEUE_BOUND = 64  # as autodep's default --max-queue: beyond it a client waits for a 503


def decode(body: bytes) -> np.ndarray:
    """Image bytes -> 3 x 224 x 224 float32, normalised."""
    image = Image.open(io.BytesIO(body))
    image.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a reduced scale when that is enough
    image = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))


class Model:
    """The TorchScript file, run in batches on one dedicated thread."""

    def __init__(self, path: Path, max_batch: int) -> None:
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self._torch = torch
        self.module = torch.jit.load(str(path)).eval()
        self.max_batch = max_batch
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.decoders = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[list[dict[str, Any]]]]] = (
            asyncio.Queue(QUEUE_BOUND)
        )

    def forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(batch))
            probabilities: np.ndarray = torch.softmax(logits, dim=1).numpy()
        return probabilities

    def warm_up(self) -> None:
        """Three calls per batch size, as autodep's workers warm up before they serve."""
        for size in range(1, self.max_batch + 1):
            for _ in range(3):
                self.forward(np.zeros((size, 3, SIZE, SIZE), np.float32))

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
        tensor = await loop.run_in_executor(model.decoders, decode, body)
    except (OSError, ValueError) as exc:
        return web.json_response({"error": f"cannot decode the image: {exc}"}, status=400)
    if model.queue.full():
        return web.json_response({"error": "queue full"}, status=503)
    future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
    model.queue.put_nowait((tensor, future))
    return web.json_response({"model": request.app[NAME], "predictions": await future})


async def serve(path: Path, host: str, port: int, max_batch: int) -> None:
    model = Model(path, max_batch)
    model.warm_up()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[MODEL] = model
    app[NAME] = path.stem
    app.router.add_post("/predict", predict)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    batcher = asyncio.create_task(model.batcher())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound_host, bound_port = runner.addresses[0][:2]
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
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    asyncio.run(serve(args.model, args.host, args.port, args.max_batch_size))


if __name__ == "__main__":
    main()
