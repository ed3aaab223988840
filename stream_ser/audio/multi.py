"""Several input devices at once, as the channels of one stream on the first device's clock.

Position in the pipeline: the first stage of ``listen --device A --device B`` (a call: the
microphone and a monitor of what the computer plays). Each device is an
:class:`~stream_ser.audio.capture.InputCapture` (own stream, callback and ring buffer); the
consumer thread reads them all, aligns them on the first device's clock
(:class:`~stream_ser.audio.clocks.ClockAligner`: start offset, then drift measured in ppm and
corrected), resamples each to the model's rate and yields the frames every device has delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .capture import DEFAULT_BLOCK_S, InputCapture
from .channels import MAX_CHANNELS, select_channels
from .clocks import ClockAligner, DeviceClock
from .devices import DeviceInput, InputDevice
from .resample import resampler
from .source import AudioSourceError, SourceStats


class MultiDeviceSource:
    """Several input devices at once, as the channels of one stream on one clock (a
    :class:`~stream_ser.audio.source.Source`).

    ``listen --device "Microphone" --device "Monitor of Speakers"``: device *k* becomes channel
    *k* (its own channels averaged by opening it with one channel). The stream clock is the first
    device's: channel *k*'s sample *n* was captured at (about) the same moment as channel 1's
    sample *n*.

    Args:
        devices: Device specs (index, name or substring, or
            :class:`~stream_ser.audio.devices.InputDevice`), 2 to
            :data:`~stream_ser.audio.channels.MAX_CHANNELS` of them.
        sample_rate_hz: Output rate (the model's, 16 kHz).
        block_s: Callback block duration (s).
        capacity_s: Ring buffer capacity (s) per device.
        stall_timeout_s: A device that delivers nothing for this long ends the session with an
            error.
        stream_factory: Makes each device's stream instead of ``sounddevice.InputStream`` (see
            :class:`~stream_ser.audio.devices.DeviceInput`; tests inject stand-in streams).
        correct_drift: Measure and correct clock drift (True) or only measure it.
        clock: Monotonic clock (s).

    Attributes:
        name: The devices' names (``mic:<name>``) joined by `` + ``.
        devices: The per-device captures (:class:`~stream_ser.audio.capture.InputCapture`).
        channel_numbers: ``(1, 2, ...)``, one per device.
        is_device: True.
        failure: Why capture ended on its own (a device vanished or stalled), or None.

    Raises:
        AudioSourceError: A device cannot be found or opened (the devices opened before it are
            closed again), or the same device is given twice.
        ValueError: Fewer than 2 or more than :data:`~stream_ser.audio.channels.MAX_CHANNELS` devices.

    Threads: each device's PortAudio callback thread only copies, counts and time-stamps (see
    :class:`~stream_ser.audio.capture.InputCapture`); one consumer thread runs :meth:`frames`
    (alignment, drift correction, resampling); :meth:`stop` may be called from any thread or a
    signal handler.
    """

    is_device = True

    def __init__(
        self,
        devices: Sequence[str | int | InputDevice],
        sample_rate_hz: int = 16000,
        block_s: float = DEFAULT_BLOCK_S,
        capacity_s: float = 10.0,
        stall_timeout_s: float = 5.0,
        stream_factory: Callable[..., Any] | None = None,
        correct_drift: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 2 <= len(devices) <= MAX_CHANNELS:
            raise ValueError(f"give 2 to {MAX_CHANNELS} devices, got {len(devices)}")
        self.sample_rate_hz = sample_rate_hz
        self.correct_drift = correct_drift
        self.failure: str | None = None
        self._clock = clock
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self.devices: list[InputCapture] = []
        try:
            for spec in devices:
                self.devices.append(InputCapture(DeviceInput.find(spec, stream_factory), 1, block_s, capacity_s,
                                                 stall_timeout_s, wake=self._wake, clock=clock))
        except BaseException:
            for d in self.devices:
                d.close()
            raise
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            for d in self.devices:
                d.close()
            raise AudioSourceError(f"the same device is given twice ({', '.join(names)})")
        self.name = " + ".join(names)
        self.channel_numbers = tuple(range(1, len(self.devices) + 1))
        self._aligners = [ClockAligner(d.native_rate_hz) for d in self.devices]

    @property
    def device_sample_rate_hz(self) -> int:
        """The first device's native rate (Hz); see :attr:`native_rates_hz` for all."""
        return self.devices[0].native_rate_hz

    @property
    def native_rates_hz(self) -> tuple[int, ...]:
        """Every device's native rate (Hz), in channel order."""
        return tuple(d.native_rate_hz for d in self.devices)

    @property
    def channel_descriptions(self) -> tuple[str, ...]:
        """The device behind each channel (``mic:<name>``)."""
        return tuple(d.name for d in self.devices)

    @property
    def stats(self) -> SourceStats:
        """The counters so far: overflows, flagged callbacks and frames lost (replaced by silence
        so that the channels stay aligned) summed over the devices; seconds lost, the most of any
        one device."""
        devs = self.devices
        return SourceStats(sum(d.overflows for d in devs), sum(d.status_flags for d in devs),
                           sum(d.dropped_frames for d in devs), max(d.dropped_s for d in devs))

    def clock_report(self) -> tuple[DeviceClock, ...]:
        """Each device's measured clock: rate, drift against the first device, corrections.

        Thread: the consumer's (or after :meth:`frames` has ended).
        """
        out = []
        for i, (d, a) in enumerate(zip(self.devices, self._aligners)):
            rate = a.fit.rate()
            if i == 0:
                drift, sigma = (0.0, 0.0) if rate is not None else (None, None)
            else:
                drift = None if a.drift is None else a.drift * 1e6
                sigma = None if a.drift_sigma is None else a.drift_sigma * 1e6
            out.append(DeviceClock(d.name, d.native_rate_hz, None if rate is None else rate[0], drift, sigma,
                                   a.corrected_frames, a.start_offset_s))
        return tuple(out)

    def start(self) -> None:
        """Start every device's capture (one after the other, within milliseconds).

        Raises:
            AudioSourceError: If a device cannot be started (the others are closed).
        """
        try:
            for d in self.devices:
                d.start()
        except AudioSourceError:
            self.close()
            raise

    def stop(self) -> None:
        """Ask capture to stop (any thread, signal-handler safe: it only sets events)."""
        self._stop_requested.set()
        for d in self.devices:
            d.request_stop()

    def close(self) -> None:
        """Close every device's stream (idempotent; consumer thread)."""
        errors = []
        for d in self.devices:
            try:
                d.close()
            except Exception as exc:  # PortAudio errors on a vanished device
                errors.append(exc)
        if errors:
            raise errors[0]

    def wake_at(self, samples: int) -> None:
        """Nothing held back: the devices' blocks are aligned as they arrive."""

    def __enter__(self) -> "MultiDeviceSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_devices(self) -> InputCapture | None:
        """The first device that stalled or vanished (its :attr:`failure` set), or None."""
        for d in self.devices:
            if not d.fail_if_stalled() and d.ended and not d.closed:  # vanished: its stream ended on its own
                d.end_failure()
            if d.failure is not None:
                return d
        return None

    def frames(self, poll_s: float = 0.1) -> Iterator[np.ndarray]:
        """The devices' audio as float32 ``(n, n_devices)`` frames at ``sample_rate_hz``, aligned
        on the first device's clock, until :meth:`stop` or a device fails.

        Args:
            poll_s: Longest wait (s) for new frames before checking for the end again.

        Raises:
            AudioSourceError: After the last aligned frames, if a device vanished or stalled
                (:attr:`failure` says which); capture of every device is then stopped.
        """
        devs, aligners = self.devices, self._aligners
        resamplers = [resampler(d.native_rate_hz, self.sample_rate_hz, 1) for d in devs]
        pending: list[list[np.ndarray]] = [[] for _ in devs]
        pending_n = [0] * len(devs)
        last_points: list[tuple[float, int] | None] = [None] * len(devs)
        first_frame_s: list[float | None] = [None] * len(devs)
        aligned = False
        failed: InputCapture | None = None
        for d in devs:
            d.reset_stall_timer()

        def emit_common() -> np.ndarray | None:
            n = min(pending_n)
            if n == 0:
                return None
            columns = []
            for i in range(len(devs)):
                joined = np.concatenate(pending[i]) if len(pending[i]) > 1 else pending[i][0]
                columns.append(joined[:n, 0])
                rest = joined[n:]
                pending[i] = [rest] if rest.shape[0] else []
                pending_n[i] -= n
            return np.ascontiguousarray(np.stack(columns, axis=1))

        def hold(i: int, out: np.ndarray) -> None:
            if out.shape[0]:
                pending[i].append(out)
                pending_n[i] += out.shape[0]

        while True:
            if self._stop_requested.is_set():
                self.close()
            elif failed is None:
                failed = self._check_devices()
                if failed is not None:
                    self.close()  # one device gone ends the session: stop the others too
            ended = any(d.ended for d in devs)
            self._wake.wait(poll_s)
            self._wake.clear()
            for i, d in enumerate(devs):
                point = d.clock_point
                if point is not None and point is not last_points[i]:
                    last_points[i] = point
                    d.reset_stall_timer()
                    aligners[i].fit.add(point[0], point[1])
                    if first_frame_s[i] is None:
                        first_frame_s[i] = point[0] - point[1] / d.native_rate_hz
            if not aligned:
                if all(t is not None for t in first_frame_s):
                    t_ref = first_frame_s[0]
                    for i in range(1, len(devs)):
                        aligners[i].set_start_offset(first_frame_s[i] - t_ref)  # type: ignore[operator]
                    aligned = True
                elif not ended:
                    continue
            got = False
            for i, d in enumerate(devs):
                native, lost = d.read()
                if native is None:
                    continue
                x = select_channels(native, (0,))
                if lost:  # keep the channels aligned: audio the consumer lost becomes silence
                    x = np.concatenate([np.zeros((lost, 1), np.float32), x])
                if not x.shape[0]:
                    continue
                got = True
                if i > 0:
                    aligners[i].update_drift(aligners[0])
                    if not self.correct_drift:
                        aligners[i].applied_drift = 0.0
                    x = aligners[i].adjust(x)
                hold(i, resamplers[i](x, False))
            block = emit_common()
            if block is not None:
                yield block
            elif ended and not got:
                for i in range(len(devs)):
                    hold(i, resamplers[i](np.zeros((0, 1), np.float32), True))
                block = emit_common()
                if block is not None:
                    yield block
                if failed is not None:
                    self.failure = failed.failure
                elif not self._stop_requested.is_set():
                    self.failure = f"{self.name}: capture ended unexpectedly"
                self.close()
                if self.failure is not None:
                    raise AudioSourceError(self.failure)
                return
