"""Audio sources: files and input devices, delivered as 16 kHz mono float32 chunks.

Position in the pipeline: the first stage. Every source exposes ``name`` and ``chunks()``, an
iterator of float32 mono chunks at the model's sample rate, which the engine consumes.

* :class:`FileSource` decodes a file block by block (soundfile/libsndfile), down-mixes to mono
  and resamples with a streaming resampler (soxr), so memory stays flat whatever the length.
* :class:`MicrophoneSource` opens a PortAudio input stream (python-sounddevice) whose callback
  only copies the device's native-rate frames into a preallocated :class:`RingBuffer` and counts
  overflows; the consuming thread down-mixes and resamples. With ``replay=`` it plays a file
  through the very same path at real-time pace (:class:`FileInputStream`), which is how
  ``stream-ser listen --input FILE`` works and how the live path is tested without a sound card.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .ring_buffer import OverrunError, RingBuffer

log = logging.getLogger(__name__)

#: Native frames decoded per block when streaming a file (0.25 s at 16 kHz).
DEFAULT_FILE_BLOCK_FRAMES = 4096


class AudioSourceError(RuntimeError):
    """An audio file or device cannot be used; the message names it and says why."""


def _resampler(in_rate_hz: int, out_rate_hz: int, channels: int = 1) -> Callable[[np.ndarray, bool], np.ndarray]:
    """A streaming resampler ``f(chunk, last) -> chunk`` (soxr ``ResampleStream``, HQ quality).

    Identity when the rates match. Chunks are float32, shape ``(n,)``.
    """
    if in_rate_hz == out_rate_hz:
        return lambda x, last=False: x
    import soxr

    stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, channels, dtype="float32", quality="HQ")
    return lambda x, last=False: stream.resample_chunk(x, last=last)


def _downmix(frames: np.ndarray) -> np.ndarray:
    """Mean over channels: ``(n, channels)`` -> float32 ``(n,)``."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    return frames.mean(axis=1, dtype=np.float32)


