"""Audio sources: files and input devices, delivered as 16 kHz float32 chunks.

Position in the pipeline: the first stage. Every source exposes ``name``, ``channel_numbers`` and
``frames()``, an iterator of float32 arrays of shape ``(n, len(channel_numbers))`` at the model's
sample rate, which the engines consume (one engine per channel). Mono sources also keep
``chunks()``, the same audio as ``(n,)`` arrays.

Channels (``channel_numbers``): ``(0,)`` means the source's channels averaged to mono (the default);
otherwise the 1-based numbers of the channels scored on their own (``--channels 1,2`` or ``all``),
each resampled on its own. Any native format is accepted: 8-192 kHz
(:data:`NATIVE_SAMPLE_RATE_RANGE_HZ`), 1-8 channels (more are averaged or selected), 16/24-bit integer or float samples (libsndfile and PortAudio convert them
to float32), resampled with soxr's streaming resampler (:data:`RESAMPLER_QUALITY`), whose chunked output
equals the whole-signal result (tested).

* :class:`FileSource` decodes a file block by block (soundfile/libsndfile), down-mixes or selects
  channels and resamples with a streaming resampler (soxr), so memory stays flat whatever the
  length.
* :class:`MicrophoneSource` opens a PortAudio input stream (python-sounddevice) whose callback
  only copies the device's native-rate frames into a preallocated :class:`RingBuffer`, counts
  overflows and notes the callback time; the consuming thread down-mixes (or selects channels)
  and resamples. With ``replay=`` it plays a file through the very same path at real-time pace
  (:class:`FileInputStream`), which is how ``stream-ser listen --input FILE`` works and how the
  live path is tested without a sound card.
* :class:`MultiDeviceSource` captures several devices at once (``listen --device A --device B``)
  as the channels of one stream: each device is down-mixed to one channel, the streams are
  aligned at their start and the drift between the devices' clocks is measured and corrected
  (:class:`ClockAligner`), so the channels stay aligned on the first device's clock.

Devices (:func:`list_input_devices`) are PortAudio's, plus, on Linux with PulseAudio or PipeWire
(``pipewire-pulse``), every PulseAudio source listed by ``pactl`` (monitors of outputs included),
opened through ALSA's ``pulse`` device with the source chosen by ``PULSE_SOURCE`` at open time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from .ring_buffer import OverrunError, RingBuffer

log = logging.getLogger(__name__)

#: Native frames decoded per block when streaming a file (about 1 s at 16 kHz): soundfile's
#: per-read overhead made 4096-frame blocks cost 0.052 s of a 10-minute file's decoding against
#: 0.030 s; memory stays flat (one block at a time).
DEFAULT_FILE_BLOCK_FRAMES = 16384
#: Most channels scored on their own in one session (``--channels``, several ``--device``).
MAX_CHANNELS = 8
#: Native sample rates (Hz) accepted from files and devices, resampled to the model's. A header
#: claiming a rate outside (a damaged or hostile file: 1 Hz would make a 40 kB file 40 s of work
#: and gigabytes of audio at 16 kHz) is refused.
NATIVE_SAMPLE_RATE_RANGE_HZ = (8000, 192000)

#: Which channels to score: None averages all channels into one (channel number 0); ``"all"``
#: scores every channel on its own; a sequence of 1-based channel numbers scores those.
ChannelSelection = Union[None, Literal["all"], Sequence[int]]


class AudioSourceError(RuntimeError):
    """An audio file or device cannot be used; the message names it and says why."""


#: soxr quality preset of every resampling to the model's rate (files, devices, the API). Its streaming
#: filter holds back less audio than HQ's: from a 44.1 or 48 kHz device in 40 ms blocks, a hop's last
#: sample is released at most 40 ms after it was captured, against 60 ms with HQ
#: (``python benchmarks/bench_resampler.py``), and ``listen``'s latency from capture to prediction fell
#: from p99 56 to 25 ms (``benchmarks/bench_live.py --resampler HQ|LQ``). LQ's passband ends near
#: 6 kHz at 16 kHz out (-3 dB at 6.5 kHz, -13 dB at 7 kHz; aliases below -100 dB); the shipped model
#: scores the same or better on the test speakers through it (``python -m training.experiments
#: robustness --conditions device48k-HQ device48k-LQ``, models/RESULTS.md section 4). One preset for
#: files and devices keeps ``listen --input FILE`` and ``analyse FILE`` identical.
RESAMPLER_QUALITY = "LQ"


def _resampler(in_rate_hz: int, out_rate_hz: int, channels: int = 1) -> Callable[[np.ndarray, bool], np.ndarray]:
    """A streaming resampler ``f(chunk, last) -> chunk`` (soxr ``ResampleStream``).

    Identity when the rates match. Chunks are float32, shape ``(n,)`` (``channels == 1``) or
    ``(n, channels)``; each channel is filtered on its own, so a channel resampled with others
    equals the same channel resampled alone (bit for bit with soxr), and the output of any
    chunking equals :func:`soxr.resample` of the whole signal at :data:`RESAMPLER_QUALITY`
    (tested). Thread: the consumer's.
    """
    if in_rate_hz == out_rate_hz:
        return lambda x, last=False: x
    import soxr

    stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, channels, dtype="float32", quality=RESAMPLER_QUALITY)
    return lambda x, last=False: stream.resample_chunk(x, last=last)


def _downmix(frames: np.ndarray) -> np.ndarray:
    """Mean over channels: ``(n, channels)`` -> float32 ``(n,)``."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    return frames.mean(axis=1, dtype=np.float32)


