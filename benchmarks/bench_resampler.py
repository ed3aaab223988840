"""soxr's quality presets for the live path: delay, passband and cost of resampling to 16 kHz.

    python benchmarks/bench_resampler.py [--block-ms 40] [--rates 48000 44100]

For each preset (LQ, MQ, HQ, VHQ; QQ is cubic interpolation without an anti-aliasing filter and is
left out) and each device rate, three figures:

* **delay**: a ``soxr.ResampleStream`` is fed silence in ``--block-ms`` blocks, as the capture
  thread feeds it; for each 0.5 s hop boundary at 16 kHz, how long after the hop's last input
  sample the block that makes the resampler emit that sample ends (ms; median and max over 60
  hops). This is part of ``listen``'s latency from capture: with no filter it would be the rest
  of the block holding the hop's last sample alone (for 40 ms blocks, 20 and 0 ms in turn: a
  0.5 s hop is 12.5 blocks);
* **passband**: gain (dB) of a sine at 6-7.9 kHz through the resampler to 16 kHz, and of
  an 8.5 kHz sine that must be removed (aliasing);
* **cost**: microseconds per block (median of 5 runs of 2000 blocks of noise).

The runtime's choice is ``stream_ser.audio.RESAMPLER_QUALITY``. Prints figures; asserts
nothing. Accuracy through each preset is measured separately:
``python -m training.experiments robustness --data ../shared/data --conditions device48k-HQ device48k-LQ``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_analyse import machine  # noqa: E402

OUT_RATE = 16000
HOP = 8000  # samples at 16 kHz (0.5 s)
PRESETS = ("LQ", "MQ", "HQ", "VHQ")
TONES_HZ = (6000, 6500, 7000, 7500, 7900, 8500)


def hop_delays_ms(rate: int, quality: str, block: int, hops: int = 60) -> np.ndarray:
    """Delay (ms) from each hop's last input sample to the end of the block that releases it."""
    stream = soxr.ResampleStream(rate, OUT_RATE, 1, dtype="float32", quality=quality)
    zeros = np.zeros(block, np.float32)
    fed, out, fed_at, out_at = 0, 0, [], []
    while out < (hops + 2) * HOP:
        out += len(stream.resample_chunk(zeros))
        fed += block
        fed_at.append(fed)
        out_at.append(out)
    fed_at, out_at = np.array(fed_at), np.array(out_at)
    ends = np.arange(1, hops + 1) * HOP  # samples at 16 kHz up to and including each hop
    first = np.searchsorted(out_at, ends)  # first block after which they are all out
    return (fed_at[first] - ends * rate / OUT_RATE) / rate * 1000.0


def tone_gain_db(rate: int, quality: str, freq_hz: float) -> float:
    """Gain (dB) of a 2 s sine at ``freq_hz`` resampled to 16 kHz (edges excluded)."""
    t = np.arange(2 * rate) / rate
    y = soxr.resample(np.sin(2 * np.pi * freq_hz * t).astype(np.float32), rate, OUT_RATE, quality=quality)
    rms = np.sqrt(np.mean(y[OUT_RATE // 4 : -OUT_RATE // 4].astype(np.float64) ** 2))
    return float(20 * np.log10(rms / np.sqrt(0.5) + 1e-12))


def us_per_block(rate: int, quality: str, block: int, n: int = 2000) -> float:
    """Median over 5 runs of the time (us) of one ``resample_chunk`` of noise."""
    x = np.random.default_rng(0).normal(0, 0.1, block).astype(np.float32)
    stream = soxr.ResampleStream(rate, OUT_RATE, 1, dtype="float32", quality=quality)
    for _ in range(100):
        stream.resample_chunk(x)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            stream.resample_chunk(x)
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return float(np.median(runs))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--block-ms", type=float, default=40.0, help="capture block (ms; listen's default is 40)")
    ap.add_argument("--rates", type=int, nargs="*", default=[48000, 44100], help="device sample rates (Hz)")
    args = ap.parse_args(argv)
    from stream_ser.audio import RESAMPLER_QUALITY

    print(machine())
    print(f"soxr {soxr.__version__}; runtime preset: {RESAMPLER_QUALITY}; blocks of {args.block_ms:g} ms\n")
    head = " | ".join(f"{f / 1000:g} kHz" for f in TONES_HZ)
    print(f"| device rate | preset | delay median / max (ms) | {head} (dB) | us per block |")
    print("| ---: | --- | ---: |" + " ---: |" * len(TONES_HZ) + " ---: |")
    for rate in args.rates:
        block = round(rate * args.block_ms / 1000)
        for q in PRESETS:
            d = hop_delays_ms(rate, q, block)
            gains = " | ".join(f"{tone_gain_db(rate, q, f):.1f}" for f in TONES_HZ)
            print(f"| {rate} | {q} | {np.median(d):.1f} / {d.max():.1f} | {gains} | {us_per_block(rate, q, block):.1f} |")


if __name__ == "__main__":
    main()
