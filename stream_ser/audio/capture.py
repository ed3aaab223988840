"""Live capture: an input's stream filling a ring buffer, read and resampled by the consumer.

Position in the pipeline: the first stage of ``listen``. What is captured is a
:class:`CaptureInput`: an input device (:class:`~stream_ser.audio.devices.DeviceInput`:
microphones, monitors of what the computer plays, loopback devices) or a recorded file replayed at
real-time pace through the same path (:class:`~stream_ser.audio.replay.FileReplay`, ``listen
--input``). Two layers:

* :class:`InputCapture`, one opened input: its stream's callback runs on PortAudio's thread (or
  the replay's) and only copies the native-rate frames into a preallocated
  :class:`~stream_ser.ring_buffer.RingBuffer`, counts status flags and notes ``(callback time,
  frames delivered)``; the consumer reads new native frames, and learns whether the input ended,
  stalled or vanished. :class:`~stream_ser.audio.multi.MultiDeviceSource` reads several of them.
* :class:`CaptureSource`, the :class:`~stream_ser.audio.source.Source` of one input: on the
  consumer's thread it reads the new frames, down-mixes or selects the scored channels and
  resamples them to the model's rate with soxr's streaming resampler.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..ring_buffer import OverrunError, RingBuffer
from .channels import ChannelSelection, describe_channels, select_channels
from .devices import DeviceInput, InputDevice
from .replay import FileReplay
from .resample import resampler
from .source import AudioSourceError, SourceStats

log = logging.getLogger(__name__)

#: Default capture block (s) of :class:`CaptureSource` and
#: :class:`~stream_ser.audio.multi.MultiDeviceSource` (see ``CaptureSource``'s ``block_s``: CPU
#: per callback against latency).
DEFAULT_BLOCK_S = 0.04


class CaptureInput(Protocol):
    """What capture opens: an input device, or a file replayed as one.

    Attributes:
        name: ``mic:<device name>`` or the replayed file's path.
        is_device: True for a live device: an end it was not asked for, or a pause in its
            callbacks, is a fault. False for a replay, whose end is the end of the input.
        native_rate_hz: The rate (Hz) the stream delivers.
        device: The :class:`~stream_ser.audio.devices.InputDevice`, or None for a replay.
    """

    name: str
    is_device: bool
    native_rate_hz: int
    device: InputDevice | None

    def plan_channels(self, selection: ChannelSelection) -> tuple[tuple[int, ...], int]:
        """``(channel numbers scored, channels to open)`` for a selection; raises
        :class:`~stream_ser.audio.source.AudioSourceError` for a channel it does not have."""
        ...

    def open(self, *, channels: int, blocksize: int, callback: Callable[..., None],
             finished_callback: Callable[[], None], ready: Callable[[], bool]) -> Any:
        """Open the stream (``start``, ``stop``, ``close``): ``callback(indata float32 (frames,
        channels), frames, time_info, status)`` per block, ``finished_callback()`` once at its end;
        ``ready()`` says whether the consumer has room (a replay that is not paced waits for it)."""
        ...

    def end_failure(self, stream: Any, stop_requested: bool) -> str | None:
        """Why the stream ended, if that is a fault (None: a normal end)."""
        ...


class InputCapture:
    """One opened input: its stream, the callback that fills a ring buffer, counters and health.

    The callback runs on the stream's thread and only copies ``indata`` into a preallocated ring
    buffer (``capacity_s`` seconds of native frames), counts status flags and notes ``(callback
    time, frames delivered)`` (one tuple assignment, for clock-drift measurement). Everything
    else runs on the consumer's thread.

    Args:
        input: What to open (:class:`CaptureInput`).
        channels: Channels to open (the ring buffer's columns).
        block_s: Callback block duration (s).
        capacity_s: Ring buffer capacity (s) of native audio; frames the consumer has not read
            within this time are dropped and counted.
        stall_timeout_s: A device that delivers nothing for this long is treated as failed.
        wake: Event set whenever audio arrives (once a :meth:`wake_after` target is reached) or
            the stream ends; the consumer waits on it (shared by the devices of a
            :class:`~stream_ser.audio.multi.MultiDeviceSource`).
        clock: Monotonic clock (s) for callback times and stall detection.

    Attributes:
        name: The input's name.
        is_device: The input's ``is_device``.
        native_rate_hz: The input's native rate (Hz).
        channels: Channels opened.
        stall_timeout_s: As given.
        overflows: Callbacks flagged with input overflow.
        status_flags: Callbacks with any status flag set (overflow, underflow, priming).
        dropped_frames: Native frames lost because the consumer fell behind.
        failure: Why capture ended on its own (vanished, stalled, a replay that could not be
            decoded to its end), or None.
        clock_point: ``(callback time in s, frames delivered so far)`` of the latest callback, or
            None before the first.

    Raises:
        AudioSourceError: If the stream cannot be opened.
    """

    def __init__(self, input: CaptureInput, channels: int, block_s: float, capacity_s: float, stall_timeout_s: float,
                 *, wake: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self.input = input
        self.name = input.name
        self.is_device = input.is_device
        self.native_rate_hz = input.native_rate_hz
        self.channels = channels
        self.stall_timeout_s = stall_timeout_s
        self.overflows = 0
        self.status_flags = 0
        self.dropped_frames = 0
        self.failure: str | None = None
        self.clock_point: tuple[float, int] | None = None
        self._clock = clock
        self._wake = wake
        self._ended = threading.Event()
        self._stop_requested = threading.Event()
        self._closed = False
        self._read = 0
        self._wake_frames = 0  # native frames written at which the callback wakes the consumer
        self._ring = RingBuffer(int(capacity_s * self.native_rate_hz), channels)
        self._stream = input.open(channels=channels, blocksize=max(1, int(round(block_s * self.native_rate_hz))),
                                  callback=self._callback, finished_callback=self._on_finished, ready=self._has_room)
        self._last_data_s = clock()

    # The stream's thread: copy and count, nothing else.
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
            if getattr(status, "input_overflow", False):
                self.overflows += 1
        self._ring.write(indata)
        written = self._ring.written
        self.clock_point = (self._clock(), written)
        if written >= self._wake_frames:
            self._wake.set()

    def _on_finished(self) -> None:
        self._ended.set()
        self._wake.set()

    def _has_room(self) -> bool:
        """Whether the consumer has read all but half the ring buffer (an unpaced replay waits)."""
        return self._ring.written - self._read < self._ring.capacity // 2

    # Any thread.
    def start(self) -> None:
        """Start the stream.

        Raises:
            AudioSourceError: If it cannot be started (device busy or gone).
        """
        try:
            self._stream.start()
        except Exception as exc:  # sounddevice.PortAudioError
            raise AudioSourceError(f"cannot start capture from {self.name}: {exc}") from None

    def request_stop(self) -> None:
        """Ask capture to stop (sets events only: safe from any thread and a signal handler)."""
        self._stop_requested.set()
        self._wake.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called."""
        return self._stop_requested.is_set()

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (on its own, or closed)."""
        return self._ended.is_set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def dropped_s(self) -> float:
        """Seconds of native audio lost because the consumer fell behind."""
        return self.dropped_frames / self.native_rate_hz

    # Consumer thread.
    def close(self) -> None:
        """Stop and close the stream now (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._ended.set()
                self._wake.set()

    @property
    def waiting(self) -> bool:
        """Whether a :meth:`wake_after` target is not reached yet (the callback does not wake)."""
        return self._ring.written < self._wake_frames

    def wake_after(self, frames: int | None) -> None:
        """Let the callback wake the consumer only once ``frames`` native frames beyond those read
        have arrived (at most a quarter of the ring buffer, so that a long wait never overruns it,
        and an unpaced replay, which only writes while the buffer is less than half full, goes
        on); None: at every block."""
        self._wake_frames = 0 if frames is None else self._read + min(frames, self._ring.capacity // 4)

    def reset_stall_timer(self) -> None:
        """The input counts as alive now (stall detection starts over)."""
        self._last_data_s = self._clock()

    def saw_data_at(self, time_s: float) -> None:
        """The input delivered audio at ``time_s`` (a callback time), if later than the last sign."""
        self._last_data_s = max(self._last_data_s, time_s)

    def fail_if_stalled(self) -> bool:
        """If a device has delivered nothing for ``stall_timeout_s`` (and has not ended), set
        :attr:`failure` and return True."""
        stalled = (self.is_device and not self._ended.is_set()
                   and self._clock() - self._last_data_s > self.stall_timeout_s)
        if stalled:
            self.failure = f"{self.name}: no audio for {self.stall_timeout_s:g} s (device stalled or disconnected)"
        return stalled

    def end_failure(self) -> str | None:
        """After the stream ended: why, if that is a fault (a device's stream ending when it was
        not asked to, a replay that could not be decoded to its end); sets :attr:`failure`."""
        if self.failure is None:
            self.failure = self.input.end_failure(self._stream, self.stop_requested)
        return self.failure

    def read(self) -> tuple[np.ndarray | None, int]:
        """New native frames since the last call, and how many frames were lost before them.

        Returns:
            ``(frames, lost)``: float32 ``(n, channels)`` (n may be 0), or None when the writer
            lapped the reader during the copy (call again); ``lost`` native frames were
            overwritten before they could be read (counted in :attr:`dropped_frames`).
        """
        ring = self._ring
        written = ring.written
        lost = 0
        if written > self._read:
            self._last_data_s = self._clock()
        if written - self._read > ring.capacity:
            lost = written - self._read - ring.capacity
            self.dropped_frames += lost
            log.warning("consumer fell behind: %d frames dropped", lost)
            self._read = written - ring.capacity
        if written > self._read:
            try:
                frames = ring.read(written, written - self._read)
            except OverrunError:  # lapped between the check and the copy
                return None, lost
            self._read = written
            return frames, lost
        return np.zeros((0, ring.channels), dtype=np.float32), lost


class _OfCapture:
    """A read-only attribute of a :class:`CaptureSource` that is its :class:`InputCapture`'s."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, source: Any, owner: type | None = None) -> Any:
        return self if source is None else getattr(source._capture, self.name)


class CaptureSource:
    """Live audio from an input device, or a file replayed through the same path, as frames at
    the model's rate (a :class:`~stream_ser.audio.source.Source`).

    Opens the input's stream at construction (an :class:`InputCapture`); :meth:`frames` (and
    :meth:`chunks`), on the consumer's thread, reads new frames, down-mixes or selects channels,
    and resamples them to ``sample_rate_hz`` with soxr's streaming resampler.

    Args:
        input: What to capture: a :class:`~stream_ser.audio.devices.DeviceInput` or a
            :class:`~stream_ser.audio.replay.FileReplay` (see :meth:`from_device` and
            :meth:`from_replay`).
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_s: Callback block duration (s); :data:`DEFAULT_BLOCK_S` (40 ms) by default. Every
            callback costs CPU in PortAudio, the sound-server client and Python (capture alone
            on a PulseAudio source, one core of the 2-core machine: 2.3 % of a core at 20 ms
            blocks, 1.1 % at 40 ms, 0.5 % at 100 ms), while the hop's last sample waits up to a
            block before the program sees it. On PulseAudio the server's own fragments dominate
            that wait (30 ms blocks gave no lower latency than 40 ms); figures in
            ``benchmarks/README.md``.
        capacity_s: Ring buffer capacity (s) of native audio; frames the consumer has not read
            within this time are dropped and counted.
        stall_timeout_s: A device that delivers nothing for this long is treated as failed.
        channels: Which channels to score (:data:`~stream_ser.audio.channels.ChannelSelection`;
            what a device then opens: :meth:`~stream_ser.audio.devices.DeviceInput.plan_channels`).
        wake: Event set whenever audio arrives or the stream ends; a private one by default.
        clock: Monotonic clock (s) for callback times and stall detection.

    Attributes:
        input: As given.
        name: ``mic:<device name>`` or the replayed file path.
        device: The opened device (None for a replay).
        device_sample_rate_hz: The native rate captured.
        channel_numbers: ``(0,)`` for the down-mix, else the 1-based channels scored.
        opened_channels: The channels the stream was opened with.
        overflows: Callbacks flagged with input overflow by PortAudio.
        status_flags: Callbacks with any status flag set (overflow, underflow, priming).
        dropped_frames: Native frames lost because the consumer fell behind.
        dropped_s: The same in seconds of native audio.
        failure: Why capture ended on its own (the device vanished or stalled, a replayed file
            could not be decoded to its end), or None.

    Raises:
        AudioSourceError: If a selected channel does not exist or the stream cannot be opened
            (unsupported rate or channels, device busy).
    """

    def __init__(
        self,
        input: CaptureInput,
        sample_rate_hz: int = 16000,
        block_s: float = DEFAULT_BLOCK_S,
        capacity_s: float = 10.0,
        stall_timeout_s: float = 5.0,
        channels: ChannelSelection = None,
        *,
        wake: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.input = input
        self.name = input.name
        self.device = input.device
        self.sample_rate_hz = sample_rate_hz
        self.device_sample_rate_hz = input.native_rate_hz
        self.channel_numbers, self.opened_channels = input.plan_channels(channels)
        self._wake = wake if wake is not None else threading.Event()
        self._capture = InputCapture(input, self.opened_channels, block_s, capacity_s, stall_timeout_s,
                                     wake=self._wake, clock=clock)
        self._yielded = 0  # output samples frames() has yielded

    @classmethod
    def from_device(cls, device: str | int | InputDevice | None = None, *,
                    stream_factory: Callable[..., Any] | None = None, **options: Any) -> "CaptureSource":
        """Capture from a device: an index, a name or name substring, an
        :class:`~stream_ser.audio.devices.InputDevice`, or None for the default input
        (:meth:`~stream_ser.audio.devices.DeviceInput.find`); ``options`` as the constructor.

        Raises:
            AudioSourceError: PortAudio is missing, no device matches, or as the constructor.
        """
        return cls(DeviceInput.find(device, stream_factory), **options)

    @classmethod
    def from_replay(cls, path: str | Path, realtime: bool = True, **options: Any) -> "CaptureSource":
        """Replay a file through the capture path (:class:`~stream_ser.audio.replay.FileReplay`),
        paced at real time or, ``realtime=False``, as fast as it is consumed (nothing is dropped);
        ``options`` as the constructor.

        Raises:
            AudioSourceError: The file cannot be opened, or as the constructor.
        """
        return cls(FileReplay(path, realtime), **options)

    # Facts and counters (any thread); the counters and health are the InputCapture's.
    overflows = _OfCapture()
    status_flags = _OfCapture()
    dropped_frames = _OfCapture()
    dropped_s = _OfCapture()
    failure = _OfCapture()

    @property
    def is_device(self) -> bool:
        """True for a device, False for a replayed file."""
        return self.input.is_device

    @property
    def channel_descriptions(self) -> tuple[str, ...]:
        """What each scored channel is: the source name for the down-mix, else ``channel N``."""
        return describe_channels(self.name, self.channel_numbers)

    @property
    def native_rates_hz(self) -> tuple[int, ...]:
        """The native rate captured (Hz), as a one-entry tuple."""
        return (self.device_sample_rate_hz,)

    @property
    def stats(self) -> SourceStats:
        """The counters so far."""
        c = self._capture
        return SourceStats(c.overflows, c.status_flags, c.dropped_frames, c.dropped_s)

    def clock_report(self) -> tuple:
        """``()``: one input has no other clock to be aligned to."""
        return ()

    def start(self) -> None:
        """Start capturing.

        Raises:
            AudioSourceError: If the stream cannot be started (device busy or gone).
        """
        self._capture.start()

    def stop(self) -> None:
        """Ask capture to stop; :meth:`frames` then closes the stream, drains what was captured
        and ends. Safe to call from any thread and from a signal handler (it only sets events).
        """
        self._capture.request_stop()

    def close(self) -> None:
        """Stop and close the underlying stream now (idempotent; consumer thread)."""
        self._capture.close()

    def wake_at(self, samples: int) -> None:
        """Let the capture callback wake :meth:`frames`' consumer only once the stream can reach
        ``samples`` output samples (at ``sample_rate_hz``, counted from the first sample
        :meth:`frames` yielded); until then the blocks pile up in the ring buffer unread.

        A consumer with nothing to do between hop boundaries (``listen`` without its level meter)
        then wakes about once per hop instead of once per capture block: every wake-up costs a
        thread switch, the ring-buffer copy and a resampler call on top of PortAudio's own callback
        (``benchmarks/bench_live.py``). The frame count is converted at the nominal rate ratio;
        the resampler holds a few milliseconds back (soxr's filter delay, at most about 20 ms with
        the LQ preset), so the first wake-up may yield a little less than asked and the consumer
        asks again, then wakes at the next block: the hop's last sample is released at the same
        block as without a target. Stopping and the end of the stream still wake the consumer at
        once, and it still checks for a stalled device at least once a second. Consumer thread; a
        value already reached means every block.
        """
        ahead = samples - self._yielded
        if ahead <= 0:
            self._capture.wake_after(None)
            return
        self._capture.wake_after(math.ceil(ahead * self.device_sample_rate_hz / self.sample_rate_hz))

    def __enter__(self) -> "CaptureSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self, poll_s: float = 0.1) -> Iterator[np.ndarray]:
        """Captured audio as float32 ``(n, len(channel_numbers))`` frames at ``sample_rate_hz``,
        until :meth:`stop` or the end of the replayed file. Call :meth:`start` first.

        Args:
            poll_s: Longest wait (s) for new frames before checking for the end again.

        Raises:
            AudioSourceError: After the last captured frames, if the device stopped on its own
                (vanished) or delivered nothing for ``stall_timeout_s``, or a replayed file could
                not be decoded to its end; :attr:`failure` says which. Everything captured before
                the fault is yielded first.
        """
        k = len(self.channel_numbers)
        resample = resampler(self.device_sample_rate_hz, self.sample_rate_hz, k)
        capture = self._capture
        capture.reset_stall_timer()
        self._yielded = 0
        capture.wake_after(None)
        while True:
            if capture.stop_requested:
                capture.close()
            elif capture.fail_if_stalled():
                capture.close()
            ended = capture.ended
            if not ended:  # once the stream has ended nothing wakes the wait: the rest is in the ring
                self._wake.wait(max(poll_s, 1.0) if capture.waiting else poll_s)
            self._wake.clear()
            if capture.waiting and not (capture.ended or capture.stop_requested):
                # audio arrived while it waits (the latest callback's time) is not a stall; frames
                # written but not yet read are no proof of life (a device that stalls below the
                # target would otherwise never be detected)
                point = capture.clock_point
                if point is not None:
                    capture.saw_data_at(point[0])
                continue
            native, _lost = capture.read()
            if native is None:
                continue
            if native.shape[0]:
                out = resample(select_channels(native, self.channel_numbers), False)
                if out.size:
                    self._yielded += out.shape[0]
                    yield out
            elif ended:
                tail = resample(np.zeros((0, k), dtype=np.float32), True)
                if tail.size:
                    yield tail
                failure = capture.end_failure()
                if failure is not None:
                    raise AudioSourceError(failure)
                return

    def chunks(self, poll_s: float = 0.1) -> Iterator[np.ndarray]:
        """Captured audio as mono float32 chunks ``(n,)`` at ``sample_rate_hz`` (see :meth:`frames`).

        Raises:
            ValueError: If several channels are scored (use :meth:`frames`).
            AudioSourceError: As :meth:`frames`.
        """
        if len(self.channel_numbers) != 1:
            raise ValueError("several channels selected: use frames()")
        for f in self.frames(poll_s):
            yield f[:, 0]
