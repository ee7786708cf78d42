"""`BlockingAutodep`: `Autodep` for scripts that are not async.

    with BlockingAutodep("resnet18.pt", max_workers=2) as ad:
        print(ad.predict(open("cat.jpg", "rb").read(), top_n=3))

An event loop runs in a background thread; each call waits for its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from autodep.embedding import Autodep

T = TypeVar("T")


class BlockingAutodep:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.service = Autodep(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="autodep-loop", daemon=True
        )

    def __enter__(self) -> BlockingAutodep:
        self._thread.start()
        try:
            self._call(self.service.start())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._call(self.service.shutdown())
        finally:
            self._stop_loop()

    def predict(self, data: bytes | str, **options: Any) -> dict[str, Any]:
        """Same arguments and result as `Autodep.predict`."""
        return self._call(self.service.predict(data, **options))

    def status(self) -> dict[str, Any]:
        return self._call(self._status())

    async def _status(self) -> dict[str, Any]:
        return self.service.status()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
