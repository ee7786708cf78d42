"""Property: no input, however malformed, gets a 5xx or stops the server.

Hypothesis generates bodies, content types, multipart shapes, V2 JSON and
binary requests and query strings against ONE real server (started once for
this module: a server per example would take minutes). After every example the
server must still answer /v2/health/live. The examples are derandomized, so a
run is repeatable; a failure prints the smallest input that causes it.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from autodep import Autodep
from tests.support.fuzzing import EXAMPLES, Fuzzed, json_values
from tests.support.images import image_bytes
from tests.support.leaks import checked_for_leftovers
from tests.support.servers import start_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMAGE = image_bytes("red")
MAX_ITEMS = 8  # the fuzzed server's --max-items-per-request
CONTENT_TYPES = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "application/octet-stream",
    "application/json",
    "application/x-npy",
    "text/plain",
    "text/plain; charset=latin-1",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "",
    "nonsense",
]
DATATYPES = ["BYTES", "FP32", "FP64", "UINT8", "INT64", "BOOL", "FP16", "STRING", ""]
PATHS = ["/predict", "/predict/colors", "/predict/nope"]
V2_PATHS = ["/v2/models/colors/infer", "/v2/models/colors/versions/1/infer"]


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """The module's one server outlives each test: `fuzzed` checks for leftovers at its end."""
    yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(color_model: Any) -> AsyncIterator[Fuzzed]:
    with checked_for_leftovers():
        service = Autodep(
            color_model, max_workers=1, max_body=1 << 20, max_items_per_request=MAX_ITEMS
        )
        runner, url = await start_server(service)
        try:
            async with aiohttp.ClientSession() as session:
                yield Fuzzed(url, session)
        finally:
            await service.shutdown(grace_period=5)
            await runner.cleanup()


def _truncations(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(data)).map(lambda n: data[:n])


bodies = st.one_of(
    st.binary(max_size=2048),
    _truncations(IMAGE),
    st.binary(max_size=64).map(lambda tail: IMAGE[:200] + tail),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]),
)
query_values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0", "-1", "0.5", "1", "true", ""]),
)
queries = st.dictionaries(
    st.sampled_from(["top_n", "threshold", "x", "top_n[]"]), query_values, max_size=3
).map(lambda d: "&".join(f"{k}={aiohttp.helpers.quote(v, safe='')}" for k, v in d.items()))


@EXAMPLES
@given(
    path=st.sampled_from(PATHS),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=30),
    query=queries,
)
async def test_predict_raw_bodies(
    fuzzed: Fuzzed, path: str, body: bytes, content_type: str, query: str
) -> None:
    headers = {"Content-Type": content_type} if content_type.isprintable() else {}
    await fuzzed.post(path, body, headers, query)


parts = st.lists(
    st.tuples(
        st.sampled_from(["image", "file", "text", ""]),
        st.one_of(st.none(), st.sampled_from(["cat.jpg", "x", "../../etc/passwd", ""])),
        st.one_of(st.none(), st.sampled_from(CONTENT_TYPES[:10])),
        bodies,
    ),
    max_size=3,
)


@EXAMPLES
@given(form=parts, query=queries)
async def test_predict_multipart(
    fuzzed: Fuzzed, form: list[tuple[str, str | None, str | None, bytes]], query: str
) -> None:
    data = aiohttp.FormData(quote_fields=False)
    for name, filename, content_type, body in form:
        # Bare bytes without a file name are deprecated in aiohttp: a stream says the same.
        value = body if filename is not None else io.BytesIO(body)
        data.add_field(name, value, filename=filename, content_type=content_type)
    if not form:
        data.add_field("x", "")
    await fuzzed.post("/predict", data, query=query)


shapes = st.lists(st.integers(-2, 300) | st.sampled_from([2**31, 2**63, 10**30]), max_size=4)
v2_inputs = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=8) | json_values,
        "datatype": st.sampled_from(DATATYPES) | json_values,
        "shape": shapes | json_values,
        "data": st.lists(st.integers(0, 255) | st.floats() | st.text(max_size=4), max_size=8)
        | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-5, 5000) | json_values}
        )
        | json_values,
    },
)
v2_requests = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.lists(v2_inputs, max_size=2) | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["probabilities", "nope"]) | json_values},
                optional={
                    "parameters": st.fixed_dictionaries(
                        {},
                        optional={
                            "classification": st.integers(-2, 10**20) | json_values,
                            "binary_data": json_values,
                        },
                    )
                    | json_values
                },
            ),
            max_size=2,
        )
        | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_output": json_values, "threshold": json_values}
        )
        | json_values,
        "id": json_values,
    },
)


@EXAMPLES
@given(request=v2_requests | json_values, path=st.sampled_from(V2_PATHS))
async def test_v2_json(fuzzed: Fuzzed, request: Any, path: str) -> None:
    await fuzzed.post(path, json.dumps(request), {"Content-Type": "application/json"})


