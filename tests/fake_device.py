"""A made-up input device, for tests that stand in for PortAudio with a fake stream.

The capture code opens a real device's stream through ``stream_factory`` (the keyword arguments of
``sounddevice.InputStream``: ``device, samplerate, channels, dtype, blocksize, callback,
finished_callback``); tests pass a factory that makes a thread calling the callback as PortAudio
would, and describe the device it pretends to be with :func:`fake_device`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_ser.audio import CaptureSource, DeviceInput, InputDevice


def fake_device(name: str = "fake", rate_hz: float = 48000.0, channels: int = 1) -> InputDevice:
    """An input device no machine lists: ``name``, native ``rate_hz``, ``channels`` channels
    (index -1, host API ``test``, the default input)."""
    return InputDevice(-1, name, "test", channels, rate_hz, True)


def fake_capture(stream_factory: Callable[..., Any], name: str = "fake", rate_hz: float = 48000.0,
                 **options: Any) -> CaptureSource:
    """A :class:`~stream_ser.audio.capture.CaptureSource` on ``fake_device(name, rate_hz)`` whose
    stream ``stream_factory`` makes; ``options`` as ``CaptureSource`` (``stall_timeout_s``,
    ``capacity_s``, ...)."""
    return CaptureSource(DeviceInput(fake_device(name, rate_hz), stream_factory), **options)
