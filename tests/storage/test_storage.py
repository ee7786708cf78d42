"""Models from an S3-compatible store (a real moto server on loopback, see tests/s3.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autodep.config import (
    build_config,
    load_repository,
    model_from_entry,
    model_from_file,
    refetch_all,
)
from autodep.errors import ConfigError
from autodep.storage.cache import ObjectCache
from autodep.storage.s3 import S3, ObjectRef
from autodep.testing.server import ServerProcess
from tests import models
from tests.support.images import image_bytes
from tests.support.s3 import Bucket, start_moto, stop_moto
from tests.support.servers import free_port, request


def test_model_from_bucket_has_its_labels_beside_and_is_cached_once(
    s3: Bucket, color_model: Path
) -> None:
    url = s3.put("models/colors.pt", color_model)
    s3.put("models/colors.labels.txt", b"red\ngreen\nblue\n")
    model = model_from_file(url)
    assert model.name == "colors"
    assert model.path.read_bytes() == color_model.read_bytes()
    assert model.label_names() == ["red", "green", "blue"]
    assert model.remote == {"path": url, "labels": f"s3://{s3.name}/models/colors.labels.txt"}
    assert model_from_file(url).path == model.path  # the same version: the same cached file


def test_serve_cli_serves_a_model_from_a_bucket(s3: Bucket, color_model: Path) -> None:
    s3.put("team/colors.pt", color_model)
    s3.put("team/colors.labels.txt", b"red\ngreen\nblue\n")
    flags = ["--model", f"s3://{s3.name}/team/colors.pt", "--max-workers", "1"]
    with ServerProcess("s3", flags, env={"AUTODEP_OPTIMIZE": "off"}) as server:
        status, answer = request(server, "/predict", image_bytes("green"))
        code = server.stop()
    log = "\n".join(server.lines)
    assert status == 200
    assert answer["model"] == "colors"
    assert answer["predictions"][0]["label"] == "green"
    assert code == 0
    assert s3.server.secret_key not in log and s3.server.access_key not in log


def _refused(args: list[str], env: dict[str, str]) -> str:
    """stderr of `python -m autodep.serve ARGS` that must refuse to start (exit 2)."""
    done = subprocess.run(
        [sys.executable, "-m", "autodep.serve", "--port", "0", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_a_missing_object_is_a_clear_error(s3: Bucket) -> None:
    stderr = _refused(["--model", f"s3://{s3.name}/nowhere/model.pt"], {})
    assert f"s3://{s3.name}/nowhere/model.pt" in stderr
    assert f"bucket {s3.name!r}, key 'nowhere/model.pt'" in stderr
    assert "no such object" in stderr


def test_wrong_credentials_are_a_clear_error_that_hides_them(s3: Bucket, color_model: Path) -> None:
    s3.put("colors.pt", color_model)
    wrong = {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1", "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    stderr = _refused(["--model", f"s3://{s3.name}/colors.pt"], wrong)
    assert f"bucket {s3.name!r}, key 'colors.pt'" in stderr
    assert "access denied" in stderr
    assert "not-the-secret" not in stderr and "AKIAWRONGWRONGWRONG1" not in stderr


def test_a_stopped_endpoint_is_a_clear_error(s3: Bucket, color_model: Path) -> None:
    port = free_port()
    process = start_moto(port, auth_setup_requests=None)
    stop_moto(process)  # an endpoint that was there and is gone
    endpoint = f"http://127.0.0.1:{port}"
    stderr = _refused(["--model", f"s3://{s3.name}/colors.pt", "--s3-endpoint", endpoint], {})
    assert f"bucket {s3.name!r}, key 'colors.pt'" in stderr
    assert f"the endpoint {endpoint} is unreachable" in stderr


def test_load_requests_may_not_name_objects(s3: Bucket, color_model: Path) -> None:
    with pytest.raises(ConfigError, match="allowed only in the repository YAML"):
        model_from_entry({"name": "x", "path": f"s3://{s3.name}/x.pt"}, Path.cwd(), "load request")


def test_a_repository_yaml_names_versions_labels_and_samples_in_a_bucket(
    s3: Bucket, color_model: Path, tmp_path: Path
) -> None:
    one = s3.put("m/v1/colors.pt", color_model)
    two = s3.put("m/v2/colors.pt", color_model)
    labels = s3.put("m/labels.txt", b"r\ng\nb\n")
    s3.put("m/samples/a.jpg", image_bytes("red"))
    s3.put("m/samples/sub/b.jpg", image_bytes("blue"))
    yaml = tmp_path / "models.yaml"
    yaml.write_text(
        f"models:\n- name: colors\n  versions: {{1: {one}, 2: {two}}}\n  labels: {labels}\n"
        f"  optimize: {{samples: s3://{s3.name}/m/samples/}}\n"
    )
    (model,) = load_repository(yaml)
    assert model.versions[1].read_bytes() == model.versions[2].read_bytes()
    assert model.versions[1] != model.versions[2]  # two objects, two cache entries
    assert model.path == model.versions[2]
    assert model.label_names() == ["r", "g", "b"]
    samples = model.optimize.samples
    assert samples is not None
    assert sorted(str(p.relative_to(samples)) for p in samples.rglob("*.jpg")) == [
        "a.jpg",
        "sub/b.jpg",
    ]
    assert set(model.remote) == {"versions.1", "versions.2", "labels", "optimize.samples"}


def test_an_interrupted_download_resumes_and_a_corrupt_one_is_fetched_again(
    s3: Bucket, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 1000  # 256 kB: 4 chunks of 64 kB
    url = s3.put("big.bin", data)
    ref = ObjectRef.parse(url)
    store = S3()
    cache = ObjectCache(tmp_path, chunk=64_000, concurrency=2)
    info = store.head(ref)
    assert info.etag == hashlib.md5(data).hexdigest()
    part = cache.path_for(ref, info).with_name("big.bin.part")
    part.parent.mkdir(parents=True)
    # An earlier run wrote chunk 0 and died: only the rest is fetched.
    part.write_bytes(data[:64_000] + bytes(len(data) - 64_000))
    part.with_name("big.bin.part.done").write_text("0\n")
    assert cache.fetch(store, ref).read_bytes() == data
    assert not part.exists() and not part.with_name("big.bin.part.done").exists()
    # A chunk recorded as done but wrong fails the MD5 check: fetched again from the start.
    other = s3.put("other.bin", data)
    ref = ObjectRef.parse(other)
    part = cache.path_for(ref, info).with_name("other.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(len(data)))
    part.with_name("other.bin.part.done").write_text("0\n1\n2\n3\n")
    assert cache.fetch(store, ref).read_bytes() == data


async def test_poll_mode_rolls_a_new_object_version_out_under_load(
    s3: Bucket, color_model: Path, tmp_path: Path, serve
) -> None:
    url = s3.put("live/colors.pt", color_model)
    s3.put("live/colors.labels.txt", b"red\ngreen\nblue\n")
    reversed_model = models.save(models.ReversedColorNet(), tmp_path / "reversed.pt")
    server = await serve(
        url, max_workers=1, max_total_workers=2, model_control_mode="poll", repository_poll_s=0.1
    )
    state = server.service.repository
    answers: list[tuple[int, str]] = []
    rolled = asyncio.Event()

    async def keep_asking() -> None:
        while not rolled.is_set():
            status, body, _ = await server.predict(image_bytes("red"))
            answers.append(
                (status, body["predictions"][0]["label"] if status == 200 else str(body))
            )

    clients = [asyncio.create_task(keep_asking()) for _ in range(4)]
    s3.put("live/colors.pt", reversed_model)  # a new version of the same object
    await state.wait_until(lambda: state.transitions["colors", "unloaded"] == 1, 60)
    rolled.set()
    await asyncio.gather(*clients)
    assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:3]
    labels = [label for _, label in answers]
    assert set(labels) == {"red", "blue"}  # the old version, then the new one: nothing else
    _, answer, _ = await server.predict(image_bytes("red"))
    assert answer["predictions"][0]["label"] == "blue"


def test_refetch_all_gives_a_node_the_current_version_in_its_own_cache(
    s3: Bucket, color_model: Path, tmp_path: Path
) -> None:
    url = s3.put("colors.pt", color_model)
    config = build_config(models=(model_from_file(url),))
    s3.put("colors.pt", b"version 2")
    here = refetch_all(config.model_copy(update={"cache_dir": tmp_path / "node"}))
    (model,) = here.models
    assert model.path.read_bytes() == b"version 2"
    assert model.path.is_relative_to(tmp_path / "node")
    assert model.remote == {"path": url}
