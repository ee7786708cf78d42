"""Mount autodep inside another aiohttp application.

python -m examples.embed models/resnet18.pt      # then POST to /ml/predict on :8080
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from aiohttp import web

from autodep import Autodep


async def home(request: web.Request) -> web.Response:
    return web.Response(text="the host app; the model is under /ml/predict\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a TorchScript image classifier")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    autodep = Autodep(args.model, max_workers=2)

    async def model_lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with autodep:  # workers ready before the app serves; drained at exit
            yield

    app = web.Application()
    app.router.add_get("/", home)
    app.add_subapp("/ml", autodep.app)
    app.cleanup_ctx.append(model_lifecycle)
    web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
