"""`Store`: s3:// URLs to local cached files, for model entries and batch jobs.

`localize` fetches a model entry's remote fields (autodep.storage.refs)
concurrently into the cache; autodep.config puts the local paths in the entry
and keeps the URLs in `ModelConfig.remote`, whose versions poll mode watches
through `signature`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autodep.optimize.cache import root as cache_root
from autodep.storage.cache import ObjectCache, fill_folder
from autodep.storage.refs import FOLDER_FIELDS
from autodep.storage.s3 import S3, ObjectRef, StorageError

Signature = tuple[tuple[str, str | None], ...]  # (URL, ETag or version id; None: missing)


class Store:
    """An S3 endpoint and the local cache its objects land in."""

    def __init__(self, endpoint: str | None = None, cache_dir: Path | None = None) -> None:
        self.s3 = S3(endpoint)
        self.cache = ObjectCache(cache_root(cache_dir))

    def fetch(self, url: str) -> Path:
        """The local copy of the object's current version."""
        return self.cache.fetch(self.s3, ObjectRef.parse(url))

    def fetch_folder(self, url: str) -> Path:
        """A local folder with every object under the prefix (named by their relative keys)."""
        prefix = ObjectRef.parse(url)
        listing = list(self.s3.list(prefix))
        start = len(prefix.child("").key)
        files = {ref.key[start:]: self.cache.fetch(self.s3, ref, info) for ref, info in listing}
        digest = hashlib.sha256(
            "\0".join([url, *(f"{r.key}={i.etag}" for r, i in listing)]).encode()
        ).hexdigest()
        return fill_folder(self.cache.root / "folders" / digest[:32], files)

    def labels_beside(self, url: str) -> str | None:
        """`<stem>.labels.txt` beside a model object, if there is one (as for files).

        The model is looked at first, so that an error names it rather than its labels.
        """
        ref = ObjectRef.parse(url)
        self.s3.head(ref)
        stem = ref.name.rsplit(".", 1)[0] if "." in ref.name else ref.name
        labels = ref.sibling(f"{stem}.labels.txt")
        try:
            self.s3.head(labels)
        except StorageError as exc:
            # AWS answers 403 for a missing key to a caller that may not list the bucket.
            if exc.missing or exc.denied:
                return None
            raise
        return labels.url

    def signature(self, urls: list[str]) -> Signature:
        """Each URL's current version (poll mode: a change means a new version to load)."""
        return tuple((url, self._identity(url)) for url in sorted(set(urls)))

    def _identity(self, url: str) -> str | None:
        ref = ObjectRef.parse(url)
        try:
            if url.endswith("/"):
                return ",".join(f"{r.key}={i.etag}" for r, i in self.s3.list(ref))
            return self.s3.head(ref).identity
        except StorageError as exc:  # a state to watch, not an error: acted on once it settles
            return None if exc.missing else "unreadable"

    def localize(self, remote: Mapping[str, str]) -> dict[str, Path]:
        """Fetch every field's URL concurrently: field -> local file or folder."""
        if not remote:
            return {}

        def one(item: tuple[str, str]) -> tuple[str, Path]:
            field, url = item
            folder = field in FOLDER_FIELDS
            return field, self.fetch_folder(url) if folder else self.fetch(url)

        with ThreadPoolExecutor(min(8, len(remote))) as pool:
            return dict(pool.map(one, remote.items()))


@functools.cache
def store_for(endpoint: str | None = None, cache_dir: Path | None = None) -> Store:
    """One Store (one client, one cache) per endpoint and cache folder in a process."""
    return Store(endpoint, cache_dir)
