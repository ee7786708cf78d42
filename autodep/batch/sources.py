"""Where a batch job's items come from: a folder, a JSON Lines file, or an s3:// prefix.

- a folder: every file under it (recursively), keyed by its path relative to it;
- a JSON Lines file: one object per line, `{"key": ..., "path" | "url" | "text": ...}`
  (`path` relative to the file; `url` an s3:// object); key defaults to the line number;
- `s3://bucket/prefix/`: every object under the prefix, keyed relative to it.

Only the keys are listed up front (for the progress bar's total); each item's
data is read when the engine takes it.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from pathlib import Path

from autodep.batch.items import Input
from autodep.errors import ConfigError
from autodep.storage.refs import is_remote
from autodep.storage.s3 import S3, ObjectRef


def list_inputs(source: str, s3: Callable[[], S3], exclude: Path | None = None) -> list[Input]:
    """Every item of a source, its data not yet read. `exclude`: the job's own output."""
    if is_remote(source):
        return _from_prefix(source, s3())
    path = Path(source)
    if path.is_dir():
        return _from_folder(path, exclude)
    if path.is_file():
        return _from_lines(path, s3)
    raise ConfigError(f"--input {source}: no such folder or file (or an s3://bucket/prefix/)")


def _content_type(name: str) -> str | None:
    """text/plain and JSON by extension; anything else is sniffed (images)."""
    kind, _ = mimetypes.guess_type(name)
    return kind if kind in ("text/plain", "application/json") else None


def _from_folder(folder: Path, exclude: Path | None) -> list[Input]:
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [
        Input(p.relative_to(folder).as_posix(), p.read_bytes, _content_type(p.name))
        for p in files
        if skip is None or not p.resolve().is_relative_to(skip)
    ]


def _from_prefix(url: str, s3: S3) -> list[Input]:
    prefix = ObjectRef.parse(url)
    start = len(prefix.child("").key)

    def loader(ref: ObjectRef) -> Callable[[], bytes]:
        return lambda: s3.get(ref)

    return [
        Input(ref.key[start:], loader(ref), _content_type(ref.name)) for ref, _ in s3.list(prefix)
    ]


def _from_lines(path: Path, s3: Callable[[], S3]) -> list[Input]:
    items = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                items.append(_line_item(line, number, path.parent, s3))
    return items


def _line_item(line: str, number: int, base: Path, s3: Callable[[], S3]) -> Input:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        return Input(f"line {number}", b"", error=f"line {number}: not valid JSON: {exc}")
    if not isinstance(entry, dict):
        return Input(f"line {number}", b"", error=f"line {number}: not a JSON object")
    key = str(entry.get("key", number))
    if isinstance(entry.get("text"), str):
        return Input(key, entry["text"], "text/plain")
    if is_remote(entry.get("url")):
        ref = ObjectRef.parse(entry["url"])
        return Input(key, lambda: s3().get(ref), _content_type(ref.name))
    if isinstance(entry.get("path"), str):
        file = base / entry["path"]
        return Input(key, file.read_bytes, _content_type(file.name))
    return Input(key, b"", error=f"line {number}: give one of text, path or url")
