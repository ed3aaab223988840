"""A made-up input device, for tests that stand in for PortAudio with a fake stream.

The capture code opens a real device's stream through ``stream_factory`` (the keyword arguments of
``sounddevice.InputStream``: ``device, samplerate, channels, dtype, blocksize, callback,
finished_callback``); tests pass a factory that makes a thread calling the callback as PortAudio
would, and describe the device it pretends to be with :func:`fake_device`.
"""

from __future__ import annotations

import threading
import time
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


class FakeInputStream:
    """Calls ``callback(indata, frames, time, status)`` from a thread like PortAudio would (the
    keyword arguments of ``sounddevice.InputStream`` in ``kw``).

    Args:
        audio: float32 (n,) at the device's rate, delivered in blocks of one channel.
        then: What happens after the audio: "finish" (the device vanishes: finished_callback
            without stop), "stall" (silence from the driver: no more callbacks), "stop" (wait
            for stop()).
        status: Status object passed with every block (e.g. input_overflow=True).
        pace_s: Sleep between blocks.
    """

    def __init__(self, audio, then="stop", status=None, pace_s=0.0, **kw):
        self.audio, self.then, self.status, self.pace_s = audio, then, status, pace_s
        self.callback, self.finished = kw["callback"], kw["finished_callback"]
        self.blocksize = kw["blocksize"]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for i in range(0, self.audio.size, self.blocksize):
            if self.stopped.is_set():
                break
            block = self.audio[i : i + self.blocksize, None]
            self.callback(block, block.shape[0], None, self.status)
            if self.pace_s:
                time.sleep(self.pace_s)
        if self.then == "finish":
            self.finished()

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.thread.join(5)

    def close(self):
        pass


def factory(**fake_kw):
    """A ``stream_factory`` whose streams are ``FakeInputStream(**fake_kw)``."""
    return lambda **kw: FakeInputStream(**fake_kw, **kw)
