"""Audio files: header facts, block-by-block decoding at the model's rate, and :class:`FileSource`.

Position in the pipeline: the first stage of ``analyse`` (and of training, which reads its clips
with :func:`load_audio`, the same path). Files are decoded block by block with soundfile
(libsndfile: WAV, FLAC, Ogg, MP3, AIFF, CAF, ...; any sample format), down-mixed or cut to the
scored channels, and resampled with soxr's streaming resampler
(:func:`~stream_ser.audio.resample.resampler`), so memory stays flat whatever the length.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .channels import ChannelSelection, describe_channels, resolve_channels, select_channels
from .resample import native_rate_problem, resampler
from .source import AudioSourceError, SourceStats

log = logging.getLogger(__name__)

#: Native frames decoded per block when streaming a file (about 1 s at 16 kHz): soundfile's
#: per-read overhead made 4096-frame blocks cost 0.052 s of a 10-minute file's decoding against
#: 0.030 s; memory stays flat (one block at a time).
DEFAULT_FILE_BLOCK_FRAMES = 16384


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


#: One redirection of the standard error descriptor at a time (:func:`library_chatter_logged`).
_STDERR_FD_LOCK = threading.Lock()


@contextlib.contextmanager
def library_chatter_logged(active: bool = True) -> Iterator[None]:
    """Send what C libraries write on the standard error descriptor meanwhile to the debug log
    (``-vv``) instead of the terminal.

    libsndfile's MP3 decoder, libmpg123, prints diagnostics of its own on damaged or foreign data
    ("Note: Illegal Audio-MPEG-Header ...", "Giving up resync ..."); stream-ser reports the file's
    problem in its own error line. Wraps only libsndfile calls (opening a file, reading an MP3
    block); lines other threads write to standard error meanwhile go to the debug log too.

    Args:
        active: Redirect (False: do nothing, for formats whose decoders are quiet).
    """
    if not active:
        yield
        return
    with _STDERR_FD_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # standard error is closed: nothing to protect
            yield
            return
        with tempfile.TemporaryFile() as caught:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                text = caught.read().decode("utf-8", "replace").strip()
                if text:
                    log.debug("libsndfile: %s", " | ".join(text.splitlines()))


def is_mpeg(subtype: str) -> bool:
    """Whether libsndfile decodes this subtype with libmpg123 (which prints diagnostics)."""
    return subtype.startswith("MPEG")


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header.

    A pipe (``/dev/stdin`` from a pipe, ``<(...)``, a named pipe) or a device is refused before
    it is opened: libsndfile needs to seek in a file, and opening a named pipe that no program
    writes to would wait forever.

    Raises:
        AudioSourceError: If the file is missing, a directory, a pipe, a device or a socket,
            unreadable, not audio libsndfile can decode, its sample rate is outside
            :data:`~stream_ser.audio.resample.NATIVE_SAMPLE_RATE_RANGE_HZ`, or its name cannot be
            used (longer than the file system allows, or bytes that are not text in the
            file-system encoding, which libsndfile cannot be given).
    """
    import soundfile as sf

    p = Path(path)
    try:
        os.fsencode(p).decode(sys.getfilesystemencoding())
    except UnicodeDecodeError:
        raise AudioSourceError(
            f"{p}: the file name is not valid {sys.getfilesystemencoding().upper()} text (rename the file)"
        ) from None
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise AudioSourceError(f"{p}: no such file") from None
    except PermissionError:
        raise AudioSourceError(f"{p}: permission denied") from None
    except (OSError, ValueError) as exc:  # a name too long, a loop of symlinks, a NUL byte
        raise AudioSourceError(f"{p}: cannot open ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioSourceError(f"{p}: is a directory, not an audio file")
    if stat.S_ISFIFO(st.st_mode):
        raise AudioSourceError(f"{p}: is a pipe, not a file; stream-ser reads audio files, in which it can seek "
                               "(save the stream to a file first)")
    if not stat.S_ISREG(st.st_mode):
        kind = "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise AudioSourceError(f"{p}: is {kind}, not an audio file")
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
        with library_chatter_logged():
            info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        # libsndfile's MP3 path says a file it cannot parse "does not exist or is not a regular
        # file (possibly a pipe?)": this one exists and is a regular file (checked above)
        why = "format not recognised" if "possibly a pipe" in str(exc) else str(exc)
        raise AudioSourceError(f"{p}: cannot read audio ({why})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioSourceError(f"{p}: invalid header (rate {info.samplerate}, channels {info.channels})")
    problem = native_rate_problem(info.samplerate)
    if problem:
        raise AudioSourceError(f"{p}: {problem}")
    return AudioInfo(p, info.samplerate, info.channels, info.frames, info.frames / info.samplerate, info.subtype)


def iter_file_frames(
    path: str | Path,
    sample_rate_hz: int = 16000,
    block_frames: int = DEFAULT_FILE_BLOCK_FRAMES,
    channels: ChannelSelection = None,
) -> Iterator[np.ndarray]:
    """Stream a file as float32 frames at ``sample_rate_hz``, one column per scored channel.

    Decodes ``block_frames`` native frames at a time (soundfile, any sample format: 16/24/32-bit
    integer or float), averages the channels (``channels`` None) or selects them, and resamples
    with soxr's streaming resampler, so memory does not grow with the file's length.

    Args:
        path: Any format libsndfile reads (WAV, FLAC, OGG/Opus, MP3 with libsndfile >= 1.1).
        sample_rate_hz: Output sample rate (Hz).
        block_frames: Native frames per decoded block.
        channels: See :data:`~stream_ser.audio.channels.ChannelSelection`.

    Yields:
        float32 arrays of shape ``(n, k)``, ``k = len(resolve_channels(channels, ...))``, values
        nominally in [-1, 1].

    Raises:
        AudioSourceError: If the file cannot be opened, a selected channel does not exist, or
            decoding fails part-way.
    """
    import soundfile as sf

    info = audio_info(path)
    numbers = resolve_channels(channels, info.channels, str(info.path))
    resample = resampler(info.sample_rate_hz, sample_rate_hz, len(numbers))
    done = 0
    mpeg = is_mpeg(info.subtype)
    try:
        with library_chatter_logged():
            f = sf.SoundFile(str(info.path))
        with f:
            while True:
                with library_chatter_logged(mpeg):
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                done += block.shape[0]
                last = block.shape[0] < block_frames
                out = resample(select_channels(block, numbers), last)
                if out.size:
                    yield out
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as exc:
        at_s = done / info.sample_rate_hz
        raise AudioSourceError(f"{info.path}: decoding failed after {at_s:.2f} s of audio ({exc})") from None


def iter_file_chunks(
    path: str | Path, sample_rate_hz: int = 16000, block_frames: int = DEFAULT_FILE_BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Stream a file as mono float32 chunks at ``sample_rate_hz``.

    Decodes ``block_frames`` native frames at a time (soundfile), down-mixes by averaging
    channels and resamples with soxr's streaming resampler, so memory does not grow with the
    file's length (:func:`iter_file_frames` with the down-mix).

    Args:
        path: Any format libsndfile reads (WAV, FLAC, OGG/Opus, MP3 with libsndfile >= 1.1).
        sample_rate_hz: Output sample rate (Hz).
        block_frames: Native frames per decoded block.

    Yields:
        float32 arrays of shape ``(n,)``, values nominally in [-1, 1].

    Raises:
        AudioSourceError: If the file cannot be opened or decoding fails part-way.
    """
    for frames in iter_file_frames(path, sample_rate_hz, block_frames, None):
        yield frames[:, 0]


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
    """A recorded file, delivered as fast as it decodes (``stream-ser analyse``); a
    :class:`~stream_ser.audio.source.Source`.

    Args:
        path: The audio file.
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_frames: Native frames decoded per chunk.
        channels: See :data:`~stream_ser.audio.channels.ChannelSelection`; None averages the
            channels (channel number 0).

    Attributes:
        info: The file's header facts.
        name: ``str(path)``.
        channel_numbers: ``(0,)`` for the down-mix, else the 1-based channels scored.
        is_device: False.
        failure: None (a decoding fault is raised by :meth:`frames` at once).

    Raises:
        AudioSourceError: If the file cannot be opened or a selected channel does not exist
            (checked at construction).
    """

    is_device = False
    failure: str | None = None

    def __init__(
        self,
        path: str | Path,
        sample_rate_hz: int = 16000,
        block_frames: int = DEFAULT_FILE_BLOCK_FRAMES,
        channels: ChannelSelection = None,
    ) -> None:
        self.info = audio_info(path)
        self.name = str(path)
        self.sample_rate_hz = sample_rate_hz
        self.block_frames = block_frames
        self.channel_numbers = resolve_channels(channels, self.info.channels, str(self.info.path))
        self._stop = threading.Event()

    @property
    def channel_descriptions(self) -> tuple[str, ...]:
        """What each scored channel is: the file for the down-mix, else ``channel N``."""
        return describe_channels(self.name, self.channel_numbers)

    @property
    def native_rates_hz(self) -> tuple[int, ...]:
        """The file's native rate (Hz), as a one-entry tuple."""
        return (self.info.sample_rate_hz,)

    @property
    def stats(self) -> SourceStats:
        """Zero counters: a file drops nothing."""
        return SourceStats()

    def chunks(self) -> Iterator[np.ndarray]:
        """Mono float32 chunks at ``sample_rate_hz`` (see :func:`iter_file_chunks`).

        Raises:
            ValueError: If several channels were selected (use :meth:`frames`).
        """
        if len(self.channel_numbers) != 1:
            raise ValueError("several channels selected: use frames()")
        if self.channel_numbers == (0,):
            return iter_file_chunks(self.info.path, self.sample_rate_hz, self.block_frames)
        return (f[:, 0] for f in self.frames())

    def frames(self) -> Iterator[np.ndarray]:
        """float32 ``(n, len(channel_numbers))`` frames at ``sample_rate_hz`` (:func:`iter_file_frames`),
        ending at the next block once :meth:`stop` was called."""
        selection = None if self.channel_numbers == (0,) else self.channel_numbers
        for block in iter_file_frames(self.info.path, self.sample_rate_hz, self.block_frames, selection):
            if self._stop.is_set():
                return
            yield block

    def start(self) -> None:
        """Nothing to start: the file is decoded as :meth:`frames` is iterated."""

    def stop(self) -> None:
        """Let :meth:`frames` end before its next block (any thread)."""
        self._stop.set()

    def close(self) -> None:
        """Nothing to release: :meth:`frames` closes the file when it ends."""

    def wake_at(self, samples: int) -> None:
        """Nothing to hold back: a file is decoded as fast as it is read."""

    def clock_report(self) -> tuple:
        """``()``: a file has no device clock."""
        return ()