def parse_channel_selection(text: str) -> Literal["all"] | tuple[int, ...]:
    """Parse ``--channels``: ``all`` or comma-separated 1-based channel numbers (``1,2``).

    Args:
        text: The option's value.

    Returns:
        ``"all"`` or the channel numbers in the given order.

    Raises:
        ValueError: Empty, not numbers, a number below 1, a duplicate, or more than
            :data:`MAX_CHANNELS` channels (the message says which).
    """
    t = text.strip().lower()
    if t == "all":
        return "all"
    parts = [x.strip() for x in t.split(",")]
    if not parts or any(not x.isdigit() for x in parts):
        raise ValueError(f"expected 'all' or channel numbers counted from 1 such as '1,2', got {text!r}")
    numbers = tuple(int(x) for x in parts)
    if any(n < 1 for n in numbers):
        raise ValueError(f"channels are numbered from 1, got {text!r}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"a channel is listed twice in {text!r}")
    if len(numbers) > MAX_CHANNELS:
        raise ValueError(f"at most {MAX_CHANNELS} channels, got {len(numbers)}")
    return numbers


def resolve_channels(selection: ChannelSelection, n_channels: int, where: str) -> tuple[int, ...]:
    """The channel numbers a selection gives for a source with ``n_channels`` channels.

    Args:
        selection: See :data:`ChannelSelection`.
        n_channels: The source's channel count (>= 1).
        where: The file or device, for error messages.

    Returns:
        ``(0,)`` for the down-mix (``selection`` None), else 1-based channel numbers; ``"all"``
        gives ``1 .. min(n_channels, MAX_CHANNELS)``.

    Raises:
        AudioSourceError: A channel number above ``n_channels`` or below 1, a duplicate, or
            more than :data:`MAX_CHANNELS` channels.
    """
    if selection is None:
        return (0,)
    if isinstance(selection, str):
        if selection != "all":
            raise AudioSourceError(f"{where}: channel selection must be 'all' or channel numbers, got {selection!r}")
        if n_channels > MAX_CHANNELS:
            log.warning("%s has %d channels; scoring the first %d", where, n_channels, MAX_CHANNELS)
        return tuple(range(1, min(n_channels, MAX_CHANNELS) + 1))
    numbers = tuple(int(n) for n in selection)
    if not numbers:
        raise AudioSourceError(f"{where}: no channel selected")
    if len(set(numbers)) != len(numbers) or len(numbers) > MAX_CHANNELS:
        raise AudioSourceError(f"{where}: select at most {MAX_CHANNELS} different channels, got {list(numbers)}")
    bad = [n for n in numbers if not 1 <= n <= n_channels]
    if bad:
        listed = ",".join(map(str, bad))
        raise AudioSourceError(
            f"{where}: has {n_channels} channel{'s' if n_channels != 1 else ''}; channel {listed} "
            f"does not exist (channels are numbered 1-{n_channels})"
        )
    return numbers


def select_channels(frames: np.ndarray, numbers: Sequence[int]) -> np.ndarray:
    """The channels to score, from native frames.

    Args:
        frames: float32 ``(n, channels)`` (or ``(n,)`` for mono).
        numbers: ``(0,)`` for the mean of all channels, else 1-based channel numbers.

    Returns:
        float32 C-contiguous array of shape ``(n, len(numbers))``.
    """
    if frames.ndim == 1:
        frames = frames[:, None]
    if tuple(numbers) == (0,):
        return np.ascontiguousarray(_downmix(frames)[:, None])
    return np.ascontiguousarray(frames[:, [n - 1 for n in numbers]], dtype=np.float32)


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


#: One redirection of the standard error descriptor at a time (:func:`_library_chatter_logged`).
_STDERR_FD_LOCK = threading.Lock()


@contextlib.contextmanager
def _library_chatter_logged(active: bool = True) -> Iterator[None]:
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


def _is_mpeg(subtype: str) -> bool:
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
            :data:`NATIVE_SAMPLE_RATE_RANGE_HZ`, or its name cannot be used (longer than
            the file system allows, or bytes that are not text in the file-system encoding, which
            libsndfile cannot be given).
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
        with _library_chatter_logged():
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


def native_rate_problem(rate_hz: float) -> str | None:
    """Why a native sample rate (Hz) is refused, or None inside :data:`NATIVE_SAMPLE_RATE_RANGE_HZ`."""
    low, high = NATIVE_SAMPLE_RATE_RANGE_HZ
    if low <= rate_hz <= high:
        return None
    shown = f"{rate_hz:.0f}" if math.isfinite(rate_hz) else str(rate_hz)
    return f"sample rate {shown} Hz is outside the {low // 1000}-{high // 1000} kHz stream-ser accepts"


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
        channels: See :data:`ChannelSelection`.

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
    resample = _resampler(info.sample_rate_hz, sample_rate_hz, len(numbers))
    done = 0
    mpeg = _is_mpeg(info.subtype)
    try:
        with _library_chatter_logged():
            f = sf.SoundFile(str(info.path))
        with f:
            while True:
                with _library_chatter_logged(mpeg):
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
    """A recorded file, delivered as fast as it decodes (``stream-ser analyse``).

    Args:
        path: The audio file.
        sample_rate_hz: Output sample rate (the model's, 16 kHz).
        block_frames: Native frames decoded per chunk.
        channels: See :data:`ChannelSelection`; None averages the channels (channel number 0).

    Attributes:
        info: The file's header facts.
        name: ``str(path)``.
        channel_numbers: ``(0,)`` for the down-mix, else the 1-based channels scored.

    Raises:
        AudioSourceError: If the file cannot be opened or a selected channel does not exist
            (checked at construction).
    """

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
        """float32 ``(n, len(channel_numbers))`` frames at ``sample_rate_hz`` (:func:`iter_file_frames`)."""
        selection = None if self.channel_numbers == (0,) else self.channel_numbers
        return iter_file_frames(self.info.path, self.sample_rate_hz, self.block_frames, selection)


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
    """An input device as PortAudio (or PulseAudio) reports it.

    Attributes:
        index: PortAudio device index to open; for a PulseAudio source, the index of ALSA's
            ``pulse`` device through which it is opened.
        name: Device name (for a PulseAudio source, its description, e.g. ``Monitor of
            Built-in Audio``).
        hostapi: Host API name (ALSA, Core Audio, ...; ``PulseAudio`` for a PulseAudio source).
        max_input_channels: Input channels (a PulseAudio source: its native channel count).
        default_sample_rate_hz: The device's default (native) sample rate (Hz).
        is_default: True for the default input device.
        is_monitor: True for a source that carries what the computer plays: a PulseAudio/PipeWire
            monitor, or a loopback device recognised by name (BlackHole, VB-Cable, Stereo Mix,
            Loopback, Soundflower, "What U Hear", names with "monitor"): the other side of a call.
        pulse_source: The PulseAudio source name (``alsa_output....monitor``) when the device is a
            PulseAudio source opened through ALSA's ``pulse`` device; None for PortAudio devices.
    """

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_sample_rate_hz: float
    is_default: bool
    is_monitor: bool = False
    pulse_source: str | None = None

    @property
    def display_index(self) -> str:
        """The index as ``stream-ser devices`` prints it (``-`` for a PulseAudio source, which is
        chosen by name)."""
        return "-" if self.pulse_source else str(self.index)


#: Names of loopback devices that carry what the computer plays (macOS, Windows, Linux ALSA).
LOOPBACK_NAME = re.compile(
    r"monitor|loopback|stereo mix|what u hear|wave out|blackhole|soundflower|vb-audio|cable output|"
    r"voicemeeter out|wasapi loopback",
    re.IGNORECASE,
)


def _is_loopback_name(name: str) -> bool:
    return bool(LOOPBACK_NAME.search(name))


#: Longest wait (s) for ``pactl`` when listing PulseAudio sources.
PACTL_TIMEOUT_S = 3.0


def list_pulse_sources() -> list[dict[str, Any]]:
    """PulseAudio (or PipeWire's pulse server) sources, via ``pactl``.

    Returns:
        One dict per source: ``name`` (PulseAudio source name), ``description``, ``channels``,
        ``rate_hz`` and ``is_monitor``; empty when ``pactl`` is missing, no server answers, or
        not on Linux. ``pactl -f json`` (PulseAudio >= 16, PipeWire) is used when available,
        else ``pactl list short sources`` (descriptions are then the source names).

    Thread: any (runs a subprocess; a few milliseconds).
    """
    if not sys.platform.startswith("linux") or shutil.which("pactl") is None:
        return []
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = subprocess.run(["pactl", "-f", "json", "list", "sources"], capture_output=True, text=True,
                              timeout=PACTL_TIMEOUT_S, env=env)
        if proc.returncode == 0 and proc.stdout.lstrip().startswith("["):
            out = []
            for src in json.loads(proc.stdout):
                spec = str(src.get("sample_specification", ""))
                m = re.search(r"(\d+)ch (\d+)Hz", spec)
                props = src.get("properties") or {}
                name = str(src.get("name", ""))
                out.append({
                    "name": name,
                    "description": str(src.get("description") or props.get("device.description") or name),
                    "channels": int(m.group(1)) if m else 2,
                    "rate_hz": int(m.group(2)) if m else 48000,
                    "is_monitor": props.get("device.class") == "monitor" or name.endswith(".monitor"),
                })
            return out
        proc = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True,
                              timeout=PACTL_TIMEOUT_S, env=env)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.debug("pactl failed: %s", exc)
        return []
    if proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        m = re.search(r"(\d+)ch (\d+)Hz", fields[3])
        out.append({"name": fields[1], "description": fields[1], "channels": int(m.group(1)) if m else 2,
                    "rate_hz": int(m.group(2)) if m else 48000, "is_monitor": fields[1].endswith(".monitor")})
    return out


