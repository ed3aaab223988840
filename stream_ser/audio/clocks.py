"""Device clocks: how fast each device really runs, and keeping several devices on one clock.

Position in the pipeline: inside :class:`~stream_ser.audio.multi.MultiDeviceSource`, on the
consumer's thread, between reading each device's native frames and resampling them. Each device's
capture callbacks give ``(time, frames delivered)`` points; :class:`ClockFit` estimates the
device's true rate from them, and :class:`ClockAligner` pads or trims a device by its start offset
and drops or repeats single frames to follow the first (reference) device's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The drift estimate is used once this much audio (s) has been timed.
MIN_CLOCK_FIT_S = 2.0
#: Callbacks of a device's first second are not timed: at the start a stream delivers what was
#: buffered between opening and starting it (PulseAudio does), faster than real time.
CLOCK_WARMUP_S = 1.0
#: Least timing noise assumed (s): a rate measured over ``T`` seconds is not trusted to better
#: than this over ``T``.
MIN_TIMING_NOISE_S = 0.001
#: The start offset is re-estimated from the envelopes only when the estimate is better than this (s).
MAX_OFFSET_ERROR_S = 0.002
#: A drift is corrected once it exceeds this many times its uncertainty (below it is noise).
DRIFT_SIGNIFICANCE = 2.0
#: Largest share of a block's frames dropped or repeated at once (2 %: catches up with any
#: realistic drift, a few hundred ppm, and with a 0.5 % test drift, without audible jumps).
MAX_CORRECTION_FRACTION = 0.02


class ClockFit:
    """A device's clock against the monotonic clock, from ``(time_s, frames delivered)`` points.

    A callback can run late (the scheduler, PulseAudio delivering in bursts, another thread
    holding the GIL) but never early: the delivery delays are one-sided. So the device's true
    progress is the *upper envelope* of the points (the earliest deliveries), not a least-squares
    line through them, which late bursts bias by thousands of ppm on a busy machine. The estimate
    is the convex-hull skew estimator of Moon, Skelly and Towsley ("Estimation and removal of
    clock skew from network delay measurements", IEEE INFOCOM 1999): the line that lies above
    every point and is closest to them overall, which is the upper hull's edge above the points'
    mean time. The hull is kept incrementally (Andrew's monotone chain), a few dozen vertices.
    Points of the first :data:`CLOCK_WARMUP_S` are skipped (start-up bursts). How late the
    callbacks run behind the envelope is tracked too: it is the timing noise that limits the
    rate's accuracy over a short span (a PulseAudio server lagging by milliseconds under load).

    Thread: the consumer's (points are read from
    :attr:`~stream_ser.audio.capture.InputCapture.clock_point`).
    """

    def __init__(self) -> None:
        self.n = 0
        self.span_s = 0.0
        self._first_s: float | None = None
        self._t0: float | None = None
        self._sum_t = 0.0
        self._late_sum_s = 0.0
        self._late_n = 0
        self._hull: list[tuple[float, float]] = []

    @property
    def lateness_s(self) -> float:
        """Mean delay (s) of the callbacks behind the envelope, as they arrived."""
        return self._late_sum_s / self._late_n if self._late_n else 0.0

    def add(self, time_s: float, frames: float) -> None:
        """Add one point: at ``time_s`` (s, monotonic) the device had delivered ``frames``."""
        if self._first_s is None:
            self._first_s = time_s
        if time_s - self._first_s < CLOCK_WARMUP_S:
            return
        if self._t0 is None:
            self._t0 = time_s
        t = time_s - self._t0
        hull = self._hull
        if hull and t <= hull[-1][0]:
            return  # times must increase (a repeated snapshot)
        if len(hull) >= 2:
            (t1, f1), (t2, f2) = hull[-2], hull[-1]
            slope = (f2 - f1) / (t2 - t1)
            if slope > 0:
                self._late_sum_s += max(0.0, f2 + slope * (t - t2) - frames) / slope
                self._late_n += 1
        self.n += 1
        self._sum_t += t
        self.span_s = t
        while len(hull) >= 2:
            (t1, f1), (t2, f2) = hull[-2], hull[-1]
            if (t2 - t1) * (frames - f1) - (f2 - f1) * (t - t1) >= 0:  # hull[-1] is not above the chord
                hull.pop()
            else:
                break
        hull.append((t, float(frames)))

    def _edge(self) -> int | None:
        """Index ``i`` of the hull edge ``(hull[i], hull[i + 1])`` above the mean time."""
        hull = self._hull
        if self.n < 10 or self.span_s < MIN_CLOCK_FIT_S or len(hull) < 2:
            return None
        mean_t = self._sum_t / self.n
        i = 0
        while i < len(hull) - 2 and hull[i + 1][0] < mean_t:
            i += 1
        return i

    def _slope(self, i: int) -> float:
        (t1, f1), (t2, f2) = self._hull[i], self._hull[i + 1]
        return (f2 - f1) / (t2 - t1)

    def rate(self) -> tuple[float, float] | None:
        """``(frames per second, uncertainty)``, or None before :data:`MIN_CLOCK_FIT_S` of points.

        The uncertainty is the larger of half the spread of the slopes of the neighbouring hull
        edges (the envelope's curvature around the chosen edge) and the timing noise (the mean
        lateness, at least :data:`MIN_TIMING_NOISE_S`) over the span.
        """
        i = self._edge()
        if i is None:
            return None
        slope = self._slope(i)
        neighbours = [self._slope(j) for j in (i - 1, i + 1) if 0 <= j < len(self._hull) - 1]
        spread = max((abs(x - slope) for x in neighbours), default=0.0)
        noise = slope * max(self.lateness_s, MIN_TIMING_NOISE_S) / max(self.span_s, 1e-9)
        return slope, max(spread / 2.0, noise)

    def frame_zero_time_s(self) -> tuple[float, float] | None:
        """When (s, monotonic) the envelope says frame 0 was delivered, and the error (s) the
        rate's uncertainty gives that extrapolation; None before :data:`MIN_CLOCK_FIT_S`."""
        i = self._edge()
        rate = self.rate()
        if i is None or rate is None or self._t0 is None or rate[0] <= 0:
            return None
        slope = self._slope(i)
        t1, f1 = self._hull[i]
        back_s = f1 / slope  # from frame 0 to the edge's start
        return self._t0 + t1 - back_s, back_s * rate[1] / rate[0]


@dataclass(frozen=True)
class DeviceClock:
    """The clock of one device of a :class:`~stream_ser.audio.multi.MultiDeviceSource`, as measured.

    Attributes:
        device: ``mic:<device name>``.
        nominal_rate_hz: The rate the stream was opened at (Hz).
        measured_rate_hz: Frames delivered per second of the monotonic clock (the slope of the
            callbacks' upper envelope, :meth:`ClockFit.rate`), or None before
            :data:`MIN_CLOCK_FIT_S` of audio.
        drift_ppm: How much faster (+) or slower (-) the device's clock runs than the first
            device's, in parts per million (0 for the first device); None when not measured.
        drift_uncertainty_ppm: The uncertainty of ``drift_ppm`` (timing noise over the time
            measured; see :class:`ClockFit`), or None.
        corrected_frames: Native frames dropped (+) or repeated (-) so far to keep this device on
            the first device's clock.
        start_offset_s: When the device's first frame was captured, relative to the first
            device's (s); positive: it started later and was padded with that much silence.
    """

    device: str
    nominal_rate_hz: int
    measured_rate_hz: float | None
    drift_ppm: float | None
    drift_uncertainty_ppm: float | None
    corrected_frames: int
    start_offset_s: float


class ClockAligner:
    """Keeps one device's frames on the first (reference) device's clock.

    Two corrections, both at the device's native rate before resampling:

    1. **Start offset**: the devices' streams start at slightly different times; the later one
       is padded with silence (the earlier one trimmed) by the difference of their first frames'
       capture times (callback time minus the frames delivered at the nominal rate). Once the
       clock envelopes below are accurate enough (:data:`MAX_OFFSET_ERROR_S`), the offset is
       re-estimated from them (one late first callback no longer matters) and the difference is
       caught up like the drift.
    2. **Drift**: two devices' crystals differ by tens to hundreds of ppm, so their streams slide
       apart by milliseconds per minute. Each device's actual rate is measured against the
       monotonic clock (:class:`ClockFit`); once the relative drift ``d`` is significant
       (:data:`DRIFT_SIGNIFICANCE` times its uncertainty), ``k * d / (1 + d)`` frames are dropped (fast
       device) or repeated (slow device) after ``k`` frames, spread evenly over the blocks and at
       most :data:`MAX_CORRECTION_FRACTION` of a block at a time: the drop/duplicate scheme of
       adaptive sample-rate conversion, which at realistic drifts (one frame in thousands)
       leaves the audio's spectrum unchanged for the model. The estimate keeps improving, and
       the total correction is always recomputed from the latest estimate, so early noise does
       not accumulate.

    Args:
        nominal_rate_hz: The device's nominal rate (Hz).

    Thread: the consumer's.
    """

    def __init__(self, nominal_rate_hz: int) -> None:
        self.nominal_rate_hz = nominal_rate_hz
        self.fit = ClockFit()
        self.start_offset_s = 0.0
        self.drift: float | None = None
        self.drift_sigma: float | None = None
        self.applied_drift = 0.0
        self.corrected_frames = 0
        self._initial_offset_s = 0.0
        self._offset_frames = 0.0  # frames to remove for the refined start offset (beyond the first)
        self._pad = 0
        self._skip = 0
        self._consumed = 0

    def set_start_offset(self, offset_s: float) -> None:
        """The device's first frame came ``offset_s`` after the reference's (pad or trim once)."""
        self.start_offset_s = self._initial_offset_s = offset_s
        frames = int(round(abs(offset_s) * self.nominal_rate_hz))
        if offset_s > 0:
            self._pad = frames
        else:
            self._skip = frames

    def update_drift(self, reference: "ClockAligner") -> None:
        """Re-estimate the start offset and the drift against the reference device's fit."""
        mine, ref = self.fit.rate(), reference.fit.rate()
        if mine is None or ref is None:
            return
        t0_mine, t0_ref = self.fit.frame_zero_time_s(), reference.fit.frame_zero_time_s()
        if t0_mine is not None and t0_ref is not None and t0_mine[1] + t0_ref[1] < MAX_OFFSET_ERROR_S:
            self.start_offset_s = t0_mine[0] - t0_ref[0]
            self._offset_frames = -(self.start_offset_s - self._initial_offset_s) * self.nominal_rate_hz
        ratio = (mine[0] / self.nominal_rate_hz) / (ref[0] / reference.nominal_rate_hz)
        self.drift = ratio - 1.0
        self.drift_sigma = ratio * math.hypot(mine[1] / mine[0], ref[1] / ref[0])
        if abs(self.drift) > DRIFT_SIGNIFICANCE * self.drift_sigma or self.applied_drift != 0.0:
            self.applied_drift = self.drift

    def adjust(self, frames: np.ndarray) -> np.ndarray:
        """Apply the start offset and the drift correction to the next native frames.

        Args:
            frames: float32 ``(n, 1)`` native frames, in stream order.

        Returns:
            float32 ``(m, 1)`` frames on the reference clock (m close to n).
        """
        if self._pad:
            frames = np.concatenate([np.zeros((self._pad, frames.shape[1]), np.float32), frames])
            self._pad = 0
        if self._skip:
            cut = min(self._skip, frames.shape[0])
            frames = frames[cut:]
            self._skip -= cut
        n = frames.shape[0]
        if n == 0:
            return frames
        self._consumed += n
        d = self.applied_drift
        target = int(round(self._offset_frames + self._consumed * d / (1.0 + d)))
        want = target - self.corrected_frames
        limit = max(1, int(n * MAX_CORRECTION_FRACTION))
        want = max(-limit, min(limit, want))
        if want > 0:
            where = (np.arange(want) * n) // want + n // (2 * want)
            frames = np.delete(frames, np.minimum(where, n - 1), axis=0)
        elif want < 0:
            where = (np.arange(-want) * n) // -want + n // (-2 * want)
            where = np.minimum(where, n - 1)
            frames = np.insert(frames, where, frames[where], axis=0)
        self.corrected_frames += want
        return frames
