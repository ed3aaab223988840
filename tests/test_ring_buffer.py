"""The ring buffer against a plain concatenation of everything written."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_ser.ring_buffer import OverrunError, RingBuffer


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 64),
    channels=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 100), min_size=1, max_size=20),
    data=st.data(),
)
def test_reads_match_concatenation(capacity: int, channels: int, sizes: list[int], data) -> None:
    ring = RingBuffer(capacity, channels)
    rng = np.random.default_rng(len(sizes))
    chunks = [rng.standard_normal((n, channels)).astype(np.float32) for n in sizes]
    for c in chunks:
        ring.write(c)
    everything = np.concatenate(chunks)
    assert ring.written == everything.shape[0]
    end = data.draw(st.integers(0, ring.written))
    oldest = ring.written - capacity
    n = data.draw(st.integers(0, capacity))
    if end - n < oldest and end > 0:
        with pytest.raises(OverrunError):
            ring.read(end, n)
        return
    got = ring.read(end, n)
    want = np.zeros((n, channels), np.float32)
    seg = everything[max(end - n, 0) : end]
    want[n - seg.shape[0] :] = seg
    assert np.array_equal(got, want)


def test_zero_padding_before_stream_start_and_errors() -> None:
    ring = RingBuffer(10)
    ring.write(np.arange(1, 4, dtype=np.float32))
    assert ring.read(3, 5)[:, 0].tolist() == [0, 0, 1, 2, 3]
    with pytest.raises(ValueError):
        ring.read(4, 2)  # not written yet
    with pytest.raises(ValueError):
        ring.read(3, 11)  # more than the capacity
    with pytest.raises(ValueError):
        ring.write(np.zeros((2, 2), np.float32))  # wrong channel count
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_block_larger_than_capacity_keeps_newest() -> None:
    ring = RingBuffer(4)
    ring.write(np.arange(10, dtype=np.float32))
    assert ring.written == 10
    assert ring.read(10, 4)[:, 0].tolist() == [6, 7, 8, 9]
