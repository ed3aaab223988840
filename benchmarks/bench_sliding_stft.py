"""Experiment (not used by the runtime): the feature recipe with STFT frames shared between
overlapping windows, against the per-window recipe, per hop.

    taskset -c 1 python benchmarks/bench_sliding_stft.py [--repeats 3]

Replays the fixture clips and 2 minutes of the benchmark recording (``.cache/bench``, built by
``bench_analyse.py``; skipped if absent) hop by hop through :class:`SlidingFeatures` and through
``stream_ser.features.window_features`` on the same windows, checks that both give the same
speech decisions and log-mels (to 1e-3 dB + the float32 sample rounding of the per-window recipe
in bins far below the window's peak), and prints the time per hop of each. It was built to cut
the per-hop cost and measured no faster (``benchmarks/README.md``), so the engine keeps the per-window
recipe; it stays here so the figure can be rerun.

How it works
------------
The engine scores a 3 s window every 0.5 s hop, so consecutive windows share 83 % of their
samples. :func:`stream_ser.features.window_features` redoes the whole recipe for every window: two
passes of frame energies (speech gate and trim) and 149 FFTs. :class:`SlidingFeatures` gives the
same log-mel from statistics computed once per stream position:

* **Level blocks.** Per block of ``b`` samples (``b = gcd(level_hop_length, level_frame_length //
  2)``, 40 samples by default): sum, sum of squares (float64), maximum and minimum. A level frame
  of the gate or of the (centred) trim is a run of whole blocks, so its mean square *after the
  window's DC removal* is ``(S2 - 2 mu S1 + count mu^2) / frame_length`` for the window mean
  ``mu``, and the window peak after DC removal is ``max(max - mu, mu - min)``.
* **STFT frames on a fine grid.** The trim moves a window's first STFT frame by a multiple of
  ``level_hop_length``, so every frame of every aligned window starts on the grid ``g =
  gcd(level_hop_length, hop_length)`` (160 samples) of the stream. For each grid frame ``X`` (the
  Hann-windowed FFT of the raw samples) two mel projections are kept: ``A = M |X|^2`` and ``B = M
  Re(X conj W)``, where ``W`` is the FFT of the analysis window and ``M`` the mel filterbank. A
  window's frame is ``g_peak (X - mu W)``, so its mel power is exactly ``g_peak^2 (A - 2 mu B +
  mu^2 C)`` with ``C = M |W|^2``.

Per hop this costs the FFTs of 50 new grid frames instead of 149, and the per-window work is a
few arrays of 1 200 blocks and 149 x 40 mel values. Frames that cross the end of the trimmed
audio (at most two; the rest of the window is zero padding) are computed directly.

**Exactness.** The expansion can lose precision when the DC term dominates a frame
(``mu^2 C`` close to ``A``: a large DC offset under near-silence). Every window checks a bound
on that float64 rounding error (``|B| <= sqrt(A C)`` by Cauchy-Schwarz, the mel weights being
non-negative) and falls back to :func:`~stream_ser.features.window_features` when the error could
reach 1e-5 of a mel value (4e-5 dB). Windows that do not start on the grid (a stream's final
partial hop, a hop that is not a multiple of 160 samples) and configs outside the method's
assumptions (centred STFT, power other than 2) use the direct recipe too. The per-window recipe
rounds the DC-removed, normalised samples to float32 (as librosa does); this path keeps float64,
so the two differ by that rounding in bins far below a window's peak (up to ~1e-2 dB 90-100 dB
down, after a DC step), and agree to 1e-3 dB elsewhere.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from stream_ser.features import FeatureConfig, mel_basis, stft_window, window_features
from stream_ser.ring_buffer import RingBuffer

#: Largest relative float64 rounding error of a mel value the expansion may carry (4e-5 dB).
MAX_RELATIVE_ERROR = 1e-5
#: Bound on the relative rounding error of ``A``, ``B`` and ``C`` (sums of up to 257 float64
#: products and a 257-point FFT: a few hundred ulps, with a safety factor).
_ROUNDING = 1e-13


class _Rows:
    """Rows addressed by absolute index, the oldest dropped as new ones are appended."""

    def __init__(self, width: int, dtype: type, keep: int) -> None:
        self.keep = keep
        self.buf = np.empty((2 * keep, width), dtype=dtype)
        self.base = 0  # absolute index of buf[0]
        self.n = 0

    @property
    def end(self) -> int:
        """One past the newest row's absolute index."""
        return self.base + self.n

    def reset(self, base: int) -> None:
        """Forget every row; the next appended row gets index ``base``."""
        self.base, self.n = base, 0

    def append(self, rows: np.ndarray) -> None:
        k = len(rows)
        if self.n + k > len(self.buf):
            drop = max(0, self.n - self.keep)
            self.buf[: self.n - drop] = self.buf[drop : self.n]
            self.base += drop
            self.n -= drop
            if self.n + k > len(self.buf):
                self.buf = np.concatenate([self.buf[: self.n], np.empty((self.n + k, self.buf.shape[1]), self.buf.dtype)])
        self.buf[self.n : self.n + k] = rows
        self.n += k

    def get(self, a: int, b: int) -> np.ndarray:
        """Rows ``a`` to ``b`` (absolute, ``base <= a <= b <= end``), a view."""
        return self.buf[a - self.base : b - self.base]