def list_input_devices(include_pulse_sources: bool = True) -> list[InputDevice]:
    """All devices with at least one input channel.

    Args:
        include_pulse_sources: Also list PulseAudio sources (:func:`list_pulse_sources`), when
            PortAudio has ALSA's ``pulse`` device to open them through.

    Returns:
        PortAudio's input devices in index order, then the PulseAudio sources.

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
    pulse_index: int | None = None
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            hostapi = hostapis[d["hostapi"]]["name"]
            if d["name"] == "pulse" and "ALSA" in hostapi:
                pulse_index = i
            out.append(
                InputDevice(
                    i,
                    d["name"],
                    hostapi,
                    int(d["max_input_channels"]),
                    float(d["default_samplerate"]),
                    i == default_in,
                    _is_loopback_name(d["name"]),
                )
            )
    if include_pulse_sources and pulse_index is not None:
        for src in list_pulse_sources():
            out.append(
                InputDevice(pulse_index, src["description"], "PulseAudio", src["channels"], float(src["rate_hz"]),
                            False, src["is_monitor"], src["name"])
            )
    return out


def find_input_device(spec: str | int | None) -> InputDevice:
    """Choose an input device by index, by name (exact, else unique substring), or the default.

    A name is matched against PortAudio's device names and PulseAudio's source descriptions and
    source names (``Monitor of Speakers``, ``alsa_output.pci-0000_00_1f.3.analog-stereo.monitor``).

    A substring that matches exactly one PortAudio device chooses it even if PulseAudio
    sources match too (so a name that worked before PulseAudio sources were listed still does).

    Args:
        spec: An index (int or digit string), a name or case-insensitive name substring, or
            None for the default input device.

    Raises:
        AudioSourceError: No input devices; index out of range or not an input; no name
            matches; several names match (the message lists them).
    """
    by_name = not (spec is None or isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()))
    devices = list_input_devices(include_pulse_sources=by_name)
    if not devices:
        raise AudioSourceError("no input devices found (is a microphone connected? run `stream-ser devices`)")
    if spec is None:
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    if not by_name:
        index = int(spec)
        for d in devices:
            if d.index == index and d.pulse_source is None:
                return d
        raise AudioSourceError(f"device {index} is not an input device (run `stream-ser devices`)")
    assert isinstance(spec, str)
    exact = [d for d in devices if spec in (d.name, d.pulse_source)]
    if exact:
        return exact[0]
    needle = spec.lower()
    matches = [d for d in devices if needle in d.name.lower() or needle in (d.pulse_source or "").lower()]
    portaudio_matches = [d for d in matches if d.pulse_source is None]
    if len(portaudio_matches) == 1:  # PortAudio's own devices first, as before PulseAudio sources were listed
        return portaudio_matches[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioSourceError(f"no input device matches {spec!r} (run `stream-ser devices`)")
    listing = "; ".join(f"{d.index}: {d.name}" if d.pulse_source is None else f"{d.name} [{d.pulse_source}]"
                        for d in matches)
    raise AudioSourceError(f"{spec!r} matches several input devices ({listing}); give an index or a longer name")


#: Serialises stream opening while ``PULSE_SOURCE`` is set for one PulseAudio source.
_PULSE_ENV_LOCK = threading.Lock()


def _open_stream(factory: Callable[..., Any], device: InputDevice, **kwargs: Any) -> Any:
    """Open an input stream; a PulseAudio source is opened through ALSA's ``pulse`` device with
    ``PULSE_SOURCE`` naming the source while the stream is opened (the ALSA plugin reads it when
    it connects, as documented for libpulse clients), then restored."""
    if device.pulse_source is None:
        return factory(device=device.index, **kwargs)
    with _PULSE_ENV_LOCK:
        old = os.environ.get("PULSE_SOURCE")
        os.environ["PULSE_SOURCE"] = device.pulse_source
        try:
            return factory(device=device.index, **kwargs)
        finally:
            if old is None:
                os.environ.pop("PULSE_SOURCE", None)
            else:
                os.environ["PULSE_SOURCE"] = old


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
        mpeg = _is_mpeg(self.info.subtype)
        try:
            with _library_chatter_logged():
                f = sf.SoundFile(str(self.info.path))
            with f:
                while not self._stop.is_set():
                    with _library_chatter_logged(mpeg):
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


#: Default capture block (s) of :class:`MicrophoneSource` and :class:`MultiDeviceSource` (see
#: ``MicrophoneSource``'s ``block_s``: CPU per callback against latency).
DEFAULT_BLOCK_S = 0.04


class MicrophoneSource:
    """Live audio from an input device (or a file replayed in real time), as 16 kHz chunks.

    The PortAudio callback runs on PortAudio's thread and only copies ``indata`` into a
    preallocated ring buffer (``capacity_s`` seconds of native frames), counts overflow flags and
    notes ``(callback time, frames delivered)`` (one tuple assignment, for clock-drift
    measurement); :meth:`frames` (and :meth:`chunks`), on the consumer's thread, reads new frames,
    down-mixes or selects channels, and resamples them to ``sample_rate_hz`` with soxr's
    streaming resampler.

    Args:
        device: Device index, name or name substring, an :class:`InputDevice`, or None for the
            default input.
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
        replay: Play this file through the same path at real-time pace instead of opening a
            device (``listen --input``).
        realtime: With ``replay``, pace the blocks (True) or deliver them as fast as the consumer
            takes them (False; nothing is dropped).
        stall_timeout_s: A device that delivers nothing for this long is treated as failed.
        stream_factory: Makes the input stream (default ``sounddevice.InputStream``); called with
            the keyword arguments ``device, samplerate, channels, dtype, blocksize, callback,
            finished_callback``. Tests inject fake streams here to simulate device faults.
        channels: Which channels to score (:data:`ChannelSelection`). None (default) opens one
            channel (PortAudio mixes or picks it) and scores it as channel 0; otherwise the device
            is opened with as many channels as needed (``all``: every channel it offers, at most
            :data:`MAX_CHANNELS`; ALSA's ``pulse``/``default`` devices report 32, so give numbers
            there) and each selected channel is scored on its own.
        wake: Event set whenever audio arrives or the stream ends (shared by the devices of a
            :class:`MultiDeviceSource`); a private one by default.
        clock: Monotonic clock (s) for callback times and stall detection.

    Attributes:
        name: ``mic:<device name>`` or the replayed file path.
        device: The opened device (None for a replay).
        device_sample_rate_hz: The native rate captured.
        channel_numbers: ``(0,)`` for the down-mix, else the 1-based channels scored.
        overflows: Callbacks flagged with input overflow by PortAudio.
        status_flags: Callbacks with any status flag set (overflow, underflow, priming).
        dropped_frames: Native frames lost because the consumer fell behind.
        failure: Why capture ended on its own (device vanished or stalled), or None.
        clock_point: ``(callback time in s, frames delivered so far)`` of the latest callback, or
            None before the first.

    Raises:
        AudioSourceError: If PortAudio is missing, the device is not found, a selected channel
            does not exist, or the stream cannot be opened (unsupported rate/channels, device
            busy).
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
        self.sample_rate_hz = sample_rate_hz
        self.overflows = 0
        self.status_flags = 0
        self.dropped_frames = 0
        self.failure: str | None = None
        self.stall_timeout_s = stall_timeout_s
        self.clock_point: tuple[float, int] | None = None
        self.device: InputDevice | None = None
        self._clock = clock
        self._ended = threading.Event()
        self._data = wake if wake is not None else threading.Event()
        self._is_device = replay is None
        if replay is not None:
            info = audio_info(replay)
            self.name = str(replay)
            self.device_sample_rate_hz = info.sample_rate_hz
            self.channel_numbers = resolve_channels(channels, info.channels, self.name)
            blocksize = max(1, int(round(block_s * info.sample_rate_hz)))
            self._ring = RingBuffer(int(capacity_s * info.sample_rate_hz), info.channels)
            self._stream: Any = FileInputStream(
                replay, blocksize, self._callback, self._on_finished, realtime,
                ready=lambda: self._ring.written - self._read < self._ring.capacity // 2,
            )
        else:
            if isinstance(device, InputDevice):
                dev = device
                if stream_factory is None:
                    stream_factory = _sounddevice().InputStream
            elif stream_factory is None:
                stream_factory = _sounddevice().InputStream
                dev = find_input_device(device)
            else:  # an injected stream: describe the device as asked
                dev = InputDevice(device if isinstance(device, int) else -1, str(device or "fake"), "test", 1, 48000.0, True)
            self.device = dev
            self.name = f"mic:{dev.name}"
            self.device_sample_rate_hz = int(dev.default_sample_rate_hz)
            problem = native_rate_problem(self.device_sample_rate_hz)
            if problem:
                raise AudioSourceError(f"input device {dev.display_index} ({dev.name}): {problem}")
            if channels is None:
                self.channel_numbers = (0,)
                open_channels = 1
            else:
                offered = max(1, min(dev.max_input_channels, MAX_CHANNELS))
                self.channel_numbers = resolve_channels(channels, offered, self.name)
                open_channels = offered if channels == "all" else max(self.channel_numbers)
            blocksize = max(1, int(round(block_s * self.device_sample_rate_hz)))
            self._ring = RingBuffer(int(capacity_s * self.device_sample_rate_hz), open_channels)
            try:
                self._stream = _open_stream(
                    stream_factory,
                    dev,
                    samplerate=self.device_sample_rate_hz,
                    channels=open_channels,
                    dtype="float32",
                    blocksize=blocksize,
                    callback=self._callback,
                    finished_callback=self._on_finished,
                )
            except Exception as exc:  # sounddevice.PortAudioError and ValueError for bad settings
                raise AudioSourceError(
                    f"cannot open input device {dev.display_index} ({dev.name}) at "
                    f"{self.device_sample_rate_hz} Hz, {open_channels} channel(s): {exc}"
                ) from None
        self._read = 0
        self._wake_frames = 0  # native frames written at which the callback wakes the consumer
        self._yielded = 0  # output samples frames() has yielded
        self._closed = False
        self._stop_requested = threading.Event()
        self._last_data_s = clock()

    @property
    def channel_descriptions(self) -> tuple[str, ...]:
        """What each scored channel is: the source name for the down-mix, else ``channel N``."""
        if self.channel_numbers == (0,):
            return (self.name,)
        return tuple(f"channel {n}" for n in self.channel_numbers)

    @property
    def dropped_s(self) -> float:
        """Seconds of native audio lost because the consumer fell behind."""
        return self.dropped_frames / self.device_sample_rate_hz

    # PortAudio thread: copy and count, nothing else.
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
            if getattr(status, "input_overflow", False):
                self.overflows += 1
        self._ring.write(indata)
        written = self._ring.written
        self.clock_point = (self._clock(), written)
        if written >= self._wake_frames:
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
        """Ask capture to stop; :meth:`frames` then closes the stream, drains what was captured
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
            self._wake_frames = 0
            return
        frames = math.ceil(ahead * self.device_sample_rate_hz / self.sample_rate_hz)
        # never let a quarter of the ring buffer wait: a long hop must not overrun it, and a replay
        # that is not paced only writes while the buffer is less than half full
        self._wake_frames = self._read + min(frames, self._ring.capacity // 4)

    def __enter__(self) -> "MicrophoneSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Consumer thread.
    def _stalled(self) -> bool:
        return self._is_device and not self._ended.is_set() and self._clock() - self._last_data_s > self.stall_timeout_s

    def _take(self) -> tuple[np.ndarray | None, int]:
        """New native frames since the last call, and how many frames were lost before them.

        Returns:
            ``(frames, lost)``: float32 ``(n, opened channels)`` (n may be 0), or None when the
            writer lapped the reader during the copy (call again); ``lost`` native frames were
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

    def _end_failure(self) -> str | None:
        """After the stream ended: why, if it was not asked to stop or a replayed file could not
        be decoded to its end (sets :attr:`failure`)."""
        replay_error = getattr(self._stream, "error", None) if not self._is_device else None
        if self.failure is None and replay_error is not None:
            self.failure = str(replay_error)
        if self._is_device and self.failure is None and not self._stop_requested.is_set():
            self.failure = f"{self.name}: the input stream ended unexpectedly (device disconnected?)"
        return self.failure

    def frames(self, poll_s: float = 0.1) -> Iterator[np.ndarray]:
        """Captured audio as float32 ``(n, len(channel_numbers))`` frames at ``sample_rate_hz``,
        until :meth:`stop` or the end of the replayed file. Call :meth:`start` first.

        Args:
            poll_s: Longest wait (s) for new frames before checking for the end again.

        Raises:
            AudioSourceError: After the last captured frames, if the device stopped on its own
                (vanished) or delivered nothing for ``stall_timeout_s``; :attr:`failure` says
                which. Everything captured before the fault is yielded first.
        """
        k = len(self.channel_numbers)
        resample = _resampler(self.device_sample_rate_hz, self.sample_rate_hz, k)
        self._last_data_s = self._clock()
        self._yielded = 0
        self._wake_frames = 0
        while True:
            if self._stop_requested.is_set():
                self.close()
            elif self._stalled():
                self.failure = f"{self.name}: no audio for {self.stall_timeout_s:g} s (device stalled or disconnected)"
                self.close()
            ended = self._ended.is_set()
            waiting = self._ring.written < self._wake_frames  # a wake_at() target not yet reached
            if not ended:  # once the stream has ended nothing wakes the wait: the rest is in the ring
                self._data.wait(max(poll_s, 1.0) if waiting else poll_s)
            self._data.clear()
            written = self._ring.written
            if written < self._wake_frames and not (self._ended.is_set() or self._stop_requested.is_set()):
                # audio arrived while it waits (the latest callback's time) is not a stall; frames
                # written but not yet read are no proof of life (a device that stalls below the
                # target would otherwise never be detected)
                point = self.clock_point
                if point is not None:
                    self._last_data_s = max(self._last_data_s, point[0])
                continue
            native, _lost = self._take()
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
                failure = self._end_failure()
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