@EXAMPLES
@given(
    request=v2_requests,
    binary=st.lists(bodies, max_size=2),
    length=st.one_of(
        st.none(),
        st.just("exact"),
        st.integers(-10, 10**6).map(str),
        st.text(max_size=6),
    ),
)
async def test_v2_binary(fuzzed: Fuzzed, request: Any, binary: list[bytes], length: Any) -> None:
    header = json.dumps(request).encode()
    elements = b"".join(struct.pack("<I", len(b)) + b for b in binary)
    tail = elements if binary and binary[0][:1] == b"\x00" else b"".join(binary)
    headers = {"Content-Type": "application/octet-stream"}
    if length == "exact":
        headers["Inference-Header-Content-Length"] = str(len(header))
    elif length is not None and length.isprintable():
        headers["Inference-Header-Content-Length"] = length
    await fuzzed.post("/v2/models/colors/infer", header + tail, headers)


# -- V2 shapes and element counts ---------------------------------------------

counts = st.integers(0, 3 * MAX_ITEMS) | st.sampled_from([200_000, 2**31])
versions = st.one_of(
    st.sampled_from(["1", "2", "0", "01", "²", "\u0661", "1.0", "-1", " 1", "1" * 5000, "9" * 19]),
    st.text(max_size=6),
)


def _items_declared(datatype: str, shape: list[int]) -> int:
    return math.prod(shape) if datatype == "BYTES" else (shape[0] if shape else 1)


@EXAMPLES
@given(
    datatype=st.sampled_from(["BYTES", "FP32", "UINT8"]),
    shape=st.lists(counts, min_size=1, max_size=3),
    sent=st.integers(0, 3 * MAX_ITEMS),
    binary=st.booleans(),
    classification=st.none() | st.integers(1, 3),
)
async def test_v2_shapes_and_element_counts(
    fuzzed: Fuzzed,
    datatype: str,
    shape: list[int],
    sent: int,
    binary: bool,
    classification: int | None,
) -> None:
    """Any shape against any number of elements: a 4xx, and a 413 above the item bound."""
    tensor: dict[str, Any] = {"name": "input", "datatype": datatype, "shape": shape}
    if datatype == "BYTES":
        elements = [IMAGE[:n] for n in range(sent)]
        raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
        data: list[Any] = [e.decode("latin-1") for e in elements]
    else:
        raw = bytes(sent * (4 if datatype == "FP32" else 1))
        data = [0] * sent
    if binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = data
    request: dict[str, Any] = {"inputs": [tensor]}
    if classification is not None:
        request["outputs"] = [
            {"name": "probabilities", "parameters": {"classification": classification}}
        ]
    header = json.dumps(request).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))} if binary else {}
    status = await fuzzed.post(
        "/v2/models/colors/infer", header + (raw if binary else b""), headers
    )
    if _items_declared(datatype, shape) > MAX_ITEMS:
        assert status == 413, (shape, status)


@EXAMPLES
@given(version=versions, route=st.sampled_from(["", "/ready", "/infer"]))
async def test_v2_version_routes(fuzzed: Fuzzed, version: str, route: str) -> None:
    path = f"/v2/models/colors/versions/{aiohttp.helpers.quote(version, safe='')}{route}"
    if route == "/infer":
        await fuzzed.post(path, b"{}", {"Content-Type": "application/json"})
    else:
        await fuzzed.get(path)


@pytest.mark.parametrize("depth", [900, 100_000])
async def test_deeply_nested_json_is_a_400(fuzzed: Fuzzed, depth: int) -> None:
    data = "[" * depth + "1" + "]" * depth
    body = f'{{"inputs": [{{"name": "x", "datatype": "FP32", "shape": [1], "data": {data}}}]}}'
    await fuzzed.post("/v2/models/colors/infer", body, {"Content-Type": "application/json"})
    await fuzzed.post("/predict", f'{{"text": {data}}}', {"Content-Type": "application/json"})


async def test_the_server_still_serves_after_the_fuzzing(fuzzed: Fuzzed) -> None:
    async with fuzzed.session.post(
        fuzzed.url + "/predict", data=IMAGE, headers={"Content-Type": "image/jpeg"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["predictions"][0]["label"] == "red"


# a well-formed binary request, to make sure the generator can reach the model at all
async def test_a_valid_binary_request_is_served(fuzzed: Fuzzed) -> None:
    header = {
        "inputs": [
            {
                "name": "input",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(IMAGE) + 4},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
    }
    raw = json.dumps(header).encode()
    async with fuzzed.session.post(
        fuzzed.url + "/v2/models/colors/infer",
        data=raw + struct.pack("<I", len(IMAGE)) + IMAGE,
        headers={"Inference-Header-Content-Length": str(len(raw))},
    ) as response:
        assert response.status == 200, await response.text()
