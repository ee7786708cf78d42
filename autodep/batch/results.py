"""results.jsonl: one line per finished item, appended as items finish; resumable.

A line is written with one write() and flushed, so a job killed at any moment
leaves whole lines (a torn last line, possible only on a power cut, is cut off
when the log is opened again). Opening the log reads the keys already there:
the job skips them, so a rerun finishes the rest and each item ends up in the
file exactly once. For an s3:// destination the log is kept in a local staging
file (in the cache, named for the destination) and uploaded as
`<prefix>/results.jsonl` every `upload_every` seconds and at the end; a rerun
merges what was uploaded with what the staging file holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import IO

from autodep.batch.items import Result
from autodep.storage.refs import is_remote
from autodep.storage.s3 import S3, ObjectRef, StorageError

NAME = "results.jsonl"


class ResultLog:
    def __init__(
        self, output: str, s3: S3 | None, staging_root: Path, upload_every: float = 10.0
    ) -> None:
        self._remote: ObjectRef | None = None
        self._s3 = s3
        if is_remote(output):
            self._remote = ObjectRef.parse(output).child(NAME)
            digest = hashlib.sha256(self._remote.url.encode()).hexdigest()[:32]
            self.path = staging_root / "batch" / digest / NAME
        else:
            self.path = Path(output) / NAME
        self._upload_every = upload_every
        self._uploaded_at = time.monotonic()
        self._file: IO[str] | None = None
        self.done: set[str] = set()

    @property
    def location(self) -> str:
        return self._remote.url if self._remote is not None else str(self.path)

    def open(self) -> set[str]:
        """Open for appending; return the keys finished by earlier runs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = self.path.read_text() if self.path.exists() else ""
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # a torn last line: that item runs again
            self.path.write_text(text)
        if self._remote is not None:
            text = self._merge_uploaded(text)
        self.done = {json.loads(line)["key"] for line in text.splitlines() if line.strip()}
        self._file = self.path.open("a")
        return set(self.done)

    def write(self, result: Result) -> None:
        assert self._file is not None
        if result.key in self.done:
            return  # a key given twice in one job: its first result stands
        self._file.write(result.line())
        self._file.flush()
        self.done.add(result.key)
        if self._remote is not None and time.monotonic() - self._uploaded_at > self._upload_every:
            self.upload()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._remote is not None:
            self.upload()

    def upload(self) -> None:
        """Put the whole log at the destination (the staging file stays: a rerun merges it)."""
        assert self._remote is not None and self._s3 is not None
        if self._file is not None:
            self._file.flush()
        self._s3.put(self._remote, self.path.read_bytes())
        self._uploaded_at = time.monotonic()

    def _merge_uploaded(self, local: str) -> str:
        """What an earlier run uploaded, plus lines only the staging file has."""
        assert self._remote is not None and self._s3 is not None
        try:
            uploaded = self._s3.get(self._remote).decode()
        except StorageError as exc:
            if not exc.missing:
                raise
            return local
        keys = {json.loads(line)["key"] for line in uploaded.splitlines() if line.strip()}
        extra = [
            line
            for line in local.splitlines(keepends=True)
            if line.strip() and json.loads(line)["key"] not in keys
        ]
        merged = (
            uploaded + ("" if not uploaded or uploaded.endswith("\n") else "\n") + "".join(extra)
        )
        self.path.write_text(merged)
        return merged
