"""tritonclient's HTTP client, driven from async tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import tritonclient.http as triton

# The Triton client blocks (gevent), and its greenlets must stay on one thread.
TRITON_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton")


def client(server) -> triton.InferenceServerClient:
    return TRITON_THREAD.submit(
        triton.InferenceServerClient, url=server.url.removeprefix("http://")
    ).result()


async def in_thread(function, *args, **kwargs):
    """Call the blocking client off this test's event loop, where the server runs."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(TRITON_THREAD, partial(function, *args, **kwargs))
