"""s3:// references in a model entry, found and replaced (no client needed: cheap to import).

A model entry (a YAML mapping, or a --model argument) may name any of its files
as s3:// URLs: `path`, `versions`, `labels`, `tokenizer` and `optimize.samples`
(a prefix: a folder of inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEME = "s3://"
FILE_FIELDS = ("path", "labels", "tokenizer")
FOLDER_FIELDS = ("optimize.samples",)


def is_remote(value: object) -> bool:
    """Whether a path as given (a string from the CLI or the YAML) is an s3:// URL."""
    return isinstance(value, str) and value.startswith(SCHEME)


def remote_fields(entry: Mapping[str, Any]) -> dict[str, str]:
    """The s3:// URLs of a raw model entry, by field ("versions.2", "optimize.samples"...)."""
    found = {f: entry[f] for f in FILE_FIELDS if is_remote(entry.get(f))}
    versions = entry.get("versions")
    if isinstance(versions, Mapping):
        found |= {f"versions.{n}": v for n, v in versions.items() if is_remote(v)}
    optimize = entry.get("optimize")
    if isinstance(optimize, Mapping) and is_remote(optimize.get("samples")):
        found["optimize.samples"] = optimize["samples"]
    return found


def with_local(entry: Mapping[str, Any], local: Mapping[str, Path]) -> dict[str, Any]:
    """The raw entry with each fetched field's URL replaced by its local path."""
    out = dict(entry)
    for field, path in local.items():
        head, _, tail = field.partition(".")
        if tail:
            out[head] = {**out[head], _key(out[head], tail): str(path)}
        else:
            out[head] = str(path)
    return out


def _key(mapping: Mapping[Any, Any], name: str) -> Any:
    """A version number's key as the entry has it (YAML gives ints, JSON strings)."""
    return next((k for k in mapping if str(k) == name), name)
