"""POST /predict and /predict/{model}: a body in, the model's JSON result out."""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from autodep.codecs import Options, Payload
from autodep.errors import InvalidInput, PayloadTooLarge
from autodep.http.body import check_length, read_body, within
from autodep.http.keys import SERVICE


async def predict(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    # 404 and 503 before the body is read: a refusal costs next to nothing.
    async with service.request(request.match_info.get("model")) as call:
        options = Options(
            top_n=_query_number(request, "top_n", int, 5),
            threshold=_query_number(request, "threshold", float, 0.5),
        )
        payload = await read_payload(request, service.config.max_body, service.config.body_timeout)
        return web.json_response(await call.predict(payload, options))


async def read_payload(request: web.Request, limit: int, timeout: float) -> Payload:
    """The request's input: a raw body, one multipart file, plain text or {"text": ...}.

    At most `limit` bytes (413), none stalling for `timeout` seconds (408).
    """
    check_length(request, limit)
    content_type = request.content_type
    if content_type == "multipart/form-data":
        return await _multipart(request, limit, timeout)
    body = await read_body(request, limit, timeout)
    if not body:
        raise InvalidInput("the request body is empty; send the input as the body")
    # application/octet-stream is aiohttp's type for a body without one: sniffed.
    return Payload.of(body, content_type)


async def _multipart(request: web.Request, limit: int, timeout: float) -> Payload:
    try:
        reader = await request.multipart()
        # The first part is the input: skipping parts would read them unbounded.
        part = await within(reader.next(), timeout)
        if part is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidInput(
                    "a nested multipart is not an input; send the input as e.g. -F image=@cat.jpg"
                )
            data = await _read_part(part, limit, timeout)
            part_type = part.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if part.filename is None and part_type in ("", "text/plain"):
                return Payload.of(data, "text/plain")  # a form field: text
            return Payload.of(data, part_type)
    except ValueError as exc:  # aiohttp's parser: no boundary, a malformed part
        raise InvalidInput(
            f"malformed multipart body ({exc}); send the input as e.g. -F image=@cat.jpg"
        ) from None
    raise InvalidInput("the multipart body has no part; send the input as e.g. -F image=@cat.jpg")


async def _read_part(part: BodyPartReader, limit: int, timeout: float) -> bytes:
    chunks = []
    size = 0
    while chunk := await within(part.read_chunk(), timeout):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"multipart body is over the limit of {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise InvalidInput(f"multipart part {part.name!r} is empty")
    return data


def _query_number(request: web.Request, name: str, kind: type[Any], default: Any) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InvalidInput(
            f"query parameter {name}={raw!r} is not a valid {kind.__name__}"
        ) from None
