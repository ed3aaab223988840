"""A recorded file played through the capture path at real-time pace, as a device would deliver it.

Position in the pipeline: what :class:`~stream_ser.audio.capture.CaptureSource` opens for
``stream-ser listen --input FILE`` (and ``--demo``), and how the live path is tested without a
sound card. :class:`FileReplay` is the input (name, native rate, channels); the stream it opens,
:class:`FileInputStream`, stands in for ``sounddevice.InputStream``: a thread calls the capture
callback block by block exactly as PortAudio would, so everything after the callback (the ring
buffer, channel selection, resampling, the session) is the code that serves a live device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from .channels import ChannelSelection, resolve_channels
from .files import audio_info, is_mpeg, library_chatter_logged
from .source import AudioSourceError


class FileInputStream:
    """A stand-in for ``sounddevice.InputStream`` that plays a file at real-time pace.

    A thread reads ``blocksize`` frames at a time and calls ``callback(indata, frames, time,
    status)`` exactly as PortAudio would, sleeping so that blocks arrive at the file's sample
    rate.

    Args:
        path: Audio file.
        blocksize: Frames per callback.
        callback: ``callback(indata: float32 (frames, channels), frames, time_info, status)``.
        finished_callback: Called once after the last block (or after :meth:`stop`).
        realtime: Pace blocks at the sample rate (True) or deliver them as fast as possible.
        ready: Without pacing, called before each block; the stream waits while it returns
            False (back-pressure, so an unpaced replay never outruns its consumer).

    Attributes:
        error: Why the replay ended early (the file could not be decoded part-way, naming it
            and the time reached), or None; the blocks before the fault were delivered.

    Raises:
        AudioSourceError: If the file cannot be opened.
    """

    def __init__(
        self,
        path: str | Path,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None] | None = None,
        realtime: bool = True,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.info = audio_info(path)
        self.samplerate = float(self.info.sample_rate_hz)
        self.channels = self.info.channels
        self.blocksize = blocksize
        self._callback = callback
        self._finished = finished_callback
        self._realtime = realtime
        self._ready = ready
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.active = False
        self.error: AudioSourceError | None = None

    def _run(self) -> None:
        import soundfile as sf

        t0 = time.monotonic()
        done = 0
        mpeg = is_mpeg(self.info.subtype)
        try:
            with library_chatter_logged():
                f = sf.SoundFile(str(self.info.path))
            with f:
                while not self._stop.is_set():
                    with library_chatter_logged(mpeg):
                        block = f.read(self.blocksize, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    if self._realtime:
                        delay = t0 + (done + block.shape[0]) / self.samplerate - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                    elif self._ready is not None:
                        while not self._ready() and not self._stop.is_set():
                            self._stop.wait(0.001)
                    self._callback(block, block.shape[0], None, None)
                    done += block.shape[0]
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:  # a corrupt frame part-way
            self.error = AudioSourceError(
                f"{self.info.path}: decoding failed after {done / self.samplerate:.2f} s of audio ({exc})"
            )
        finally:
            self.active = False
            if self._finished is not None:
                self._finished()

    def start(self) -> None:
        """Start delivering blocks from a background thread."""
        self.active = True
        self._thread = threading.Thread(target=self._run, name="file-input-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering and wait for the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    close = stop


class FileReplay:
    """A file to replay through the capture path (a :class:`~stream_ser.audio.capture.CaptureInput`).

    Args:
        path: The audio file.
        realtime: Pace the blocks at the file's sample rate (True, as a device delivers them) or
            deliver them as fast as the consumer takes them (False; nothing is dropped).

    Attributes:
        info: The file's header facts.
        name: ``str(path)``.
        native_rate_hz: The file's sample rate (Hz).
        is_device: False: the end of the file is the end of the input.
        device: None.

    Raises:
        AudioSourceError: If the file cannot be opened.
    """

    is_device = False
    device = None

    def __init__(self, path: str | Path, realtime: bool = True) -> None:
        self.info = audio_info(path)
        self.path = path
        self.name = str(path)
        self.native_rate_hz = self.info.sample_rate_hz
        self.realtime = realtime

    def plan_channels(self, selection: ChannelSelection) -> tuple[tuple[int, ...], int]:
        """The channel numbers scored, and the channels opened: all of the file's.

        Raises:
            AudioSourceError: A selected channel the file does not have.
        """
        return resolve_channels(selection, self.info.channels, self.name), self.info.channels

    def open(self, *, channels: int, blocksize: int, callback: Callable[..., None],
             finished_callback: Callable[[], None], ready: Callable[[], bool]) -> FileInputStream:
        """The replay stream (``ready``: back-pressure when not paced)."""
        return FileInputStream(self.path, blocksize, callback, finished_callback, self.realtime, ready=ready)

    def end_failure(self, stream: FileInputStream, stop_requested: bool) -> str | None:
        """Why the replay ended: a decoding fault part-way, or None at the end of the file."""
        return None if stream.error is None else str(stream.error)
