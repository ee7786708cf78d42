"""The bearer token scheme (RFC 6750), as both front ends read it.

`Authorization: Bearer TOKEN` over HTTP, the `authorization` metadata over gRPC:
the scheme's case does not matter (RFC 7235), the token is compared in constant
time and never echoed.
"""

from __future__ import annotations

import hmac


def given_token(value: str | bytes | None) -> bytes | None:
    """The token of an `Authorization` value with the Bearer scheme, else None."""
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode(errors="replace")


def matches(given: bytes, expected: bytes) -> bool:
    """Whether the given token is the expected one (in constant time)."""
    return hmac.compare_digest(given, expected)