@dataclass(frozen=True)
class AudioInfo:
    """Facts about an audio file, from its header.

    Attributes:
        path: The file.
        sample_rate_hz: Native sample rate (Hz).
        channels: Channel count.
        frames: Frames per channel.
        duration_s: ``frames / sample_rate_hz`` in seconds.
        subtype: libsndfile subtype, e.g. ``PCM_16``.
    """

    path: Path
    sample_rate_hz: int
    channels: int
    frames: int
    duration_s: float
    subtype: str


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header.

    Raises:
        AudioSourceError: If the file is missing, a directory, unreadable, or not audio
            libsndfile can decode.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioSourceError(f"{p}: no such file")
    if p.is_dir():
        raise AudioSourceError(f"{p}: is a directory, not an audio file")
    try:
        with open(p, "rb") as f:
            head = f.read(1)
    except PermissionError:
        raise AudioSourceError(f"{p}: permission denied") from None
    except OSError as exc:
        raise AudioSourceError(f"{p}: cannot open ({exc.strerror or exc})") from None
    if not head:
        raise AudioSourceError(f"{p}: empty file (0 bytes)")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioSourceError(f"{p}: cannot read audio ({exc})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioSourceError(f"{p}: invalid header (rate {info.samplerate}, channels {info.channels})")
    return AudioInfo(p, info.samplerate, info.channels, info.frames, info.frames / info.samplerate, info.subtype)


def iter_file_chunks(
    path: str | Path, sample_rate_hz: int = 16000, block_frames: int = DEFAULT_FILE_BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Stream a file as mono float32 chunks at ``sample_rate_hz``.

    Decodes ``block_frames`` native frames at a time (soundfile), down-mixes by averaging
    channels and resamples with soxr's streaming resampler, so memory does not grow with the
    file's length.

    Args:
        path: Any format libsndfile reads (WAV, FLAC, OGG/Opus, MP3 with libsndfile >= 1.1).
        sample_rate_hz: Output sample rate (Hz).
        block_frames: Native frames per decoded block.

    Yields:
        float32 arrays of shape ``(n,)``, values nominally in [-1, 1].

    Raises:
        AudioSourceError: If the file cannot be opened or decoding fails part-way.
    """
    import soundfile as sf

    info = audio_info(path)
    resample = _resampler(info.sample_rate_hz, sample_rate_hz)
    done = 0
    try:
        with sf.SoundFile(str(info.path)) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                done += block.shape[0]
                last = block.shape[0] < block_frames
                out = resample(_downmix(block), last)
                if out.size:
                    yield out
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as exc:
        at_s = done / info.sample_rate_hz
        raise AudioSourceError(f"{info.path}: decoding failed after {at_s:.2f} s of audio ({exc})") from None


def load_audio(path: str | Path, sample_rate_hz: int = 16000) -> np.ndarray:
    """Decode a whole file to mono float32 at ``sample_rate_hz`` (the same path as streaming).

    Returns:
        float32 array of shape ``(n_samples,)``.

    Raises:
        AudioSourceError: As :func:`iter_file_chunks`.
    """
    chunks = list(iter_file_chunks(path, sample_rate_hz))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


class FileSource:
    """A recorded file, delivered as fast as it decodes (``stream-ser analyse``).

    Args:
        path: The audio file.
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_frames: Native frames decoded per chunk.

    Raises:
        AudioSourceError: If the file cannot be opened (checked at construction).
    """

    def __init__(self, path: str | Path, sample_rate_hz: int = 16000, block_frames: int = DEFAULT_FILE_BLOCK_FRAMES) -> None:
        self.info = audio_info(path)
        self.name = str(path)
        self.sample_rate_hz = sample_rate_hz
        self.block_frames = block_frames

    def chunks(self) -> Iterator[np.ndarray]:
        """Mono float32 chunks at ``sample_rate_hz`` (see :func:`iter_file_chunks`)."""
        return iter_file_chunks(self.info.path, self.sample_rate_hz, self.block_frames)


# --------------------------------------------------------------------------------------------
# Live capture


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a clear error."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise AudioSourceError(
            f"PortAudio is not available ({exc}); on Debian/Ubuntu: apt-get install libportaudio2"
        ) from None
    return sd


@dataclass(frozen=True)
class InputDevice:
    """An input device as PortAudio reports it.

    Attributes:
        index: PortAudio device index.
        name: Device name.
        hostapi: Host API name (ALSA, PulseAudio, ...).
        max_input_channels: Input channels.
        default_sample_rate_hz: The device's default sample rate (Hz).
        is_default: True for the default input device.
    """

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_sample_rate_hz: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    """All devices with at least one input channel.

    Raises:
        AudioSourceError: If PortAudio is missing.
    """
    sd = _sounddevice()
    hostapis = sd.query_hostapis()
    try:
        default_in = sd.default.device[0]
    except Exception:  # sounddevice raises PortAudioError subclasses here
        default_in = -1
    out = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            out.append(
                InputDevice(
                    i,
                    d["name"],
                    hostapis[d["hostapi"]]["name"],
                    int(d["max_input_channels"]),
                    float(d["default_samplerate"]),
                    i == default_in,
                )
            )
    return out


def find_input_device(spec: str | int | None) -> InputDevice:
    """Choose an input device by index, by name (exact, else unique substring), or the default.

    Args:
        spec: An index (int or digit string), a name or case-insensitive name substring, or
            None for the default input device.

    Raises:
        AudioSourceError: No input devices; index out of range or not an input; no name
            matches; several names match (the message lists them).
    """
    devices = list_input_devices()
    if not devices:
        raise AudioSourceError("no input devices found (is a microphone connected? run `stream-ser devices`)")
    if spec is None:
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for d in devices:
            if d.index == index:
                return d
        raise AudioSourceError(f"device {index} is not an input device (run `stream-ser devices`)")
    exact = [d for d in devices if d.name == spec]
    if exact:
        return exact[0]
    matches = [d for d in devices if spec.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioSourceError(f"no input device matches {spec!r} (run `stream-ser devices`)")
    listing = "; ".join(f"{d.index}: {d.name}" for d in matches)
    raise AudioSourceError(f"{spec!r} matches several input devices ({listing}); give an index or a longer name")


class FileInputStream:
    """A stand-in for ``sounddevice.InputStream`` that plays a file at real-time pace.

    A thread reads ``blocksize`` frames at a time and calls ``callback(indata, frames, time,
    status)`` exactly as PortAudio would, sleeping so that blocks arrive at the file's sample
    rate. Used by ``stream-ser listen --input FILE`` and by tests of the live path.

    Args:
        path: Audio file.
        blocksize: Frames per callback.
        callback: ``callback(indata: float32 (frames, channels), frames, time_info, status)``.
        finished_callback: Called once after the last block (or after :meth:`stop`).
        realtime: Pace blocks at the sample rate (True) or deliver them as fast as possible.
        ready: Without pacing, called before each block; the stream waits while it returns
            False (back-pressure, so an unpaced replay never outruns its consumer).

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

    def _run(self) -> None:
        import soundfile as sf

        t0 = time.monotonic()
        done = 0
        try:
            with sf.SoundFile(str(self.info.path)) as f:
                while not self._stop.is_set():
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


class MicrophoneSource:
    """Live audio from an input device (or a file replayed in real time), as 16 kHz mono chunks.

    The PortAudio callback runs on PortAudio's thread and only copies ``indata`` into a
    preallocated ring buffer (``capacity_s`` seconds of native frames) and counts overflow
    flags; :meth:`chunks`, on the consumer's thread, reads new frames, down-mixes them and
    resamples them to ``sample_rate_hz`` with soxr's streaming resampler.

    Args:
        device: Device index, name or name substring; None for the default input.
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_s: Callback block duration (s); 20 ms by default.
        capacity_s: Ring buffer capacity (s) of native audio; frames the consumer has not read
            within this time are dropped and counted.
        replay: Play this file through the same path at real-time pace instead of opening a
            device (``listen --input``).
        realtime: With ``replay``, pace the blocks (True) or deliver them as fast as the consumer
            takes them (False; nothing is dropped).
        stall_timeout_s: A device that delivers nothing for this long is treated as failed.
        stream_factory: Makes the input stream (default ``sounddevice.InputStream``); called with
            the keyword arguments ``device, samplerate, channels, dtype, blocksize, callback,
            finished_callback``. Tests inject fake streams here to simulate device faults.

    Attributes:
        name: ``mic:<device name>`` or the replayed file path.
        device_sample_rate_hz: The native rate captured.
        overflows: Callbacks flagged with input overflow by PortAudio.
        status_flags: Callbacks with any status flag set (overflow, underflow, priming).
        dropped_frames: Native frames lost because the consumer fell behind.
        failure: Why capture ended on its own (device vanished or stalled), or None.

    Raises:
        AudioSourceError: If PortAudio is missing, the device is not found, or the stream
            cannot be opened (unsupported rate/channels, device busy).
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate_hz: int = 16000,
        block_s: float = 0.02,
        capacity_s: float = 10.0,
        replay: str | Path | None = None,
        realtime: bool = True,
        stall_timeout_s: float = 5.0,
        stream_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.overflows = 0
        self.status_flags = 0
        self.dropped_frames = 0
        self.failure: str | None = None
        self.stall_timeout_s = stall_timeout_s
        self._ended = threading.Event()
        self._data = threading.Event()
        self._is_device = replay is None
        if replay is not None:
            info = audio_info(replay)
            self.name = str(replay)
            self.device_sample_rate_hz = info.sample_rate_hz
            channels = info.channels
            blocksize = max(1, int(round(block_s * info.sample_rate_hz)))
            self._ring = RingBuffer(int(capacity_s * info.sample_rate_hz), channels)
            self._stream: Any = FileInputStream(
                replay, blocksize, self._callback, self._on_finished, realtime,
                ready=lambda: self._ring.written - self._read < self._ring.capacity // 2,
            )
        else:
            if stream_factory is None:
                stream_factory = _sounddevice().InputStream
                dev = find_input_device(device)
            else:  # an injected stream: describe the device as asked
                dev = InputDevice(device if isinstance(device, int) else -1, str(device or "fake"), "test", 1, 48000.0, True)
            self.name = f"mic:{dev.name}"
            self.device_sample_rate_hz = int(dev.default_sample_rate_hz)
            channels = 1
            blocksize = max(1, int(round(block_s * self.device_sample_rate_hz)))
            self._ring = RingBuffer(int(capacity_s * self.device_sample_rate_hz), channels)
            try:
                self._stream = stream_factory(
                    device=dev.index,
                    samplerate=self.device_sample_rate_hz,
                    channels=channels,
                    dtype="float32",
                    blocksize=blocksize,
                    callback=self._callback,
                    finished_callback=self._on_finished,
                )
            except Exception as exc:  # sounddevice.PortAudioError and ValueError for bad settings
                raise AudioSourceError(
                    f"cannot open input device {dev.index} ({dev.name}) at "
                    f"{self.device_sample_rate_hz} Hz, {channels} channel(s): {exc}"
                ) from None
        self._read = 0
        self._closed = False
        self._stop_requested = threading.Event()

    # PortAudio thread: copy and count, nothing else.
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
            if getattr(status, "input_overflow", False):
                self.overflows += 1
        self._ring.write(indata)
        self._data.set()

    def _on_finished(self) -> None:
        self._ended.set()
        self._data.set()

    def start(self) -> None:
        """Start capturing.

        Raises:
            AudioSourceError: If the stream cannot be started (device busy or gone).
        """
        try:
            self._stream.start()
        except Exception as exc:  # sounddevice.PortAudioError
            raise AudioSourceError(f"cannot start capture from {self.name}: {exc}") from None

    def stop(self) -> None:
        """Ask capture to stop; :meth:`chunks` then closes the stream, drains what was captured
        and ends. Safe to call from any thread and from a signal handler (it only sets events).
        """
        self._stop_requested.set()
        self._data.set()

    def close(self) -> None:
        """Stop and close the underlying stream now (idempotent; consumer thread)."""
        if not self._closed:
            self._closed = True
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._ended.set()
                self._data.set()

    def __enter__(self) -> "MicrophoneSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chunks(self, poll_s: float = 0.1) -> Iterator[np.ndarray]:
        """Captured audio as mono float32 chunks at ``sample_rate_hz``, until :meth:`stop` or the
        end of the replayed file. Call :meth:`start` first.

        Args:
            poll_s: Longest wait (s) for new frames before checking for the end again.

        Raises:
            AudioSourceError: After the last captured chunk, if the device stopped on its own
                (vanished) or delivered nothing for ``stall_timeout_s``; :attr:`failure` says
                which. Everything captured before the fault is yielded first.
        """
        resample = _resampler(self.device_sample_rate_hz, self.sample_rate_hz)
        ring = self._ring
        last_data = time.monotonic()
        while True:
            if self._stop_requested.is_set():
                self.close()
            elif self._is_device and not self._ended.is_set() and time.monotonic() - last_data > self.stall_timeout_s:
                self.failure = f"{self.name}: no audio for {self.stall_timeout_s:g} s (device stalled or disconnected)"
                self.close()
            ended = self._ended.is_set()
            self._data.wait(poll_s)
            self._data.clear()
            written = ring.written
            if written > self._read:
                last_data = time.monotonic()
            if written - self._read > ring.capacity:
                lost = written - self._read - ring.capacity
                self.dropped_frames += lost
                log.warning("consumer fell behind: %d frames dropped", lost)
                self._read = written - ring.capacity
            if written > self._read:
                try:
                    frames = ring.read(written, written - self._read)
                except OverrunError:  # lapped between the check and the copy
                    continue
                self._read = written
                out = resample(_downmix(frames), False)
                if out.size:
                    yield out
            elif ended:
                tail = resample(np.zeros(0, dtype=np.float32), True)
                if tail.size:
                    yield tail
                if self._is_device and self.failure is None and not self._stop_requested.is_set():
                    self.failure = f"{self.name}: the input stream ended unexpectedly (device disconnected?)"
                if self.failure is not None:
                    raise AudioSourceError(self.failure)
                return
