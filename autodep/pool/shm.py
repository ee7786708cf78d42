"""Shared-memory buffers that carry tensors between the server and a worker.

A buffer is an anonymous `memfd` mapping. The server creates it and hands the
file descriptor to the worker when it starts; both map the same pages. Being
anonymous, a buffer has no name in /dev/shm: the kernel frees it when the last
process holding it exits, so nothing is left behind even after `kill -9`.

The file is sized generously but sparse: pages cost memory only once touched,
and stay mapped for reuse by the next batch.

Tensors are laid out back to back, each 64-byte aligned, and described by a
small `TensorSpec` (offset, shape, dtype) that travels in the msgpack header.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Sequence
from multiprocessing import reduction
from typing import Any, NamedTuple

import numpy as np

ALIGN = 64
DEFAULT_CAPACITY = 512 * 1024 * 1024
# A buffer has three slots, so that a worker can hold its next two batches (and write its
# outputs) while the server still reads the last one: batch n uses slot n % SLOTS. Two
# held batches give the server's event loop two batches' time to answer a result
# (measured in docs/report/measurements.md: one held batch served less under overload).
SLOTS = 3


class TensorSpec(NamedTuple):
    offset: int
    shape: tuple[int, ...]
    dtype: str

    def to_wire(self) -> list[object]:
        return [self.offset, list(self.shape), self.dtype]

    @classmethod
    def from_wire(cls, wire: Sequence[object]) -> TensorSpec:
        offset, shape, dtype = wire
        return cls(int(offset), tuple(shape), str(dtype))  # type: ignore[arg-type,call-overload]


class BufferOverflow(Exception):
    """A batch does not fit in the buffer."""


class SharedBuffer:
    """One direction of tensor traffic between two processes."""

    def __init__(self, fd: int, capacity: int) -> None:
        self.fd = fd
        self.capacity = capacity
        self._map = mmap.mmap(fd, capacity)

    @classmethod
    def create(cls, name: str, capacity: int = DEFAULT_CAPACITY) -> SharedBuffer:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, capacity)
            return cls(fd, capacity)
        except BaseException:
            os.close(fd)
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled only to start a worker: the fd itself goes to the child."""
        return (_attach, (reduction.DupFd(self.fd), self.capacity))

    def write(
        self, groups: Sequence[Sequence[np.ndarray]], slot: int = 0
    ) -> list[list[TensorSpec]]:
        """Copy groups of arrays (one group per request) into the buffer's `slot` (a half)."""
        size = self.capacity // SLOTS // ALIGN * ALIGN
        specs: list[list[TensorSpec]] = []
        offset = start = (slot % SLOTS) * size
        for group in groups:
            group_specs = []
            for array in group:
                array = np.ascontiguousarray(array)
                end = offset + array.nbytes
                if end > start + size:
                    raise BufferOverflow(f"batch needs more than {size} bytes of shared memory")
                view = np.ndarray(array.shape, array.dtype, self._map, offset)
                view[...] = array
                group_specs.append(TensorSpec(offset, array.shape, array.dtype.str))
                offset = -(-end // ALIGN) * ALIGN
            specs.append(group_specs)
        return specs

    def view(self, spec: TensorSpec) -> np.ndarray:
        """A zero-copy view; valid until the buffer is written again."""
        return np.ndarray(spec.shape, np.dtype(spec.dtype), self._map, spec.offset)

    def read(self, spec: TensorSpec) -> np.ndarray:
        """A private copy, safe to keep after the buffer is reused."""
        return self.view(spec).copy()

    def close(self) -> None:
        """Unmap and close. Views still alive keep the mapping until they go."""
        with contextlib.suppress(BufferError):  # a view is alive; the mapping goes with it
            self._map.close()
        os.close(self.fd)


def _attach(fd: Any, capacity: int) -> SharedBuffer:
    return SharedBuffer(fd.detach(), capacity)