# --------------------------------------------------------------------------------------------
# Several devices on one stream clock

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

    Thread: the consumer's (points are read from :attr:`MicrophoneSource.clock_point`).
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
    """The clock of one device of a :class:`MultiDeviceSource`, as measured.

    Attributes:
        device: ``mic:<device name>``.
        nominal_rate_hz: The rate the stream was opened at (Hz).
        measured_rate_hz: Frames delivered per second of the monotonic clock (least-squares
            slope), or None before :data:`MIN_CLOCK_FIT_S` of audio.
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


class MultiDeviceSource:
    """Several input devices at once, as the channels of one stream on one clock.

    ``listen --device "Microphone" --device "Monitor of Speakers"``: device *k* becomes channel
    *k* (its own channels averaged). Each device is a :class:`MicrophoneSource` (own PortAudio
    stream, callback and ring buffer); the consumer thread reads them all, aligns them on the
    first device's clock (:class:`ClockAligner`: start offset, then drift measured in ppm and
    corrected), resamples each to ``sample_rate_hz`` and yields the frames all devices have
    delivered. The stream clock is the first device's: channel *k*'s sample *n* was captured
    at (about) the same moment as channel 1's sample *n*.

    Args:
        devices: Device specs (index, name or substring, or :class:`InputDevice`), 2 to
            :data:`MAX_CHANNELS` of them.
        sample_rate_hz: Output rate (the model's, 16 kHz).
        block_s: Callback block duration (s).
        capacity_s: Ring buffer capacity (s) per device.
        stall_timeout_s: A device that delivers nothing for this long ends the session with an
            error.
        stream_factory: As :class:`MicrophoneSource` (tests inject fake streams).
        correct_drift: Measure and correct clock drift (True) or only measure it.
        clock: Monotonic clock (s).

    Attributes:
        name: The devices' names joined by `` + ``.
        devices: The per-device sources.
        channel_numbers: ``(1, 2, ...)``, one per device.
        failure: Why capture ended on its own (a device vanished or stalled), or None.

    Raises:
        AudioSourceError: A device cannot be found or opened (the devices opened before it are
            closed again), or the same device is given twice.
        ValueError: Fewer than 2 or more than :data:`MAX_CHANNELS` devices.

    Threads: each device's PortAudio callback thread only copies, counts and time-stamps (see
    :class:`MicrophoneSource`); one consumer thread runs :meth:`frames` (alignment, drift
    correction, resampling); :meth:`stop` may be called from any thread or a signal handler.
    """

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
        self.devices: list[MicrophoneSource] = []
        try:
            for spec in devices:
                self.devices.append(
                    MicrophoneSource(
                        device=spec, sample_rate_hz=sample_rate_hz, block_s=block_s, capacity_s=capacity_s,
                        stall_timeout_s=stall_timeout_s, stream_factory=stream_factory, wake=self._wake, clock=clock,
                    )
                )
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
        self._aligners = [ClockAligner(d.device_sample_rate_hz) for d in self.devices]

    @property
    def device_sample_rate_hz(self) -> int:
        """The first device's native rate (Hz); see :attr:`device_sample_rates_hz` for all."""
        return self.devices[0].device_sample_rate_hz

    @property
    def device_sample_rates_hz(self) -> tuple[int, ...]:
        """Every device's native rate (Hz), in channel order."""
        return tuple(d.device_sample_rate_hz for d in self.devices)

    @property
    def channel_descriptions(self) -> tuple[str, ...]:
        """The device behind each channel (``mic:<name>``)."""
        return tuple(d.name for d in self.devices)

    @property
    def overflows(self) -> int:
        """Input overflows over all devices."""
        return sum(d.overflows for d in self.devices)

    @property
    def status_flags(self) -> int:
        """Callbacks with a status flag, over all devices."""
        return sum(d.status_flags for d in self.devices)

    @property
    def dropped_frames(self) -> int:
        """Native frames lost because the consumer fell behind, over all devices (replaced by
        silence so that the channels stay aligned)."""
        return sum(d.dropped_frames for d in self.devices)

    @property
    def dropped_s(self) -> float:
        """Seconds of audio lost because the consumer fell behind (the most of any device)."""
        return max(d.dropped_s for d in self.devices)

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
            out.append(DeviceClock(d.name, d.device_sample_rate_hz, None if rate is None else rate[0], drift, sigma,
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
            d.stop()

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

    def __enter__(self) -> "MultiDeviceSource":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        resamplers = [_resampler(d.device_sample_rate_hz, self.sample_rate_hz, 1) for d in devs]
        pending: list[list[np.ndarray]] = [[] for _ in devs]
        pending_n = [0] * len(devs)
        last_points: list[tuple[float, int] | None] = [None] * len(devs)
        first_frame_s: list[float | None] = [None] * len(devs)
        aligned = False
        failed: MicrophoneSource | None = None
        now = self._clock()
        for d in devs:
            d._last_data_s = now

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

        while True:
            if self._stop_requested.is_set():
                self.close()
            elif failed is None:
                for d in devs:
                    if d._stalled():
                        d.failure = f"{d.name}: no audio for {d.stall_timeout_s:g} s (device stalled or disconnected)"
                    elif d._ended.is_set() and not d._closed:  # vanished: its stream ended on its own
                        d._end_failure()
                    if d.failure is not None:
                        failed = d
                        self.close()  # one device gone ends the session: stop the others too
                        break
            ended = any(d._ended.is_set() for d in devs)
            self._wake.wait(poll_s)
            self._wake.clear()
            for i, d in enumerate(devs):
                point = d.clock_point
                if point is not None and point is not last_points[i]:
                    last_points[i] = point
                    d._last_data_s = self._clock()
                    aligners[i].fit.add(point[0], point[1])
                    if first_frame_s[i] is None:
                        first_frame_s[i] = point[0] - point[1] / d.device_sample_rate_hz
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
                native, lost = d._take()
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
                out = resamplers[i](x, False)
                if out.shape[0]:
                    pending[i].append(out)
                    pending_n[i] += out.shape[0]
            block = emit_common()
            if block is not None:
                yield block
            elif ended and not got:
                for i in range(len(devs)):
                    tail = resamplers[i](np.zeros((0, 1), np.float32), True)
                    if tail.shape[0]:
                        pending[i].append(tail)
                        pending_n[i] += tail.shape[0]
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
