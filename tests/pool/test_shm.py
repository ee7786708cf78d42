"""Shared buffers: layout, copies and their limits."""

from __future__ import annotations

import os

import numpy as np
import pytest

from autodep.pool.shm import ALIGN, BufferOverflow, SharedBuffer, TensorSpec


def test_groups_round_trip_with_aligned_offsets():
    buffer = SharedBuffer.create("test", capacity=1 << 20)
    try:
        a = np.arange(10, dtype=np.float32).reshape(2, 5)
        b = np.array([1, 2, 3], dtype=np.int64)
        c = np.ones((3, 4, 4), dtype=np.uint8)
        specs = buffer.write([[a, b], [c]])
        assert [len(g) for g in specs] == [2, 1]
        assert all(s.offset % ALIGN == 0 for g in specs for s in g)
        np.testing.assert_array_equal(buffer.read(specs[0][0]), a)
        np.testing.assert_array_equal(buffer.read(specs[0][1]), b)
        np.testing.assert_array_equal(buffer.read(specs[1][0]), c)
        assert TensorSpec.from_wire(specs[0][1].to_wire()) == specs[0][1]
    finally:
        buffer.close()


def test_read_is_a_copy_that_survives_reuse():
    buffer = SharedBuffer.create("test", capacity=1 << 16)
    try:
        ((spec,),) = buffer.write([[np.full(4, 7, np.int32)]])
        kept = buffer.read(spec)
        buffer.write([[np.zeros(4, np.int32)]])
        assert kept.tolist() == [7, 7, 7, 7]
    finally:
        buffer.close()


def test_overflow_is_reported_not_written():
    buffer = SharedBuffer.create("test", capacity=1024)
    try:
        with pytest.raises(BufferOverflow):
            buffer.write([[np.zeros(2048, np.uint8)]])
    finally:
        buffer.close()


def test_buffers_are_anonymous():
    before = set(os.listdir("/dev/shm"))
    buffer = SharedBuffer.create("test")
    assert set(os.listdir("/dev/shm")) == before
    buffer.close()
