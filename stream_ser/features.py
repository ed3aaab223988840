"""The feature recipe: one window of audio -> log-mel spectrogram.

This module is the only place stream-ser computes model input, for training
(``training.windows``) and for live scoring (``stream_ser.engine``) alike, so the two can never
drift apart. Every parameter lives in the frozen :class:`FeatureConfig`, which the exporter
writes into the ONNX model's metadata and the runtime reads back from it.

The recipe for one mono float32 window at 16 kHz (3.0 s = 48 000 samples by default):

0. **DC removal**: the window's mean is subtracted (``remove_dc``), so a microphone's DC offset
   neither passes the speech gate on silence nor skews peak normalisation.
1. **Speech gate** on an absolute level: frame RMS in dBFS (25 ms frames, 10 ms hop); the window
   is speech only if at least ``gate_min_speech_s`` of frames reach ``gate_dbfs``. Silent or
   near-silent windows get no label at all, instead of the model guessing on room noise.
2. **Peak normalisation** to ``peak_dbfs`` (0 dBFS: the largest absolute sample becomes 1.0).
3. **Silence trim** of leading and trailing frames whose RMS is below ``trim_dbfs`` *of full
   scale* (the semantics of ``librosa.effects.trim`` with ``ref=1.0``, an absolute reference, not
   ``ref=np.max``).
4. **Pad/crop** to the window length (zeros appended at the end; crop keeps the start). The
   first windows of a stream are shorter than the window (only audio since the stream start)
   and are padded here.
5. **Log-mel**: power STFT (the semantics of ``librosa.stft``), Slaney mel filterbank
   (``librosa.filters.mel``) and ``librosa.power_to_db`` semantics with ``ref=1.0`` (dB re full
   scale).

**librosa is the reference, numpy runs it.** Importing ``librosa.filters`` alone costs about 1 s
and 140 MB of memory (it pulls in scipy, numba and joblib), more than everything else the live
tool loads together (``benchmarks/README.md``). The runtime therefore computes the recipe with numpy: framing
with ``sliding_window_view``, ``numpy.fft.rfft`` over Hann-windowed frames, a mean of squares for
frame RMS, and the mel filterbank *built by* ``librosa.filters.mel``, read from a table shipped
with the package (``mel_basis.npz``, written by ``python -m training.mel_table``). A config the
table does not hold, or a window other than Hann, falls back to librosa itself. The tests pin the
numpy path to librosa's functions (``tests/test_features_reference.py``): the same gate and trim
decisions and the same log-mel to within float32 rounding, on real speech and on fuzzed input.

The 3 s window, peak normalisation, silence trimming and log-mel input follow the published SER
recipes the project builds on (see ``models/README.md``); the level thresholds were chosen from
the level statistics of RAVDESS and TESS (speech frame RMS peaks between -42 and -13 dBFS,
recording noise floors below -48 dBFS).

Why one module of about 720 lines: it is the one feature recipe, its validation and its numpy
implementation of librosa's functions, kept together so training and runtime cannot drift.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped whenever the recipe below changes meaning; a model trained on another version is
#: refused by :mod:`stream_ser.model`. Version 3 added ``speech_gate``: the gate the training
#: windows passed. A version 2 recipe is version 3 with ``speech_gate="level"`` (the only gate
#: version 2 knew; the log-mels are the same), so :meth:`FeatureConfig.from_dict` reads it as
#: that (:data:`READABLE_VERSIONS`).
FEATURE_VERSION = 3

#: Recipe versions a model's metadata may carry: the current one, and version 2, read as version
#: 3 with ``speech_gate="level"``.
READABLE_VERSIONS = (2, FEATURE_VERSION)

#: Speech gates a training window can have passed (``FeatureConfig.speech_gate``); the same names
#: as the runtime's gates (:data:`stream_ser.vad.GATES`).
SPEECH_GATES = ("vad", "level")

#: Per-thread work arrays of the recipe (see :func:`_scratch` and :func:`_work_array`).
_SCRATCH = threading.local()

# Bounds of a valid :class:`FeatureConfig`. A model file is untrusted input: its recipe is
# checked against these before any audio is touched, so a hostile or broken recipe is refused
# with the field's name instead of dividing by zero, allocating gigabytes or running silently.
#: Sample rates (Hz) a recipe may expect: 8-96 kHz (the audio sources accept 8-192 kHz and
#: resample to the recipe's rate).
SAMPLE_RATE_RANGE_HZ = (8000, 96000)
#: Longest scored window (s); the published recipes use 3 s.
MAX_WINDOW_S = 10.0
#: Largest FFT (samples): 43 ms at 96 kHz; bounds the STFT's work arrays with :data:`MAX_FRAMES`.
MAX_N_FFT = 4096
#: Shortest STFT window (samples).
MIN_WIN_LENGTH = 16
#: Most STFT frames, and most level frames, in one window (149 and 298 by default); with
#: :data:`MAX_N_FFT` the STFT's work arrays stay below 100 MB.
MAX_FRAMES = 1000
#: STFT window functions: Hann (computed with numpy) and four more that librosa builds.
WINDOWS = ("hann", "hamming", "blackman", "bartlett", "boxcar")
#: Mel filter normalisations (``librosa.filters.mel(norm=...)``).
MEL_NORMS = ("slaney", None)
#: Range (dBFS) of the gate and trim levels: frame levels are floored at -200 dBFS (digital
#: silence) and cannot exceed 0 dBFS, so a threshold outside it would let silence through or
#: nothing at all.
LEVEL_DBFS_RANGE = (-120.0, 0.0)
#: Range (dBFS) of the peak level after normalisation.
PEAK_DBFS_RANGE = (-60.0, 0.0)
#: Range of the spectrogram exponent (1 = magnitude, 2 = power).
POWER_RANGE = (0.0, 4.0)
#: Range of the power floor before the log: -200 dB to -20 dB.
AMIN_RANGE = (1e-20, 1e-2)


def _shown(value: Any) -> str:
    """A field's value for an error message: its repr, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the feature recipe (see the module docstring).

    Attributes:
        version: Feature recipe version (:data:`FEATURE_VERSION`, the only one accepted).
        remove_dc: Subtract the window mean before everything else (version 2).
        sample_rate_hz: Sample rate of the audio the recipe expects (Hz, an integer in
            :data:`SAMPLE_RATE_RANGE_HZ`, 8000-96000).
        window_s: Length of the scored window (s, > 0 and at most :data:`MAX_WINDOW_S`, 10 s;
            at least ``n_fft`` samples); 3.0 s as in the published SER recipes.
        hop_s: Default hop between scored windows (s, from 1 sample to ``window_s``); also the
            hop used to cut training windows.
        speech_gate: The speech gate the model's training windows passed (one of
            :data:`SPEECH_GATES`): ``"vad"``, the runtime's default gate (the level gate below and
            Silero VAD, :mod:`stream_ser.vad`), or ``"level"``, the level gate alone. Training
            reads it (``training.windows``); at run time the gate is chosen by ``--gate``
            (default ``vad``), and ``stream-ser info`` shows both. :func:`window_features` does
            not use it: a window's log-mel is the same under either gate.
        gate_dbfs: Frame RMS level (dBFS, in :data:`LEVEL_DBFS_RANGE`, -120 to 0) a frame must
            reach to count as speech.
        gate_min_speech_s: Total duration (s) of frames at or above ``gate_dbfs`` needed for the
            window to count as speech; > 0 (digital silence must never pass the gate) and at
            most the level frames of one window can hold.
        level_frame_length: Frame length (samples, 1 to ``min(window_samples, MAX_N_FFT)``) of
            the RMS used by gate and trim (25 ms).
        level_hop_length: Hop (samples, 1 to ``level_frame_length``) of the RMS used by gate and
            trim (10 ms); at most :data:`MAX_FRAMES` level frames per window.
        peak_dbfs: Peak level after normalisation (dBFS, in :data:`PEAK_DBFS_RANGE`, -60 to 0);
            0.0 means the peak sample is 1.0.
        trim_dbfs: Leading/trailing frames with RMS below this level (dBFS, after peak
            normalisation; from -120 to below ``peak_dbfs``) are trimmed.
        n_fft: FFT size (samples, ``win_length`` to :data:`MAX_N_FFT`, 4096).
        win_length: STFT window length (samples, :data:`MIN_WIN_LENGTH` to ``n_fft``; 25 ms).
        hop_length: STFT hop (samples, 1 to ``win_length``, 20 ms); at most :data:`MAX_FRAMES`
            frames per window.
        window: STFT window function name (one of :data:`WINDOWS`, scipy/librosa names).
        center: Whether frames are centred (``librosa.stft(center=...)``); False keeps every frame
            inside the window.
        n_mels: Number of mel bands (1 to ``n_fft // 2 + 1``).
        fmin_hz: Lowest mel band edge (Hz, >= 0 and below ``fmax_hz``).
        fmax_hz: Highest mel band edge (Hz, at most the Nyquist frequency ``sample_rate_hz / 2``).
        mel_htk: HTK mel scale (True) or Slaney (False).
        mel_norm: Mel filter normalisation (``"slaney"`` or None).
        power: Exponent of the magnitude spectrogram (> 0 and at most 4; 2.0 = power).
        amin: Floor of the power before the log (``librosa.power_to_db(amin=...)``, in
            :data:`AMIN_RANGE`, 1e-20 to 1e-2); 1e-10 gives a floor of -100 dB.

    Raises:
        ValueError: If a field has the wrong type or lies outside its range above (the message
            names the field, its value and the range).
    """

    version: int = FEATURE_VERSION
    remove_dc: bool = True
    sample_rate_hz: int = 16000
    window_s: float = 3.0
    hop_s: float = 0.5
    speech_gate: str = "vad"
    gate_dbfs: float = -50.0
    gate_min_speech_s: float = 0.25
    level_frame_length: int = 400
    level_hop_length: int = 160
    peak_dbfs: float = 0.0
    trim_dbfs: float = -35.0
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 320
    window: str = "hann"
    center: bool = False
    n_mels: int = 40
    fmin_hz: float = 50.0
    fmax_hz: float = 8000.0
    mel_htk: bool = False
    mel_norm: str | None = "slaney"
    power: float = 2.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        # types first (a float field may be given as an integer), so the ranges compare numbers
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{f.name} = {_shown(value)}: must be true or false")
                object.__setattr__(self, f.name, bool(value))
            elif f.type == "int":
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"{f.name} = {_shown(value)}: must be an integer")
                object.__setattr__(self, f.name, int(value))
            elif f.type == "float":
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                    raise ValueError(f"{f.name} = {_shown(value)}: must be a number")
                try:
                    number = float(value)
                except OverflowError:  # an integer beyond the float range
                    number = math.inf
                if not math.isfinite(number):
                    raise ValueError(f"{f.name} = {_shown(value)}: must be a finite number")
                object.__setattr__(self, f.name, number)
            elif f.type == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name} = {_shown(value)}: must be a string")
            elif f.type == "str | None" and not (value is None or isinstance(value, str)):
                raise ValueError(f"{f.name} = {_shown(value)}: must be a string or null")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every field within its documented range (see the class docstring), in dependency order.

        Raises:
            ValueError: Naming the first field out of range, its value and the range.
        """

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{name} = {_shown(getattr(self, name))}: must be {rule}")

        need(self.version == FEATURE_VERSION, "version", f"{FEATURE_VERSION} (this stream-ser's feature recipe)")
        need(self.speech_gate in SPEECH_GATES, "speech_gate", " or ".join(map(repr, SPEECH_GATES)))
        low, high = SAMPLE_RATE_RANGE_HZ
        need(low <= self.sample_rate_hz <= high, "sample_rate_hz", f"from {low} to {high} Hz")
        need(0 < self.window_s <= MAX_WINDOW_S, "window_s", f"> 0 and at most {MAX_WINDOW_S:g} s")
        need(0 < self.hop_s <= self.window_s and 1 <= self.hop_samples <= self.window_samples, "hop_s",
             f"from 1 sample to the window ({self.window_s:g} s)")
        need(MIN_WIN_LENGTH <= self.n_fft <= min(MAX_N_FFT, self.window_samples), "n_fft",
             f"from {MIN_WIN_LENGTH} to {MAX_N_FFT} samples and at most the window ({self.window_samples} samples)")
        need(MIN_WIN_LENGTH <= self.win_length <= self.n_fft, "win_length",
             f"from {MIN_WIN_LENGTH} to n_fft ({self.n_fft}) samples")
        need(1 <= self.hop_length <= self.win_length, "hop_length", f"from 1 to win_length ({self.win_length}) samples")
        need(self.n_frames <= MAX_FRAMES, "hop_length",
             f"large enough that a window has at most {MAX_FRAMES} STFT frames (it has {self.n_frames})")
        need(self.window in WINDOWS, "window", "one of " + ", ".join(WINDOWS))
        need(1 <= self.n_mels <= self.n_fft // 2 + 1, "n_mels", f"from 1 to n_fft // 2 + 1 ({self.n_fft // 2 + 1})")
        nyquist = self.sample_rate_hz / 2
        need(0 <= self.fmin_hz < nyquist, "fmin_hz", f">= 0 and below the Nyquist frequency ({nyquist:g} Hz)")
        if self.fmax_hz > nyquist:
            raise ValueError(f"fmax_hz = {_shown(self.fmax_hz)}: is above the Nyquist frequency ({nyquist:g} Hz)")
        need(self.fmin_hz < self.fmax_hz, "fmax_hz", f"above fmin_hz ({self.fmin_hz:g} Hz)")
        need(self.mel_norm in MEL_NORMS, "mel_norm", "'slaney' or null")
        need(POWER_RANGE[0] < self.power <= POWER_RANGE[1], "power", f"> {POWER_RANGE[0]:g} and at most {POWER_RANGE[1]:g}")
        need(AMIN_RANGE[0] <= self.amin <= AMIN_RANGE[1], "amin", f"from {AMIN_RANGE[0]:g} to {AMIN_RANGE[1]:g}")
        need(1 <= self.level_frame_length <= min(self.window_samples, MAX_N_FFT), "level_frame_length",
             f"from 1 to {min(self.window_samples, MAX_N_FFT)} samples (the window, at most {MAX_N_FFT})")
        need(1 <= self.level_hop_length <= self.level_frame_length, "level_hop_length",
             f"from 1 to level_frame_length ({self.level_frame_length}) samples")
        n_levels = 1 + (self.window_samples - self.level_frame_length) // self.level_hop_length
        need(n_levels <= MAX_FRAMES, "level_hop_length",
             f"large enough that a window has at most {MAX_FRAMES} level frames (it has {n_levels})")
        low, high = LEVEL_DBFS_RANGE
        need(low <= self.gate_dbfs <= high, "gate_dbfs", f"from {low:g} to {high:g} dBFS")
        most_s = n_levels * self.level_hop_length / self.sample_rate_hz
        need(0 < self.gate_min_speech_s <= most_s, "gate_min_speech_s",
             f"> 0 and at most the {most_s:g} s the level frames of one window hold")
        need(PEAK_DBFS_RANGE[0] <= self.peak_dbfs <= PEAK_DBFS_RANGE[1], "peak_dbfs",
             f"from {PEAK_DBFS_RANGE[0]:g} to {PEAK_DBFS_RANGE[1]:g} dBFS")
        need(low <= self.trim_dbfs < self.peak_dbfs, "trim_dbfs",
             f"from {low:g} dBFS to below peak_dbfs ({self.peak_dbfs:g} dBFS)")

    @property
    def window_samples(self) -> int:
        """Window length in samples (48 000 for 3.0 s at 16 kHz)."""
        return int(round(self.window_s * self.sample_rate_hz))

    @property
    def hop_samples(self) -> int:
        """Default hop in samples (8 000 for 0.5 s at 16 kHz)."""
        return int(round(self.hop_s * self.sample_rate_hz))

    def check_hop(self, hop_s: float | None = None) -> int:
        """A hop between scored windows, in samples: ``hop_s`` (None: :attr:`hop_s`) rounded at
        ``sample_rate_hz``.

        Raises:
            ValueError: If the hop is not a finite number from one sample to the window.
        """
        hop = self.hop_s if hop_s is None else float(hop_s)
        samples = int(round(hop * self.sample_rate_hz)) if math.isfinite(hop) else 0  # int(round(inf)) raises
        if not 1 <= samples <= self.window_samples:
            raise ValueError(f"hop must be between 1 sample and the window ({self.window_s} s), got {hop_s} s")
        return samples

    @property
    def n_frames(self) -> int:
        """Number of STFT frames in one window (149 with the defaults); with ``center``, of the
        window padded by ``n_fft // 2`` samples on each side, as ``librosa.stft`` pads it (so an
        odd ``n_fft`` gives one frame fewer than ``1 + window_samples // hop_length``)."""
        length = self.window_samples + (2 * (self.n_fft // 2) if self.center else 0)
        return 1 + (length - self.n_fft) // self.hop_length

    @property
    def input_shape(self) -> tuple[int, int]:
        """Shape of one log-mel window: ``(n_mels, n_frames)``."""
        return (self.n_mels, self.n_frames)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (used in the model metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Rebuild a config from :meth:`to_dict` output.

        A version 2 recipe (no ``speech_gate``) is read as version 3 with ``speech_gate="level"``
        (see :data:`FEATURE_VERSION`).

        Raises:
            ValueError: If a field is missing or unknown (the model was made by another
                version of the recipe), has the wrong type or lies outside its range.
        """
        if data.get("version") == 2 and "speech_gate" not in data:
            data = {**data, "version": FEATURE_VERSION, "speech_gate": "level"}
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = names - set(data), set(data) - names
        if missing or unknown:
            raise ValueError(
                f"feature config does not match this version of stream-ser "
                f"(missing: {sorted(missing)}, unknown: {sorted(unknown)})"
            )
        return cls(**data)


#: Largest sample magnitude the recipe sees (+80 dBFS); float audio beyond it (a hostile or
#: broken file: 1e38) is clipped, so no sum of squares overflows float32.
MAX_ABS_SAMPLE = 1e4


def _as_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Mono float32 audio with NaN made 0, infinities made +-1 and magnitudes clipped to
    :data:`MAX_ABS_SAMPLE` (one pass over the samples when there is nothing to fix)."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.abs(x).max() <= MAX_ABS_SAMPLE:  # also true for NaN
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -MAX_ABS_SAMPLE, MAX_ABS_SAMPLE)
    return x


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Read-only view ``(n_frames, length)`` of frames ``x[i*hop : i*hop + length]`` (as
    ``librosa.util.frame``, frames on the first axis) of a 1-D array; no frames if ``x`` is
    shorter than ``length``. ``as_strided`` directly: ``sliding_window_view(x, length)[::hop]``
    builds the same view with 10 us more Python overhead, three times per window."""
    n = 0 if x.size < length else 1 + (x.size - length) // hop
    step = x.strides[0]
    return np.lib.stride_tricks.as_strided(x, (n, length), (hop * step, step), writeable=False)


def _frame_mean_square(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """float32 mean of squares of every frame: ``librosa.feature.rms(center=False) ** 2``
    (a dot product per frame, so no squared copy of the audio is made).

    ``numpy.vecdot`` (numpy >= 2.0) runs the ~300 dot products of a 3 s window in 8 us against
    19 us for ``einsum("ij,ij->i")``; it sums in another order, so values can differ in the last
    bits, but over every window of RAVDESS, TESS and the benchmark recording (25,579 windows) no
    gate decision or trim bound changed and every log-mel stayed bit-identical."""
    v = _frames(x, length, hop)
    return np.vecdot(v, v) / np.float32(length)


def frame_levels_dbfs(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Frame RMS levels in dBFS (full scale = 1.0).

    Frames of ``level_frame_length`` samples every ``level_hop_length`` samples, not centred
    (``librosa.feature.rms(center=False)``).

    Args:
        audio: Mono samples, shape ``(n_samples,)``, float, nominally in [-1, 1].
        config: Gives ``level_frame_length`` and ``level_hop_length``.

    Returns:
        float32 array of shape ``(n_level_frames,)`` (empty if the audio is shorter than one
        frame); -200 dBFS for digital silence.

    Raises:
        ValueError: If ``audio`` is not 1-D.
    """
    return _levels_dbfs(_as_mono_float32(audio), config)


def _levels_dbfs(x: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """:func:`frame_levels_dbfs` of samples already known to be finite float32 ``(n,)``."""
    if x.size < config.level_frame_length:
        return np.zeros(0, dtype=np.float32)
    rms = np.sqrt(_frame_mean_square(x, config.level_frame_length, config.level_hop_length))
    return (20.0 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


def is_speech(audio: np.ndarray, config: FeatureConfig) -> bool:
    """The speech gate: does the window hold enough frames at an absolute speech level?

    Args:
        audio: Mono samples, shape ``(n_samples,)``, float in [-1, 1] (not yet normalised);
            its DC is removed first when ``config.remove_dc``.
        config: Gives ``gate_dbfs`` and ``gate_min_speech_s``.

    Returns:
        True if frames totalling at least ``gate_min_speech_s`` reach ``gate_dbfs``.
    """
    return _gate(_conditioned(audio, config), config)


def _conditioned(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """float32 mono, non-finite samples replaced, DC removed (``config.remove_dc``)."""
    x = _as_mono_float32(audio)
    if config.remove_dc and x.size:
        x = x - np.float32(x.mean(dtype=np.float64))
    return x


def _gate(x: np.ndarray, config: FeatureConfig) -> bool:
    """The speech gate on finite float32 samples (see :func:`is_speech`)."""
    levels = _levels_dbfs(x, config)
    loud_s = np.count_nonzero(levels >= config.gate_dbfs) * config.level_hop_length / config.sample_rate_hz
    return bool(loud_s >= config.gate_min_speech_s)


def trim_bounds(audio: np.ndarray, config: FeatureConfig) -> tuple[int, int]:
    """Start and end sample of the audio left after the silence trim.

    Exactly the interval ``librosa.effects.trim(audio, top_db=-trim_dbfs, ref=1.0,
    frame_length=level_frame_length, hop_length=level_hop_length)`` returns: frame RMS over
    *centred* frames (zero-padded by half a frame at both ends), a frame is kept when its level
    ``10*log10(max(1e-10, rms**2))`` exceeds ``trim_dbfs``; the interval runs from the first kept
    frame's start to one hop past the last kept frame's start (at most the audio's end).

    Args:
        audio: float32 mono samples, shape ``(n_samples,)``, already peak-normalised.
        config: Gives ``trim_dbfs``, ``level_frame_length`` and ``level_hop_length``.

    Returns:
        ``(start, end)`` sample indices, ``0 <= start <= end <= n_samples``; ``(0, 0)`` when no
        frame reaches the level.
    """
    half = config.level_frame_length // 2
    x = _as_mono_float32(audio)
    return _trim_bounds_padded(np.pad(x, (half, half)), x.size, config)


def _trim_bounds_padded(padded: np.ndarray, n: int, config: FeatureConfig) -> tuple[int, int]:
    """:func:`trim_bounds` of ``n`` samples given with ``level_frame_length // 2`` zeros on each side."""
    hop = config.level_hop_length
    rms = np.sqrt(_frame_mean_square(padded, config.level_frame_length, hop))
    db = 10.0 * np.log10(np.maximum(np.float32(1e-10), rms * rms))
    kept = np.flatnonzero(db > config.trim_dbfs)
    if kept.size == 0:
        return 0, 0
    return int(kept[0]) * hop, min(n, (int(kept[-1]) + 1) * hop)


def preprocess(audio: np.ndarray, config: FeatureConfig) -> np.ndarray | None:
    """Gate, peak-normalise, trim and pad/crop one window.

    Args:
        audio: Mono samples at ``config.sample_rate_hz``, shape ``(n_samples,)``, any float
            dtype, nominally in [-1, 1]. Non-finite samples are replaced (NaN -> 0, +-Inf ->
            +-1). Any length is accepted; the engine passes ``window_samples`` (fewer in the
            first windows of a stream, which hold only the audio captured so far).
        config: The feature recipe.

    Returns:
        float32 array of shape ``(config.window_samples,)`` with peak ``10**(peak_dbfs/20)``,
        or None when the speech gate finds no speech.

    Raises:
        ValueError: If ``audio`` is not 1-D.
    """
    out = np.zeros(config.window_samples, dtype=np.float32)
    return None if _preprocess_kept(audio, config, out) is None else out


def _preprocess_kept(audio: np.ndarray, config: FeatureConfig, out: np.ndarray) -> int | None:
    """:func:`preprocess` writing into ``out`` (float32 ``(window_samples,)``, overwritten);
    returns how many leading samples of ``out`` hold the trimmed audio (the rest are the zero
    padding), or None when the gate finds no speech."""
    x = _as_mono_float32(audio)
    n, half = x.size, config.level_frame_length // 2
    # one per-thread work array: [half zeros | the window | half zeros], conditioned in place
    padded = _work_array(n + 2 * half)
    padded[:half] = 0.0
    padded[half + n :] = 0.0
    y = padded[half : half + n]
    y[...] = x
    if config.remove_dc and n:
        y -= np.float32(y.mean(dtype=np.float64))
    if not _gate(y, config):
        return None
    peak = max(float(y.max()), -float(y.min()))
    y *= np.float32(10.0 ** (config.peak_dbfs / 20.0) / peak)
    start, end = _trim_bounds_padded(padded, n, config)
    m = min(end - start, config.window_samples)
    out[:m] = y[start : start + m]
    out[m:] = 0.0
    return m


def _work_array(size: int) -> np.ndarray:
    """This thread's float32 work array of exactly ``size`` samples (a view of a reused buffer)."""
    buf = getattr(_SCRATCH, "work", None)
    if buf is None or buf.size < size:
        buf = _SCRATCH.work = np.empty(max(size, 1), dtype=np.float32)
    return buf[:size]


#: Mel filterbanks built by ``librosa.filters.mel`` for the configs stream-ser ships, so the
#: runtime never imports librosa for them (``python -m training.mel_table`` rewrites the file).
MEL_TABLE = Path(__file__).with_name("mel_basis.npz")


def mel_key(config: FeatureConfig) -> str:
    """Name of ``config``'s filterbank in :data:`MEL_TABLE` (every parameter that shapes it)."""
    return (
        f"sr{config.sample_rate_hz}_nfft{config.n_fft}_mels{config.n_mels}_fmin{config.fmin_hz:g}"
        f"_fmax{config.fmax_hz:g}_htk{int(config.mel_htk)}_norm{config.mel_norm}"
    )


def needs_librosa(config: FeatureConfig) -> bool:
    """Whether computing ``config``'s features imports librosa: its mel filterbank is not in
    :data:`MEL_TABLE`, or its window is not Hann. The shipped recipes never do."""
    if config.window != "hann":
        return True
    if not MEL_TABLE.is_file():
        return True
    with np.load(MEL_TABLE) as table:
        return mel_key(config) not in table.files


def librosa_mel_basis(config: FeatureConfig) -> np.ndarray:
    """``librosa.filters.mel`` for ``config``, every parameter explicit: float32
    ``(n_mels, 1 + n_fft // 2)``. Imports librosa (about 1 s on first use)."""
    import librosa

    return librosa.filters.mel(
        sr=config.sample_rate_hz,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.fmin_hz,
        fmax=config.fmax_hz,
        htk=config.mel_htk,
        norm=config.mel_norm,
        dtype=np.float32,
    )


@functools.lru_cache(maxsize=8)
def mel_basis(config: FeatureConfig) -> np.ndarray:
    """The Slaney mel filterbank of ``config`` (``librosa.filters.mel``), built once.

    Returns:
        Read-only float32 array ``(n_mels, 1 + n_fft // 2)``: from :data:`MEL_TABLE` when it
        holds ``config``'s filterbank, else from :func:`librosa_mel_basis`.
    """
    basis = None
    if MEL_TABLE.is_file():
        with np.load(MEL_TABLE) as table:
            if mel_key(config) in table.files:
                basis = np.asarray(table[mel_key(config)], dtype=np.float32)
    if basis is None:
        basis = librosa_mel_basis(config)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=8)
def mel_projection(config: FeatureConfig) -> np.ndarray:
    """:func:`mel_basis` without its trailing all-zero columns: the FFT bins above the top
    band's upper edge, which no band covers.

    With ``fmax_hz`` = 4000 Hz at 16 kHz and ``n_fft`` = 512 that keeps 128 of 257 bins, so
    :func:`log_mel` squares and projects half the spectrum (the output is bit-identical: the
    dropped terms are exact zeros).

    Returns:
        Read-only, C-contiguous float32 array ``(n_mels, n_used)``, ``1 <= n_used <= 1 + n_fft // 2``.
    """
    basis = mel_basis(config)
    covered = np.flatnonzero(basis.any(axis=0))
    used = int(covered[-1]) + 1 if covered.size else 1
    out = np.ascontiguousarray(basis[:, :used])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def stft_window(config: FeatureConfig) -> np.ndarray:
    """The STFT analysis window, float64 ``(n_fft,)``: a periodic window of ``win_length``
    samples zero-padded to ``n_fft`` at both ends, as ``librosa.stft`` builds it
    (``get_window(window, win_length, fftbins=True)`` then ``util.pad_center``).

    The Hann window is computed here (``0.5 - 0.5*cos(2*pi*n/win_length)``); other windows
    come from ``librosa.filters.get_window``.
    """
    if config.window == "hann":
        n = np.arange(config.win_length, dtype=np.float64)
        win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.win_length)
    else:
        import librosa

        win = librosa.filters.get_window(config.window, config.win_length, fftbins=True)
    out = np.zeros(config.n_fft, dtype=np.float64)
    left = (config.n_fft - config.win_length) // 2
    out[left : left + config.win_length] = win
    out.setflags(write=False)
    return out


def log_mel(window: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel spectrogram of one preprocessed window.

    ``librosa.power_to_db(mel_basis @ |librosa.stft(window)| ** power, ref=1.0, amin=amin)``,
    computed with ``numpy.fft.rfft`` over Hann-windowed frames (see the module docstring).

    Args:
        window: float32 samples, shape ``(config.window_samples,)`` (output of
            :func:`preprocess`).
        config: The feature recipe.

    Returns:
        float32 array of shape ``(n_mels, n_frames)`` = ``config.input_shape``, in dB re full
        scale, floored at ``10*log10(amin)`` (-100 dB by default).

    Raises:
        ValueError: If ``window`` does not have ``window_samples`` samples.
    """
    x = _as_mono_float32(window)
    if x.size != config.window_samples:
        raise ValueError(f"expected {config.window_samples} samples, got {x.size}")
    return _log_mel_checked(x, config)


def _log_mel_checked(x: np.ndarray, config: FeatureConfig, kept: int | None = None) -> np.ndarray:
    """:func:`log_mel` of a window already known to be finite float32 ``(window_samples,)``
    (the output of :func:`preprocess`), without checking it again on the per-hop path.

    ``kept``: only the first ``kept`` samples can be non-zero (the trimmed audio before the
    padding, from :func:`_preprocess_kept`). Frames that start at or after it hold only zeros,
    whose power spectrum is exactly 0, so they skip the windowing, the FFT and the squaring and
    get zero power directly: bit for bit the same log-mel, for a quarter to a half fewer FFTs in
    a window with a pause. The mel projection still runs over every frame, so BLAS
    sums each value in the same order as before.
    """
    if config.center:
        x = np.pad(x, (config.n_fft // 2, config.n_fft // 2))
        kept = None
    # float64 frames, as librosa.stft multiplies float32 audio by its float64 window (numpy's
    # float64 FFT is also ~4x faster than its float32 one here). Written into per-thread scratch
    # arrays: fresh 600 kB temporaries cost more in page faults than the FFT itself.
    frames, spec, power, power32 = _scratch(config)
    live = config.n_frames if kept is None else min(config.n_frames, -(-kept // config.hop_length))
    frames, spec, power = frames[:live], spec[:live], power[:live]
    np.multiply(_frames(x, config.n_fft, config.hop_length)[:live], stft_window(config), out=frames)
    np.fft.rfft(frames, axis=-1, out=spec)
    basis = mel_projection(config)
    bins = basis.shape[1]  # only the FFT bins some mel band covers: the rest would be multiplied by 0
    spec, power, power32 = spec[:, :bins], power[:, :bins], power32[:, :bins]
    np.square(spec.real, out=power)
    power += np.square(spec.imag)
    if config.power != 2.0:
        np.power(power, config.power / 2.0, out=power)
    power32[:live] = power
    power32[live:] = 0.0
    mel = basis @ power32.T
    return (10.0 * np.log10(np.maximum(np.float32(config.amin), mel))).astype(np.float32, copy=False)


def _scratch(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's work arrays for :func:`log_mel` with ``config``: frames float64
    ``(n_frames, n_fft)``, spectrum complex128, power float64 and float32 ``(n_frames, n_bins)``."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    bufs = arrays.get(config)
    if bufs is None:
        n, bins = config.n_frames, 1 + config.n_fft // 2
        bufs = arrays[config] = (
            np.empty((n, config.n_fft)),
            np.empty((n, bins), np.complex128),
            np.empty((n, bins)),
            np.empty((n, bins), np.float32),
        )
    return bufs


def one_blas_thread():
    """Context manager: numpy's BLAS (OpenBLAS, MKL, ...) runs on one thread while it is active.

    The runtime's only BLAS call is the mel projection in :func:`log_mel`, a (40 x 257) @
    (257 x 149) float32 product per window with 8 kHz bands, (40 x 128) @ (128 x 149) with
    4 kHz ones (tens of us): too small to gain from a second thread.
    OpenBLAS uses one thread per core by default, and on this project's 2-core machine with the
    other core busy, `stream-ser analyse` of a 10-minute recording took 4.8 s instead of 2.4 s
    because every product waited for the busy core (``OPENBLAS_NUM_THREADS=1`` gives
    the same effect). Uses threadpoolctl's ``threadpool_limits`` (the library scikit-learn uses
    for this), which sets the limit process-wide while active and restores it after; enter it
    after numpy is imported (any stream_ser module imports it). Costs about 2 ms.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def window_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray | None:
    """The whole recipe: :func:`preprocess` then :func:`log_mel`.

    Args:
        audio: Mono samples, shape ``(n_samples,)``, float in [-1, 1] at
            ``config.sample_rate_hz``.
        config: The feature recipe.

    Returns:
        float32 log-mel of shape ``config.input_shape``, or None if the window is not speech.
    """
    out = getattr(_SCRATCH, "window", None)
    if out is None or out.size != config.window_samples:
        out = _SCRATCH.window = np.empty(config.window_samples, dtype=np.float32)
    kept = _preprocess_kept(audio, config, out)  # a per-thread array: log_mel consumes it at once
    return None if kept is None else _log_mel_checked(out, config, kept)
