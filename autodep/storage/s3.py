"""S3 and S3-compatible object stores through boto3: the few calls autodep makes.

Endpoint: `endpoint` if given (`--s3-endpoint`), else boto3's own resolution
(`AWS_ENDPOINT_URL`, the profile's config, AWS). Credentials: boto3's standard
chain (environment, profile, instance role). Every failure becomes a
`StorageError` that names the bucket, the key and the cause; credentials never
appear in a message (only the error code the store answered).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from autodep.errors import ConfigError
from autodep.storage.refs import SCHEME, is_remote

# Fail fast on an endpoint that does not answer; a few retries for a flaky one.
_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
)
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
_MISSING = {"404", "NoSuchKey", "NotFound"}


class StorageError(ConfigError):
    """An object could not be read or written (the message names bucket, key and cause)."""

    def __init__(self, message: str, *, missing: bool = False, denied: bool = False) -> None:
        super().__init__(message)
        self.missing = missing  # the object or bucket does not exist
        self.denied = denied  # the store refused the credentials or the request


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str  # for a prefix: empty or ending in "/"

    @classmethod
    def parse(cls, url: str) -> ObjectRef:
        bucket, _, key = url.removeprefix(SCHEME).partition("/")
        if not is_remote(url) or not bucket:
            raise StorageError(f"{url}: not an s3://bucket/key URL")
        return cls(bucket, key)

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last part of the key (a model's name is its file stem, as for files)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def sibling(self, name: str) -> ObjectRef:
        head, _, _ = self.key.rpartition("/")
        return ObjectRef(self.bucket, f"{head}/{name}" if head else name)

    def child(self, name: str) -> ObjectRef:
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return ObjectRef(self.bucket, prefix + name)


@dataclass(frozen=True)
class ObjectInfo:
    etag: str  # without quotes; the MD5 of the content unless uploaded in parts ("...-N")
    size: int
    version_id: str | None = None  # in a versioned bucket

    @property
    def identity(self) -> str:
        """What names this content: the version id where there is one, else the ETag."""
        return self.version_id or self.etag


class S3:
    """One boto3 client for an endpoint (thread-safe; created on first use)."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint, config=_CLIENT_CONFIG
                )
            return self._client

    def head(self, ref: ObjectRef) -> ObjectInfo:
        with self._errors(ref, "read"):
            meta = self.client.head_object(Bucket=ref.bucket, Key=ref.key)
        return ObjectInfo(
            meta["ETag"].strip('"'),
            int(meta["ContentLength"]),
            meta.get("VersionId") if meta.get("VersionId") not in (None, "null") else None,
        )

    def stream(self, ref: ObjectRef, info: ObjectInfo, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end (inclusive) of exactly the version `info` describes."""
        pin = {"VersionId": info.version_id} if info.version_id else {"IfMatch": f'"{info.etag}"'}
        with self._errors(ref, "read"):
            body = self.client.get_object(
                Bucket=ref.bucket, Key=ref.key, Range=f"bytes={start}-{end}", **pin
            )["Body"]
            yield from body.iter_chunks(1 << 20)

    def get(self, ref: ObjectRef) -> bytes:
        with self._errors(ref, "read"):
            data: bytes = self.client.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
            return data

    def put(self, ref: ObjectRef, data: bytes) -> None:
        with self._errors(ref, "write"):
            self.client.put_object(Bucket=ref.bucket, Key=ref.key, Body=data)

    def list(self, prefix: ObjectRef) -> Iterator[tuple[ObjectRef, ObjectInfo]]:
        """Every object under a prefix, in key order, page by page."""
        key = prefix.key if not prefix.key or prefix.key.endswith("/") else prefix.key + "/"
        with self._errors(ObjectRef(prefix.bucket, key), "list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=prefix.bucket, Prefix=key
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):
                        info = ObjectInfo(item["ETag"].strip('"'), int(item["Size"]))
                        yield ObjectRef(prefix.bucket, item["Key"]), info

    @contextlib.contextmanager
    def _errors(self, ref: ObjectRef, action: str) -> Iterator[None]:
        """Turn boto3's exceptions into a StorageError naming bucket, key and cause."""
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            where = f"cannot {action} {ref.url} (bucket {ref.bucket!r}, key {ref.key!r})"
            cause, missing = _cause(exc, self.client.meta.endpoint_url)
            denied = cause.startswith("access denied")
            raise StorageError(f"{where}: {cause}", missing=missing, denied=denied) from None


def _cause(exc: ClientError | BotoCoreError, endpoint: str) -> tuple[str, bool]:
    """What went wrong, in words, and whether it is a missing object or bucket."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return "no such object", True
        if code == "NoSuchBucket":
            return "no such bucket", True
        if code in _DENIED:
            return f"access denied ({code}): check the credentials and the bucket's policy", False
        if code in ("412", "PreconditionFailed"):
            return "the object changed while it was being read; try again", False
        return f"the store answered {code or 'an error'}", False
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return f"the endpoint {endpoint} is unreachable", False
    if isinstance(exc, NoCredentialsError):
        return (
            "no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role)",
            False,
        )
    return type(exc).__name__, False
