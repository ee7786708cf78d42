"""Models from an S3-compatible store (a real moto server on loopback, see tests/s3.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from autodep.config import load_repository, model_from_file
from autodep.errors import ConfigError
from autodep.storage.cache import ObjectCache
from autodep.storage.s3 import S3, ObjectRef
from autodep.storage.store import store_for
from tests.conftest import free_port
from tests.s3 import Bucket


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
