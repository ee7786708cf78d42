"""A local, content-addressed cache of objects: each version is downloaded once.

    root/objects/<digest of bucket, key and ETag or version id>/<file name>

The file keeps the object's name (a model's name is its file stem). A download
goes to `<name>.part`, in chunks fetched concurrently and recorded in
`<name>.part.done` as they land, so an interrupted download resumes where it
stopped; it is checked (size, and the MD5 a single-part ETag is) and only then
renamed into place, so no reader ever sees half a file. A lock file per entry
keeps two processes from downloading the same object at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autodep.storage.s3 import S3, ObjectInfo, ObjectRef, StorageError

CHUNK = 8 << 20  # bytes per ranged GET: large enough to amortise a request, small to resume
CONCURRENCY = 4  # ranged GETs in flight per object
log = logging.getLogger(__name__)
_MD5 = re.compile(r"^[0-9a-f]{32}$")  # a single-part upload's ETag is its content's MD5


class ObjectCache:
    def __init__(self, root: Path, chunk: int = CHUNK, concurrency: int = CONCURRENCY) -> None:
        self.root = root / "objects"
        self.chunk = chunk
        self.concurrency = concurrency

    def path_for(self, ref: ObjectRef, info: ObjectInfo) -> Path:
        digest = hashlib.sha256(f"{ref.bucket}\0{ref.key}\0{info.identity}".encode()).hexdigest()
        return self.root / digest[:32] / ref.name

    def fetch(self, store: S3, ref: ObjectRef, info: ObjectInfo | None = None) -> Path:
        """The local copy of an object's current version (downloaded unless cached)."""
        info = info or store.head(ref)
        final = self.path_for(ref, info)
        if _complete(final, info):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with _locked(final.parent / ".lock"):
            if _complete(final, info):  # another process fetched it meanwhile
                return final
            part = final.with_name(final.name + ".part")
            began = time.monotonic()
            # A failed download keeps its part for the next attempt to resume; a corrupt
            # one is thrown away and fetched once more from the start.
            for attempt in (1, 2):
                self._download(store, ref, info, part)
                try:
                    _verify(ref, info, part)
                    break
                except StorageError:
                    _discard(part)
                    if attempt == 2:
                        raise
            os.replace(part, final)
            _discard(part, keep=True)
        log.info(
            "fetched %s (%d bytes, %s) into %s in %.2f s",
            ref.url,
            info.size,
            f"version {info.version_id}" if info.version_id else f"ETag {info.etag}",
            final,
            time.monotonic() - began,
        )
        return final

    def _download(self, store: S3, ref: ObjectRef, info: ObjectInfo, part: Path) -> None:
        done_log = part.with_name(part.name + ".done")
        done = _done_chunks(part, done_log, info.size)
        if not done:
            done_log.unlink(missing_ok=True)
            with part.open("wb") as f:
                f.truncate(info.size)
        todo = [i for i in range(-(-info.size // self.chunk)) if i not in done]
        fd = os.open(part, os.O_WRONLY)
        lock = threading.Lock()  # the threads share the log of finished chunks
        try:
            with done_log.open("a") as record, ThreadPoolExecutor(self.concurrency) as pool:

                def one(index: int) -> None:
                    start = index * self.chunk
                    end = min(info.size, start + self.chunk) - 1
                    offset = start
                    for data in store.stream(ref, info, start, end):
                        os.pwrite(fd, data, offset)
                        offset += len(data)
                    if offset != end + 1:
                        raise StorageError(f"{ref.url}: the store sent a short range; try again")
                    os.fsync(fd)
                    with lock:  # one short write: a line is whole or absent
                        record.write(f"{index}\n")
                        record.flush()

                for future in [pool.submit(one, i) for i in todo]:
                    future.result()
        finally:
            os.close(fd)


def _done_chunks(part: Path, done_log: Path, size: int) -> set[int]:
    """Chunks an earlier, interrupted download finished (none if its file does not fit)."""
    if not part.exists() or part.stat().st_size != size or not done_log.exists():
        return set()
    return {int(line) for line in done_log.read_text().splitlines() if line.isdigit()}


def _verify(ref: ObjectRef, info: ObjectInfo, part: Path) -> None:
    size = part.stat().st_size
    if size != info.size:
        raise StorageError(f"{ref.url}: downloaded {size} bytes, the store has {info.size}")
    if _MD5.match(info.etag):
        with part.open("rb") as f:
            md5 = hashlib.file_digest(f, "md5").hexdigest()
        if md5 != info.etag:
            raise StorageError(f"{ref.url}: the download's MD5 {md5} is not its ETag {info.etag}")


def _complete(path: Path, info: ObjectInfo) -> bool:
    try:
        return path.stat().st_size == info.size
    except OSError:
        return False


def _discard(part: Path, keep: bool = False) -> None:
    """Remove a download's bookkeeping (and, unless keep, its partial data)."""
    part.with_name(part.name + ".done").unlink(missing_ok=True)
    if not keep:
        part.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fill_folder(folder: Path, files: dict[str, Path]) -> Path:
    """A folder holding `files` (relative name -> cached file), as hard links, made atomically."""
    if folder.is_dir():
        return folder
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for name, source in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, folder)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder
