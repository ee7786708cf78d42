"""What the hypothesis tests share: their settings, a client that checks every answer, and
JSON values of any shape."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = settings(
    deadline=None,
    max_examples=200,  # about 30 s for the four properties on a busy 2-core machine
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Fuzzed:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def post(
        self, path: str, data: Any, headers: dict[str, str] | None = None, query: str = ""
    ) -> int:
        """Send one request; assert that it is answered below 500 and the server lives."""
        url = self.url + path + (f"?{query}" if query else "")
        async with self.session.post(url, data=data, headers=headers) as response:
            return await self.check(response)

    async def get(self, path: str) -> int:
        async with self.session.get(self.url + path) as response:
            return await self.check(response)

    async def check(self, response: aiohttp.ClientResponse) -> int:
        body = await response.read()
        assert response.status < 500, (response.status, body[:300])
        if response.status >= 400:
            assert "error" in json.loads(body), body[:300]
        async with self.session.get(self.url + "/v2/health/live") as live:
            assert live.status == 200
        return response.status


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
