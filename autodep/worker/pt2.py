"""Loading a `torch.export` program (`.pt2`) without running code its archive carries.

`torch.export.load` (torch 2.14) runs code from the file in four ways: it
unpickles weights and constants saved with `use_pickle` with `weights_only=False`,
retries the sample inputs with `weights_only=False` when the safe load fails,
`pickle.loads` opaque-object constants, and loads the AOTInductor shared
libraries an archive holds. Unless the operator trusts the file
(`--trust-pt2-pickles`), an archive holding a shared library or an object
constant is refused before torch reads it, and every `torch.load` inside the
load is forced to `weights_only` (torch's `TORCH_FORCE_WEIGHTS_ONLY_LOAD`, which
overrides an explicit `weights_only=False`): plain tensors load, pickled code
does not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from typing import Any

import torch
from torch.export.pt2_archive._package import PT2ArchiveReader
from torch.export.pt2_archive.constants import (
    AOTINDUCTOR_DIR,
    CONSTANTS_DIR,
    CUSTOM_OBJ_FILENAME_PREFIX,
    OPAQUE_OBJ_FILENAME_PREFIX,
)

# Archive entries torch.export.load turns into code without torch.load: native libraries,
# and constants it unpickles with pickle.loads or the TorchScript unpickler.
_CODE = (
    AOTINDUCTOR_DIR,
    CONSTANTS_DIR + OPAQUE_OBJ_FILENAME_PREFIX,
    CONSTANTS_DIR + CUSTOM_OBJ_FILENAME_PREFIX,
)
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


class UntrustedArchive(Exception):
    """A .pt2 file would run code it carries, and the operator did not trust such files."""


def load_exported(path: str, trust_pickles: bool = False) -> Any:
    """The module of a `.pt2` program; safe unless `trust_pickles`."""
    if trust_pickles:
        return torch.export.load(path).module()
    code = [name for name in _entries(path) if name.startswith(_CODE)]
    if code:
        raise UntrustedArchive(
            f"{path} carries code ({code[0]}): a shared library or a pickled object; "
            "the server loads such .pt2 files only when started with --trust-pt2-pickles"
        )
    try:
        with _weights_only():
            return torch.export.load(path).module()
    except pickle.UnpicklingError:
        raise UntrustedArchive(
            f"{path} holds pickled objects that are not plain tensors; the server loads "
            "such .pt2 files only when started with --trust-pt2-pickles"
        ) from None


def _entries(path: str) -> list[str]:
    """The archive's entry names, as torch's own reader sees them."""
    with PT2ArchiveReader(path) as archive:
        names: list[str] = archive.get_file_names()
        return names


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    """Force torch.load to weights_only for the block (this worker loads one model, alone)."""
    before = os.environ.get(_FORCE_WEIGHTS_ONLY)
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_FORCE_WEIGHTS_ONLY]
        else:
            os.environ[_FORCE_WEIGHTS_ONLY] = before
