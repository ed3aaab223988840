"""A preallocated ring buffer addressed by absolute frame index.

Used twice in the pipeline: by the capture callback (native-rate, multi-channel frames from
PortAudio) and inside the engine (16 kHz mono samples from which each 3 s window is read).
Frames are addressed by their absolute index since the stream started, which is the stream
clock: a window is "the ``n`` frames ending at frame ``end``", whoever wrote them and in what
chunk sizes.

Thread safety: one writer thread and one reader thread. :meth:`RingBuffer.write` copies the
frames first and publishes the new count after, so a reader never sees a frame before it is
written; a reader that falls more than ``capacity`` frames behind gets an :class:`OverrunError`.
"""

from __future__ import annotations

import numpy as np


class OverrunError(IndexError):
    """The requested frames were already overwritten (the reader fell behind)."""


class RingBuffer:
    """Fixed-size circular store of audio frames.

    Args:
        capacity_frames: Number of frames kept (> 0).
        channels: Channels per frame (>= 1).
        dtype: Sample dtype (float32 by default).

    Raises:
        ValueError: If ``capacity_frames`` or ``channels`` is not positive.
    """

    def __init__(self, capacity_frames: int, channels: int = 1, dtype: np.dtype | type = np.float32) -> None:
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError("capacity_frames and channels must be positive")
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._written = 0

    @property
    def written(self) -> int:
        """Total frames ever written (the absolute index one past the newest frame)."""
        return self._written

    def write(self, frames: np.ndarray) -> None:
        """Append frames, overwriting the oldest ones.

        Allocation-free apart from array views, so it is safe to call from a PortAudio callback.

        Args:
            frames: Shape ``(n, channels)``, or ``(n,)`` when ``channels == 1``; cast to the
                buffer's dtype. If ``n > capacity`` only the newest ``capacity`` frames are kept
                (the count still advances by ``n``).

        Raises:
            ValueError: If the channel count does not match.
        """
        if frames.ndim == 1:
            frames = frames[:, None]
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        n = frames.shape[0]
        if n == 0:
            return
        start = self._written
        if n > self.capacity:
            frames = frames[n - self.capacity :]
            start += n - self.capacity
        m = frames.shape[0]
        pos = start % self.capacity
        first = min(m, self.capacity - pos)
        self._buf[pos : pos + first] = frames[:first]
        if first < m:
            self._buf[: m - first] = frames[first:]
        self._written += n  # publish only after the copy

    def read(self, end: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy of the ``n`` frames ending just before absolute frame ``end``.

        Frames before the start of the stream (negative indices) read as zeros, so the first
        windows of a stream are left-padded with silence.

        Args:
            end: Absolute index one past the last frame wanted (<= :attr:`written`).
            n: Number of frames (0 <= n <= capacity).
            out: Array of shape ``(n, channels)`` and the buffer's dtype to copy into (a reader
                that reuses one array saves an allocation per read); None for a new array.

        Returns:
            Array of shape ``(n, channels)``, the buffer's dtype (``out`` when given).

        Raises:
            ValueError: If ``n`` is out of range or ``end`` is beyond what was written.
            OverrunError: If some of the frames were already overwritten.
        """
        if not 0 <= n <= self.capacity:
            raise ValueError(f"n={n} must be between 0 and the capacity {self.capacity}")
        written = self._written
        if end > written:
            raise ValueError(f"frame {end} has not been written yet (written: {written})")
        start = end - n
        if start < written - self.capacity and end > 0:
            raise OverrunError(f"frames {start}..{end} were overwritten (oldest kept: {written - self.capacity})")
        if out is None:
            out = np.empty((n, self.channels), dtype=self._buf.dtype)
        elif out.shape != (n, self.channels) or out.dtype != self._buf.dtype:
            raise ValueError(f"out must have shape {(n, self.channels)} and dtype {self._buf.dtype}")
        lo = max(start, 0)
        out[: lo - start] = 0.0
        m = max(end - lo, 0)
        pos = lo % self.capacity
        first = min(m, self.capacity - pos)  # at most two slices: up to the end, then from the start
        out[lo - start : lo - start + first] = self._buf[pos : pos + first]
        if first < m:
            out[lo - start + first :] = self._buf[: m - first]
        return out
