"""What every audio source is: the :class:`Source` protocol, its counters and its error.

Position in the pipeline: the first stage. A source delivers audio as float32 frames of shape
``(n, len(channel_numbers))`` at the model's sample rate (16 kHz); the engines consume them (one
engine per channel) and a listening session (:mod:`stream_ser.session`) reads the rest of the
protocol: names and descriptions for its output, native rates and whether it is a live device for
its messages, counters and health for its status line, and the wake-up hint and device clocks.

The sources: :class:`~stream_ser.audio.files.FileSource` (a recorded file, as fast as it
decodes), :class:`~stream_ser.audio.capture.CaptureSource` (an input device, or a file replayed
through the same capture path) and :class:`~stream_ser.audio.multi.MultiDeviceSource` (several
devices as the channels of one stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from .clocks import DeviceClock


class AudioSourceError(RuntimeError):
    """An audio file or device cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class SourceStats:
    """A source's counters so far.

    Attributes:
        overflows: Capture callbacks PortAudio flagged with an input overflow (input the device
            dropped before the program saw it); 0 for files.
        status_flags: Capture callbacks with any status flag (overflow, underflow, priming).
        dropped_frames: Native frames lost because the consumer fell behind the capture ring
            buffer (several devices: summed over them).
        dropped_s: The same as seconds of native audio (several devices: the most of any one).
    """

    overflows: int = 0
    status_flags: int = 0
    dropped_frames: int = 0
    dropped_s: float = 0.0


class Source(Protocol):
    """An audio source, as the engines and a listening session use it.

    Attributes:
        name: What the source is, written into every prediction: a file's path as given,
            ``mic:<device name>``, or several devices' names joined by `` + ``.
        channel_numbers: ``(0,)`` for the source's channels averaged into one, else the 1-based
            numbers of the channels scored each on its own (one per device for several devices).
        channel_descriptions: What each scored channel is, in channel order: the source's name for
            the down-mix, ``channel N``, or the device behind the channel.
        native_rates_hz: The native sample rate (Hz) before resampling: one entry, or one per
            device.
        is_device: True for live capture from a device (its end is a fault unless asked for),
            False for a file (its end is the end of the input).
        failure: Why the source ended on its own (a device vanished or stalled, a file could not
            be decoded to its end), or None: its health.
        stats: The counters so far (:class:`SourceStats`).

    Threads: :meth:`frames` on one consumer thread; :meth:`stop` from any thread or a signal
    handler (it only sets events).
    """

    @property
    def name(self) -> str: ...

    @property
    def channel_numbers(self) -> tuple[int, ...]: ...

    @property
    def channel_descriptions(self) -> tuple[str, ...]: ...

    @property
    def native_rates_hz(self) -> tuple[int, ...]: ...

    @property
    def is_device(self) -> bool: ...

    @property
    def failure(self) -> str | None: ...

    @property
    def stats(self) -> SourceStats: ...

    def frames(self) -> Iterator[np.ndarray]:
        """float32 frames ``(n, len(channel_numbers))`` at the model's rate until the end, or
        until :meth:`stop`; raises :class:`AudioSourceError` after the last frames if the source
        failed (:attr:`failure`)."""
        ...

    def start(self) -> None:
        """Start capture (nothing for a file); raises :class:`AudioSourceError` if it cannot."""
        ...

    def stop(self) -> None:
        """Ask :meth:`frames` to end after what was captured (any thread, signal-handler safe)."""
        ...

    def close(self) -> None:
        """Release the device or file now (idempotent)."""
        ...

    def wake_at(self, samples: int) -> None:
        """Hint that the consumer has nothing to do before :meth:`frames` has yielded
        ``samples`` samples in all; a source may then hold its audio back until then (capture
        wakes its consumer less often). Never changes the audio."""
        ...

    def clock_report(self) -> tuple[DeviceClock, ...]:
        """Each device's measured clock when several devices share one stream, else ``()``."""
        ...
