"""The former home of the audio sources, kept for callers that still import from it.

The sources live in :mod:`stream_ser.audio` (files, devices, capture, clocks, several devices);
this module re-exports its public names and keeps :class:`MicrophoneSource`, the former
constructor of live capture, for the code that still calls it with ``replay=`` (the Python API's
``stream_file``/``stream_microphone`` and the CLI's ``listen``). New code uses
:class:`~stream_ser.audio.capture.CaptureSource` with a
:class:`~stream_ser.audio.devices.DeviceInput` or a :class:`~stream_ser.audio.replay.FileReplay`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .audio import *  # noqa: F401,F403  (the public names, re-exported)
from .audio import DEFAULT_BLOCK_S, CaptureSource, ChannelSelection, DeviceInput, FileReplay, InputDevice
from .audio import __all__ as _AUDIO_NAMES
from .audio.channels import downmix as _downmix  # noqa: F401  (the API's former private names)
from .audio.resample import resampler as _resampler  # noqa: F401

__all__ = [*_AUDIO_NAMES, "MicrophoneSource"]


class MicrophoneSource(CaptureSource):
    """:class:`~stream_ser.audio.capture.CaptureSource` with the former constructor: a device,
    or with ``replay`` a file played through the capture path.

    Args:
        device: Device index, name or name substring, an
            :class:`~stream_ser.audio.devices.InputDevice`, or None for the default input (not
            used with ``replay``).
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_s: Callback block duration (s).
        capacity_s: Ring buffer capacity (s) of native audio.
        replay: Play this file through the capture path instead of opening a device
            (:class:`~stream_ser.audio.replay.FileReplay`).
        realtime: With ``replay``, pace the blocks (True) or deliver them as fast as the consumer
            takes them (False).
        stall_timeout_s: A device that delivers nothing for this long is treated as failed.
        stream_factory: Makes the device's input stream instead of ``sounddevice.InputStream``
            (see :class:`~stream_ser.audio.devices.DeviceInput`).
        channels: Which channels to score.
        wake: Event set whenever audio arrives or the stream ends.
        clock: Monotonic clock (s).

    Raises:
        AudioSourceError: As :class:`~stream_ser.audio.capture.CaptureSource` and
            :meth:`~stream_ser.audio.devices.DeviceInput.find`.
    """

    def __init__(
        self,
        device: str | int | InputDevice | None = None,
        sample_rate_hz: int = 16000,
        block_s: float = DEFAULT_BLOCK_S,
        capacity_s: float = 10.0,
        replay: str | Path | None = None,
        realtime: bool = True,
        stall_timeout_s: float = 5.0,
        stream_factory: Callable[..., Any] | None = None,
        channels: ChannelSelection = None,
        *,
        wake: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        input = FileReplay(replay, realtime) if replay is not None else DeviceInput.find(device, stream_factory)
        super().__init__(input, sample_rate_hz=sample_rate_hz, block_s=block_s, capacity_s=capacity_s,
                         stall_timeout_s=stall_timeout_s, channels=channels, wake=wake, clock=clock)