def sliding_supported(config: FeatureConfig) -> bool:
    """Whether :class:`SlidingFeatures` can use its shared statistics for ``config``: an
    uncentred power STFT and level frames that split into whole blocks (the shipped recipe)."""
    half = config.level_frame_length // 2
    return (
        not config.center
        and config.power == 2.0
        and config.level_frame_length % 2 == 0
        and config.win_length <= config.n_fft
        and config.window_samples >= config.level_frame_length
    ) and config.level_frame_length % math.gcd(config.level_hop_length, half) == 0


class SlidingFeatures:
    """:func:`~stream_ser.features.window_features` of the windows a stream's engine scores, with
    the work shared between overlapping windows (see the module docstring).

    Args:
        config: The feature recipe.
        ring: The engine's sample ring buffer (mono float32 at ``config.sample_rate_hz``); it
            must keep at least ``window_samples`` samples plus one hop, which the engine's does.

    The owner calls :meth:`features` for window ends in increasing order, at least once per
    ``ring.capacity - window_samples`` new samples (the engine: every hop); a longer gap only
    costs one direct window while the statistics restart.
    """

    def __init__(self, config: FeatureConfig, ring: RingBuffer) -> None:
        self.config = config
        self.ring = ring
        self.enabled = sliding_supported(config)
        self.fallbacks = 0  # aligned windows the error bound sent to the direct recipe
        self._window_buf = np.empty((config.window_samples, 1), dtype=np.float32)
        if not self.enabled:
            return
        c = config
        self.block = math.gcd(c.level_hop_length, c.level_frame_length // 2)
        self.grid = math.gcd(c.level_hop_length, c.hop_length)
        self.step = self.block * self.grid // math.gcd(self.block, self.grid)
        keep = ring.capacity + c.n_fft
        self._blocks = _Rows(4, np.float64, keep // self.block + 2)  # sum, sum of squares, max, min
        self._frames = _Rows(2 * c.n_mels, np.float64, keep // self.grid + 2)  # A | B
        self._mel64 = np.asarray(mel_basis(c), dtype=np.float64)
        self._mel64_t = np.ascontiguousarray(self._mel64.T)
        self._work_arrays: tuple[np.ndarray, ...] | None = None
        self._index: dict[int, tuple[np.ndarray, ...]] = {}
        self._win = stft_window(c)
        w = np.fft.rfft(self._win)
        self._w_re, self._w_im = w.real.copy(), w.imag.copy()
        self._c = self._mel64 @ (w.real**2 + w.imag**2)
        self._sqrt_c = np.sqrt(self._c)
        self._lh = c.level_hop_length // self.block  # level hop, in blocks
        self._lf = c.level_frame_length // self.block  # level frame, in blocks
        self._gate_ms = 10.0 ** (c.gate_dbfs / 10.0)

    def features(self, end: int) -> np.ndarray | None:
        """The recipe for the window ending at stream sample ``end``.

        Equal to ``window_features(cut_window(stream, end, window_samples), config)`` to within
        float rounding (the same speech gate and trim decisions).

        Args:
            end: Absolute end sample (exclusive); the ring must hold the window.

        Returns:
            float32 log-mel ``(n_mels, n_frames)`` in dB, or None when the window is not speech.
        """
        c = self.config
        ws = max(0, end - c.window_samples)
        n = end - ws
        if not self.enabled or ws % self.step or n % self.block or n < c.level_frame_length:
            return self._direct(end)
        self._advance(ws, end)
        got = self._aligned(ws, end)
        if got is False:
            self.fallbacks += 1
            return self._direct(end)
        return got

    def _direct(self, end: int) -> np.ndarray | None:
        n = min(end, self.config.window_samples)
        window = self.ring.read(end, n, self._window_buf[:n])[:, 0]
        return window_features(window, self.config)

    def _advance(self, ws: int, end: int) -> None:
        """Compute block statistics and grid frames up to ``end`` (those from ``ws`` on)."""
        c, b, g = self.config, self.block, self.grid
        lo, hi = max(self._blocks.end, ws // b), end // b
        if lo != self._blocks.end:
            self._blocks.reset(lo)
        if hi > lo:
            seg = self.ring.read(hi * b, (hi - lo) * b)[:, 0].reshape(hi - lo, b)
            seg64 = seg.astype(np.float64)
            stats = np.empty((hi - lo, 4))
            seg64.sum(axis=1, out=stats[:, 0])
            stats[:, 1] = np.einsum("ij,ij->i", seg64, seg64)
            seg.max(axis=1, out=stats[:, 2])
            seg.min(axis=1, out=stats[:, 3])
            self._blocks.append(stats)
        lo, hi = max(self._frames.end, ws // g), (end - c.n_fft) // g + 1
        if lo != self._frames.end:
            self._frames.reset(lo)
        if hi > lo:
            k = hi - lo
            x = self.ring.read((hi - 1) * g + c.n_fft, (k - 1) * g + c.n_fft)[:, 0]
            # preallocated work arrays: fresh ones of this size cost more in page faults than the FFT
            frames, spec, pc, tmp = self._work(k)
            np.multiply(np.lib.stride_tricks.as_strided(x, (k, c.n_fft), (g * x.strides[0], x.strides[0])),
                        self._win, out=frames)
            np.fft.rfft(frames, axis=-1, out=spec)
            re, im = spec.real, spec.imag
            np.multiply(re, re, out=pc[:k])
            pc[:k] += np.multiply(im, im, out=tmp)  # |X|^2
            np.multiply(re, self._w_re, out=pc[k:])
            pc[k:] += np.multiply(im, self._w_im, out=tmp)  # Re(X conj W)
            self._frames.append((pc @ self._mel64_t).reshape(2, k, c.n_mels).transpose(1, 0, 2).reshape(k, 2 * c.n_mels))

    def _work(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Work arrays for ``k`` grid frames: frames ``(k, n_fft)``, spectrum complex128, power
        and cross term stacked ``(2k, bins)``, and a temporary ``(k, bins)``."""
        if self._work_arrays is None or len(self._work_arrays[0]) != k:
            bins = 1 + self.config.n_fft // 2
            self._work_arrays = (np.empty((k, self.config.n_fft)), np.empty((k, bins), np.complex128),
                                 np.empty((2 * k, bins)), np.empty((k, bins)))
        return self._work_arrays

    def _level_index(self, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Block ranges of a window of ``nb`` blocks: gate frame starts and ends, then centred
        trim frame starts and ends (clipped to the window), cached per window length."""
        got = self._index.get(nb)
        if got is None:
            lf, lh = self._lf, self._lh
            gate = np.arange(0, nb - lf + 1, lh)
            centre = np.arange(0, nb // lh + 1) * lh
            got = self._index[nb] = (gate, gate + lf, np.clip(centre - lf // 2, 0, nb), np.clip(centre + lf // 2, 0, nb))
        return got

    def _aligned(self, ws: int, end: int) -> np.ndarray | None | bool:
        """The window's log-mel from the shared statistics; None: not speech; False: the error
        bound failed (use the direct recipe)."""
        c, b = self.config, self.block
        n = end - ws
        nb = n // b
        st = self._blocks.get(ws // b, end // b)
        c1 = np.concatenate(([0.0], np.cumsum(st[:, 0])))
        c2 = np.concatenate(([0.0], np.cumsum(st[:, 1])))
        # the window mean exactly as the direct recipe takes it (numpy's pairwise float64 sum of
        # the float32 samples, rounded to float32): a mean one float32 step away shifts near-DC
        # frames by up to 4e-3 dB, more than the tolerance
        window = self.ring.read(end, n, self._window_buf[:n])[:, 0]
        mu32 = np.float32(window.mean(dtype=np.float64))
        mu = float(mu32)
        L = c.level_frame_length
        a, e, ta, te = self._level_index(nb)
        # speech gate: uncentred level frames on the DC-removed samples
        ms = (c2[e] - c2[a] - 2.0 * mu * (c1[e] - c1[a])) / L + mu * mu
        loud = np.count_nonzero(ms >= self._gate_ms) * c.level_hop_length / c.sample_rate_hz
        if loud < c.gate_min_speech_s:
            return None
        # peak normalisation: the peak of the float32 DC-removed samples
        peak = max(float(np.float32(st[:, 2].max()) - mu32), float(mu32 - np.float32(st[:, 3].min())))
        g32 = np.float32(10.0 ** (c.peak_dbfs / 20.0) / peak)
        gain2 = float(g32) ** 2
        # silence trim: centred level frames (zero padding outside the window), after the gain
        a, e = ta, te
        ss = c2[e] - c2[a] - 2.0 * mu * (c1[e] - c1[a]) + (e - a) * b * mu * mu
        db = 10.0 * np.log10(np.maximum(1e-10, ss * gain2 / L))
        kept = np.flatnonzero(db > c.trim_dbfs)
        if kept.size == 0:
            start, m = 0, 0
        else:
            start = int(kept[0]) * c.level_hop_length
            m = min(n, (int(kept[-1]) + 1) * c.level_hop_length) - start
        # log-mel: whole frames from the grid, frames crossing the trim end directly, then zeros
        hop, nfft = c.hop_length, c.n_fft
        mel = np.zeros((c.n_frames, c.n_mels))
        n_full = 0 if m < nfft else min(c.n_frames, (m - nfft) // hop + 1)
        if n_full:
            q0, stride = (ws + start) // self.grid, hop // self.grid
            rows = self._frames.get(q0, q0 + (n_full - 1) * stride + 1)[::stride]
            big_a, big_b = rows[:, : c.n_mels], rows[:, c.n_mels :]
            full = big_a - 2.0 * mu * big_b + (mu * mu) * self._c
            bound = _ROUNDING * (np.sqrt(big_a) + abs(mu) * self._sqrt_c) ** 2
            if np.any(bound > MAX_RELATIVE_ERROR * np.maximum(full, c.amin / gain2)):
                return False
            mel[:n_full] = full * gain2
        for k in range(n_full, c.n_frames):
            if k * hop >= m:
                break
            p = ws + start + k * hop
            seg = self.ring.read(ws + start + m, ws + start + m - p)[:, 0]
            frame = np.zeros(nfft, dtype=np.float32)
            frame[: seg.size] = (seg - mu32) * g32
            spec = np.fft.rfft(frame * self._win)
            mel[k] = self._mel64 @ (spec.real**2 + spec.imag**2)
        np.log10(np.maximum(c.amin, mel, out=mel), out=mel)
        mel *= 10.0
        return mel.T.astype(np.float32, order="C")


ROOT = Path(__file__).resolve().parents[1]


def streams() -> list[tuple[str, np.ndarray]]:
    """The fixture clips joined by pauses, and 2 minutes of the benchmark recording if built."""
    import soundfile as sf

    from stream_ser.audio import load_audio

    pause = np.zeros(8000, np.float32)
    clips = sorted((ROOT / "tests" / "fixtures").glob("*.flac"))
    out = [("fixture clips", np.concatenate([a for c in clips for a in (load_audio(c), pause)]))]
    rec = ROOT / ".cache" / "bench" / "speech-10min-seed0.wav"
    if rec.is_file():
        out.append((rec.name + " (first 2 min)", sf.read(rec, dtype="float32", frames=16000 * 120)[0]))
    return out


def main() -> None:
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import one_blas_thread

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = FeatureConfig()
    with one_blas_thread():
        for name, x in streams():
            ends = window_ends(x.size, cfg.hop_samples)
            ring = RingBuffer(cfg.window_samples + cfg.hop_samples)
            sliding, pos, worst, speech = SlidingFeatures(cfg, ring), 0, 0.0, 0
            for end in ends:  # agreement
                ring.write(x[pos:end])
                pos = end
                got, want = sliding.features(end), window_features(cut_window(x, end, cfg.window_samples), cfg)
                if (got is None) != (want is None):
                    raise SystemExit(f"{name}: speech decisions differ at sample {end}")
                if got is not None:
                    speech += 1
                    worst = max(worst, float(np.max(np.abs(got - want))))
            print(f"{name}: {len(ends)} hops, {speech} speech windows, largest log-mel difference {worst:.1e} dB, "
                  f"{sliding.fallbacks} windows sent to the per-window recipe by the rounding bound")
            for _ in range(args.repeats):  # time per hop, alternating the two
                ring = RingBuffer(cfg.window_samples + cfg.hop_samples)
                sliding, pos = SlidingFeatures(cfg, ring), 0
                t0 = time.perf_counter()
                for end in ends:
                    ring.write(x[pos:end])
                    pos = end
                    sliding.features(end)
                t_sliding = (time.perf_counter() - t0) / len(ends) * 1e3
                t0 = time.perf_counter()
                for end in ends:
                    window_features(cut_window(x, end, cfg.window_samples), cfg)
                t_direct = (time.perf_counter() - t0) / len(ends) * 1e3
                print(f"  per hop: shared frames {t_sliding:.3f} ms, per-window recipe {t_direct:.3f} ms")


if __name__ == "__main__":
    main()
