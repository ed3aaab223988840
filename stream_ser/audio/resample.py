"""Native sample rates and the resampling of every source to the model's rate.

Files and devices may run at any native rate in :data:`NATIVE_SAMPLE_RATE_RANGE_HZ`; every source
resamples to the model's rate (16 kHz) with soxr's streaming resampler at
:data:`RESAMPLER_QUALITY`, one filter per channel, so chunked output equals the whole-signal
result bit for bit (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Native sample rates (Hz) accepted from files and devices, resampled to the model's. A header
#: claiming a rate outside (a damaged or hostile file: 1 Hz would make a 40 kB file 40 s of work
#: and gigabytes of audio at 16 kHz) is refused.
NATIVE_SAMPLE_RATE_RANGE_HZ = (8000, 192000)

#: soxr quality preset of every resampling to the model's rate (files, devices, the API). Its streaming
#: filter holds back less audio than HQ's: from a 44.1 or 48 kHz device in 40 ms blocks, a hop's last
#: sample is released at most 40 ms after it was captured, against 60 ms with HQ
#: (``python benchmarks/bench_resampler.py``), and ``listen``'s latency from capture to prediction fell
#: from p99 56 to 25 ms (``benchmarks/bench_live.py --resampler HQ|LQ``). LQ's passband ends near
#: 6 kHz at 16 kHz out (-3 dB at 6.5 kHz, -13 dB at 7 kHz; aliases below -100 dB); the shipped model
#: scores the same or better on the test speakers through it (``python -m training.experiments
#: robustness --conditions device48k-HQ device48k-LQ``, models/RESULTS.md section 4). One preset for
#: files and devices keeps ``listen --input FILE`` and ``analyse FILE`` identical.
RESAMPLER_QUALITY = "LQ"


def resampler(in_rate_hz: int, out_rate_hz: int, channels: int = 1) -> Callable[[np.ndarray, bool], np.ndarray]:
    """A streaming resampler ``f(chunk, last) -> chunk`` (soxr ``ResampleStream``).

    Identity when the rates match. Chunks are float32, shape ``(n,)`` (``channels == 1``) or
    ``(n, channels)``; each channel is filtered on its own, so a channel resampled with others
    equals the same channel resampled alone (bit for bit with soxr), and the output of any
    chunking equals :func:`soxr.resample` of the whole signal at :data:`RESAMPLER_QUALITY`
    (tested). Thread: the consumer's.
    """
    if in_rate_hz == out_rate_hz:
        return lambda x, last=False: x
    import soxr

    stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, channels, dtype="float32", quality=RESAMPLER_QUALITY)
    return lambda x, last=False: stream.resample_chunk(x, last=last)


def native_rate_problem(rate_hz: float) -> str | None:
    """Why a native sample rate (Hz) is refused, or None inside :data:`NATIVE_SAMPLE_RATE_RANGE_HZ`."""
    low, high = NATIVE_SAMPLE_RATE_RANGE_HZ
    if low <= rate_hz <= high:
        return None
    shown = f"{rate_hz:.0f}" if math.isfinite(rate_hz) else str(rate_hz)
    return f"sample rate {shown} Hz is outside the {low // 1000}-{high // 1000} kHz stream-ser accepts"
