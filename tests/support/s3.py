"""A real S3-compatible server for the tests: moto's standalone server, a separate process.

Started once per session on a free loopback port with authentication on: the
first three requests (unauthenticated) create an IAM user with an S3 policy and
its access key; every later request must be signed with that key, so a wrong
key is refused as by AWS. Stopped by its PID at the end of the session.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.leaks import SERVER_PIDS  # not workers: the leak check leaves them alone
from tests.support.servers import free_port

_bucket_numbers = itertools.count()


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, **overrides: Any) -> Any:
        settings = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": "us-east-1",
            **overrides,
        }
        return boto3.session.Session().client("s3", **settings)

    def env(self) -> dict[str, str]:
        """The environment a client of this server needs (the standard AWS variables)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@dataclass
class Bucket:
    server: S3Server
    name: str

    @functools.cached_property
    def _client(self) -> Any:
        return self.server.client()  # one client: making one costs ~0.1 s, and it is thread-safe

    def put(self, key: str, data: bytes | Path) -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        self._client.put_object(Bucket=self.name, Key=key, Body=body)
        return f"s3://{self.name}/{key}"

    def get(self, key: str) -> bytes:
        body: bytes = self._client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling with a deadline: the server gives no other signal
    raise TimeoutError("moto server did not listen in time")


def start_moto(port: int, auth_setup_requests: int | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if auth_setup_requests is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_setup_requests)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    SERVER_PIDS.add(process.pid)
    try:
        _wait_listening(port, process)
    except BaseException:
        stop_moto(process)
        raise
    return process


def stop_moto(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    SERVER_PIDS.discard(process.pid)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    process = start_moto(port, auth_setup_requests=3)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.session.Session().client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        iam.create_user(UserName="autodep")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="autodep", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="autodep")["AccessKey"]
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        stop_moto(process)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Bucket]:
    """A fresh bucket; the AWS variables point at the test server; a fresh object cache."""
    from autodep.storage.store import store_for

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTODEP_CACHE_DIR", str(tmp_path / "cache"))
    store_for.cache_clear()
    name = f"bucket-{os.getpid()}-{next(_bucket_numbers)}"
    s3_server.client().create_bucket(Bucket=name)
    yield Bucket(s3_server, name)
    store_for.cache_clear()
