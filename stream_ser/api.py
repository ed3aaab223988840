"""The Python API: load a model, score a recording, stream predictions.

Position in the pipeline: a thin layer over the same stages the command line uses
(:mod:`~stream_ser.sources` -> :class:`~stream_ser.engine.Engine` -> predictions), so a file
scored here gives exactly the rows ``stream-ser analyse --csv`` writes. Everything is
re-exported from the package (``import stream_ser``; the heavy imports happen on first use)::

    import stream_ser

    model = stream_ser.load_model()                      # the shipped model (or a path)
    result = stream_ser.analyse("clip.flac", model=model)
    print(result.clip.label, result.clip.confidence)     # clip-level result
    for p in result.timeline:                            # one Prediction per 0.5 s hop
        print(p.end_s, p.label, p.confidence)

    for p in stream_ser.stream(my_chunks, sample_rate_hz=44100, model=model):
        ...                                              # your own audio, resampled for you

The shapes follow silero-vad and faster-whisper: a model object you load once, functions that
take audio (a path or an array) and return frozen dataclasses, and an incremental scorer
(:class:`StreamScorer`, like silero-vad's ``VADIterator``) for audio that arrives in callbacks.

Speech gate: every function takes ``gate="vad"`` (default: a window is scored when it is loud
enough *and* the voice-activity detector, Silero VAD, hears a voice in it, so music, noise and
effects get no label) or ``gate="level"`` (loud enough is enough, as the model's training
windows were chosen); see ``docs/vad.md``. ``Prediction.is_speech`` is that gate's decision.

Audio conventions: arrays are float (values nominally in [-1, 1]) or integer PCM (scaled by the
dtype's full scale, e.g. int16 / 32768), shape ``(n_samples,)`` or ``(n_samples, n_channels)``
(channels are averaged, as the command line does); any sample rate, resampled to the model's
(16 kHz) with soxr's streaming resampler. Times in results are seconds on the *stream clock*
(from sample counts at the model's rate), so results do not depend on how audio is chunked.

Threads: a model may be shared by several scorers used from one thread at a time each; a
:class:`StreamScorer` (and the iterators of :func:`stream`) belong to one thread.

One path scores a recording: :func:`score_recording` (a file or an array, down-mixed or
channel by channel, with its :class:`~stream_ser.channels.ChannelPlan`). :func:`analyse`,
:func:`analyse_channels`, ``stream-ser analyse`` and ``stream-ser batch`` all run it, so none of
them re-implements the scoring; it prints and writes nothing itself.

Length: this module is longer than the project's ~600 lines because it is the public API and
half of it is the docstrings (arguments, shapes, units, errors) the reference in
``docs/api.md`` relies on; the code is under 300 lines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .adaptation import adapt_from_deprecated
from .channels import ChannelPlan, ChannelPlanError
from .engine import ChannelEngines, ClipAccumulator, Engine, _check_jobs
from .features import one_blas_thread
from .model import EmotionModel, ModelError
from .sources import (
    AudioSourceError,
    ChannelSelection,
    FileSource,
    MicrophoneSource,
    _downmix,
    _resampler,
    resolve_channels,
    select_channels,
)
from .summary import CallSummary, CallSummaryBuilder, summarise_call, summarize_call
from .types import Analysis, ClipResult, Prediction
from .vad import DEFAULT_GATE

__all__ = [
    "Analysis",
    "AudioSourceError",
    "CallSummary",
    "ChannelPlan",
    "ChannelPlanError",
    "ClipResult",
    "EmotionModel",
    "ModelError",
    "Prediction",
    "ScoredRecording",
    "StreamScorer",
    "analyse",
    "analyse_channels",
    "analyze",
    "load_model",
    "score_recording",
    "stream",
    "stream_file",
    "stream_microphone",
    "summarise_call",
    "summarize_call",
]

AudioPath = str | os.PathLike[str]


def load_model(path: AudioPath | None = None, *, num_threads: int = 1) -> EmotionModel:
    """Load an emotion model (the shipped one by default).

    The labels and the feature recipe come from the model file's metadata, so a model you
    trained yourself (``python -m training.train``) works the same way.

    Args:
        path: An ``.onnx`` file exported by ``training.export``; None for the shipped model.
        num_threads: onnxruntime intra-op threads (1 keeps scoring off the other cores).

    Returns:
        The loaded :class:`~stream_ser.model.EmotionModel`; ``model.labels`` are its classes in
        output order and ``model.feature_config.sample_rate_hz`` its rate (16000).

    Raises:
        ModelError: If the file is missing, not ONNX, or has missing or mismatched metadata.
    """
    return EmotionModel(path, num_threads=num_threads)


def _model(model: EmotionModel | AudioPath | None) -> EmotionModel:
    if isinstance(model, EmotionModel):
        return model
    return load_model(model)


def _check_rate(sample_rate_hz: float) -> None:
    """Raise ValueError unless ``sample_rate_hz`` is a positive whole number of Hz."""
    if int(sample_rate_hz) != sample_rate_hz or sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be a positive integer, got {sample_rate_hz!r}")


def _as_float_pcm(chunk: np.ndarray) -> np.ndarray:
    """Validate one chunk and return it as float32, shape ``(n,)`` or ``(n, channels)``.

    Raises:
        ValueError: If the chunk is not 1-D or 2-D, or not a real numeric dtype.
    """
    x = np.asarray(chunk)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected audio of shape (n_samples,) or (n_samples, n_channels), got shape {x.shape}")
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        full_scale = float(-int(info.min)) if info.min < 0 else float(info.max + 1) / 2.0
        offset = 0.0 if info.min < 0 else full_scale
        x = ((x.astype(np.float64) - offset) / full_scale).astype(np.float32)
    elif x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
    else:
        raise ValueError(f"expected float or integer PCM samples, got dtype {x.dtype}")
    return x


def _as_float_frames(chunk: np.ndarray) -> np.ndarray:
    """Validate one chunk and return float32 mono samples, shape ``(n,)`` (channels averaged).

    Raises:
        ValueError: If the chunk is not 1-D or 2-D, or not a real numeric dtype.
    """
    return _downmix(_as_float_pcm(chunk))


class StreamScorer:
    """Incremental scorer for audio that arrives in pieces (callbacks, sockets, generators).

    Push chunks of any size at ``sample_rate_hz``; every time ``hop_s`` of new audio has
    arrived, the latest window (3 s) is scored. The result is identical to scoring the whole
    stream at once, however it is chunked. This is the engine the command line uses, with
    down-mixing, integer-PCM scaling and streaming resampling in front of it.

    Args:
        model: A loaded model, a model path, or None for the shipped model.
        sample_rate_hz: Sample rate of the chunks you push (Hz); resampled to the model's.
        hop_s: Seconds of new audio between predictions; None for the model's default (0.5 s).
            Must be in (0, window_s].
        source: Name written into every prediction's ``source``.
        channel: Channel index written into every prediction's ``channel``.
        gate: The speech gate: ``"vad"`` (default; level and voice activity) or ``"level"``.
        adapt: The adaptation to the voice: ``"auto"`` (default: the best the model carries),
            ``"embedding"``, ``"output"`` or ``"none"`` (see :func:`analyse`).

    Attributes:
        model: The model in use.
        labels: The model's class names in output order.
        sample_rate_hz: Rate of the input chunks (Hz).

    Raises:
        ModelError: If ``model`` is a path that cannot be loaded (or the VAD's model is missing).
        ValueError: If ``sample_rate_hz`` is not positive, ``hop_s`` is out of range, ``gate``
            is not ``"vad"`` or ``"level"``, or ``adapt`` is not a mode or names one the model
            does not carry.

    Example::

        scorer = StreamScorer(sample_rate_hz=48000)
        for chunk in chunks:                 # float32 (n,) or (n, channels), any n
            for p in scorer.push(chunk):
                print(p.end_s, p.label)
        for p in scorer.flush():             # the final partial hop
            ...
    """

    def __init__(
        self,
        model: EmotionModel | AudioPath | None = None,
        sample_rate_hz: int = 16000,
        *,
        hop_s: float | None = None,
        source: str = "stream",
        channel: int = 0,
        gate: str = DEFAULT_GATE,
        adapt: str = "auto",
    ) -> None:
        _check_rate(sample_rate_hz)
        self.model = _model(model)
        self.labels = self.model.labels
        self.sample_rate_hz = int(sample_rate_hz)
        self._engine = Engine(self.model, hop_s=hop_s, source=source, channel=channel, gate=gate, adapt=adapt)
        self._resample = _resampler(self.sample_rate_hz, self.model.feature_config.sample_rate_hz)
        self._flushed = False

    @property
    def hop_s(self) -> float:
        """Seconds of new audio between predictions."""
        return self._engine.hop_s

    @property
    def elapsed_s(self) -> float:
        """Audio pushed so far, in seconds on the stream clock (model-rate samples / rate)."""
        return self._engine.samples_seen / self.model.feature_config.sample_rate_hz

    def push(self, chunk: np.ndarray) -> list[Prediction]:
        """Add audio and score every hop boundary it completes.

        Args:
            chunk: Samples at ``sample_rate_hz``: float (nominally [-1, 1]) or integer PCM,
                shape ``(n,)`` or ``(n, n_channels)``, any ``n >= 0``.

        Returns:
            The new predictions, oldest first (often empty for small chunks).

        Raises:
            ValueError: If the chunk has the wrong shape or dtype.
            RuntimeError: If called after :meth:`flush`.
        """
        if self._flushed:
            raise RuntimeError("this StreamScorer was flushed; make a new one for a new stream")
        x = self._resample(_as_float_frames(chunk), False)
        return self._engine.push(x) if x.size else []

    def flush(self) -> list[Prediction]:
        """End the stream: score the audio left in the resampler and the final partial hop.

        Returns:
            The remaining predictions (empty if the stream ended on a hop boundary). Later
            calls return an empty list.
        """
        if self._flushed:
            return []
        self._flushed = True
        out: list[Prediction] = []
        tail = self._resample(np.zeros(0, dtype=np.float32), True)
        if tail.size:
            out += self._engine.push(tail)
        return out + self._engine.flush()


def stream(
    chunks: Iterable[np.ndarray],
    sample_rate_hz: int,
    *,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    source: str = "stream",
    channel: int = 0,
    gate: str = DEFAULT_GATE,
) -> Iterator[Prediction]:
    """Score your own audio chunks as they come (a generator, a queue, a network stream).

    Args:
        chunks: Any iterable of sample arrays at ``sample_rate_hz`` (see
            :meth:`StreamScorer.push` for accepted shapes and dtypes).
        sample_rate_hz: Sample rate of the chunks (Hz); resampled to the model's 16 kHz.
        model: A loaded model, a model path, or None for the shipped model.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        source: Name written into each prediction.
        channel: Channel index written into each prediction.
        gate: The speech gate, ``"vad"`` (default) or ``"level"`` (see the module docstring).

    Yields:
        One :class:`~stream_ser.types.Prediction` per hop as soon as its audio has arrived,
        then the final partial hop when ``chunks`` is exhausted.

    Raises:
        ModelError: If ``model`` is a path that cannot be loaded.
        ValueError: On a bad ``sample_rate_hz``, ``hop_s`` or chunk shape/dtype.
    """
    scorer = StreamScorer(model, sample_rate_hz, hop_s=hop_s, source=source, channel=channel, gate=gate)
    for chunk in chunks:
        yield from scorer.push(chunk)
    yield from scorer.flush()


def stream_file(
    path: AudioPath,
    *,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    realtime: bool = False,
    gate: str = DEFAULT_GATE,
) -> Iterator[Prediction]:
    """Score a file hop by hop, decoding it block by block (memory stays flat).

    Args:
        path: Any file libsndfile reads (WAV, FLAC, OGG/Opus, MP3), any rate and channel count
            (channels are averaged).
        model: A loaded model, a model path, or None for the shipped model.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        realtime: Pace the file at real time through the live capture path (as
            ``stream-ser listen --input``) instead of decoding as fast as possible.
        gate: The speech gate, ``"vad"`` (default) or ``"level"`` (see the module docstring).

    Yields:
        One :class:`~stream_ser.types.Prediction` per hop (``source`` is ``str(path)``).

    Raises:
        AudioSourceError: If the file is missing or cannot be decoded (raised on the first
            ``next()``, as the generator starts).
        ModelError: If ``model`` is a path that cannot be loaded.
    """
    m = _model(model)
    sr = m.feature_config.sample_rate_hz
    if realtime:
        mic = MicrophoneSource(sample_rate_hz=sr, replay=path, realtime=True)
        engine = Engine(m, hop_s=hop_s, source=mic.name, gate=gate)
        try:
            mic.start()
            yield from engine.run(mic.chunks())
        finally:
            mic.close()
        return
    src = FileSource(path, sr)
    yield from Engine(m, hop_s=hop_s, source=src.name, gate=gate).run(src.chunks())


def stream_microphone(
    device: str | int | None = None,
    *,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    duration_s: float | None = None,
    gate: str = DEFAULT_GATE,
) -> Iterator[Prediction]:
    """Score an input device live; stop by breaking out of the loop (or with ``duration_s``).

    The device is opened when iteration starts and closed when the generator ends, is closed
    (``break``) or is garbage-collected. Capture runs on PortAudio's thread into a ring buffer;
    scoring runs on the thread iterating this generator, which must keep up (one 3 s window
    per hop takes a few milliseconds on a laptop).

    Args:
        device: Device index, name or case-insensitive name substring (see
            ``stream-ser devices``); None for the default input.
        model: A loaded model, a model path, or None for the shipped model.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        duration_s: Stop after this many seconds of audio; None to run until you break.
        gate: The speech gate, ``"vad"`` (default) or ``"level"`` (see the module docstring).

    Yields:
        One :class:`~stream_ser.types.Prediction` per hop, ``source`` ``"mic:<device name>"``.

    Raises:
        ValueError: If ``duration_s`` is not None and not a finite number > 0 (before the
            device is opened).
        AudioSourceError: If PortAudio is missing, no device matches, or the device cannot be
            opened at its default rate.
        ModelError: If ``model`` is a path that cannot be loaded.
    """
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number of seconds > 0 or None, got {duration_s}")
    m = _model(model)
    sr = m.feature_config.sample_rate_hz
    mic = MicrophoneSource(device=device, sample_rate_hz=sr)
    engine = Engine(m, hop_s=hop_s, source=mic.name, gate=gate)
    limit = None if duration_s is None else int(round(duration_s * sr))
    try:
        mic.start()
        for chunk in mic.chunks():
            if limit is not None:
                chunk = chunk[: max(0, limit - engine.samples_seen)]
            yield from engine.push(chunk)
            if limit is not None and engine.samples_seen >= limit:
                break
        yield from engine.flush()
    finally:
        mic.close()


def _open(
    audio: AudioPath | np.ndarray,
    sample_rate_hz: int | None,
    channels: ChannelSelection,
    model_sr: int,
    source: str | None,
) -> tuple[str, tuple[int, ...], Iterator[np.ndarray]]:
    """A recording's name, resolved channel numbers and float32 frames ``(n, len(numbers))`` at
    ``model_sr``, read (a file) or cut (an array) block by block.

    Raises:
        AudioSourceError: The file is missing or unreadable, or a selected channel does not exist.
        TypeError: ``sample_rate_hz`` missing for an array or given for a path.
        ValueError: A bad array shape or dtype, or a bad ``sample_rate_hz``.
    """
    if isinstance(audio, (str, os.PathLike)):
        if sample_rate_hz is not None:
            raise TypeError("sample_rate_hz is only for arrays; a file's rate comes from its header")
        src = FileSource(audio, model_sr, channels=channels)
        return (source if source is not None else src.name), src.channel_numbers, src.frames()
    if sample_rate_hz is None:
        raise TypeError("sample_rate_hz is required when scoring an array (e.g. analyse(samples, 16000))")
    _check_rate(sample_rate_hz)
    x = _as_float_pcm(audio)
    name = source if source is not None else "array"
    numbers = resolve_channels(channels, 1 if x.ndim == 1 else x.shape[1], name)
    selected = select_channels(x, numbers)
    # as StreamScorer.push then flush: the whole array, then the resampler's tail
    resample = _resampler(int(sample_rate_hz), model_sr, len(numbers))
    if len(numbers) == 1:  # the mono resampler takes (n,) samples
        mono = selected[:, 0]
        parts = (resample(mono, False), resample(np.zeros(0, dtype=np.float32), True))
        return name, numbers, _blocks((p[:, None] for p in parts), model_sr)
    parts = (resample(selected, False), resample(np.zeros((0, len(numbers)), dtype=np.float32), True))
    return name, numbers, _blocks(parts, model_sr)


def _blocks(arrays: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The arrays cut into blocks of at most ``size`` samples (rows): the engine's predictions do
    not depend on chunk sizes, and its memory then does not grow with a long array."""
    for a in arrays:
        for i in range(0, len(a), size):
            yield a[i : i + size]


class ScoredRecording:
    """One recording being scored: iterate it for the predictions, then read its results.

    Made by :func:`score_recording`, which has opened the source and checked the channels, so
    an unreadable file or a wrong channel selection has been raised before the first
    prediction. Iterating yields every :class:`~stream_ser.types.Prediction` as soon as it is
    made, in stream order (per hop, one per channel in channel order), and ends after the last
    partial hop (or when ``stop`` says so). Memory stays flat: the audio is read block by block
    and only the running clip sums and summary counters are kept, not the timeline.

    Attributes:
        source: The recording's name (the predictions' ``source``).
        plan: The :class:`~stream_ser.channels.ChannelPlan` scored: numbers, names, descriptions.
        labels: The model's class names in output order.
        hop_s: Seconds of new audio between predictions.
        sample_rate_hz: The model's rate (Hz), the clock of every time in the results.

    Iterate it once, on one thread.
    """

    def __init__(self, model: EmotionModel, source: str, plan: ChannelPlan, frames: Iterator[np.ndarray],
                 engines: ChannelEngines, jobs: int, stop: Callable[[], bool] | None) -> None:
        self.source = source
        self.plan = plan
        self.labels = model.labels
        self.hop_s = engines.hop_s
        self.sample_rate_hz = model.feature_config.sample_rate_hz
        self._engines = engines
        self._clips = {key: ClipAccumulator(model.labels) for key in plan.keys}
        self._summary = CallSummaryBuilder(source, model.labels, engines.hop_s, plan.numbers, plan.names,
                                           plan.descriptions)
        self._predictions = self._run(frames, jobs, stop)

    def _run(self, frames: Iterator[np.ndarray], jobs: int, stop: Callable[[], bool] | None) -> Iterator[Prediction]:
        if stop is not None:
            frames = _until(frames, stop)
        for p in self._engines.run(frames, jobs=jobs):
            self._clips[(p.channel, p.channel_name)].add(p)
            self._summary.add(p)
            yield p

    def __iter__(self) -> Iterator[Prediction]:
        return self._predictions

    @property
    def duration_s(self) -> float:
        """Audio scored so far per channel (s, at the model's rate): the recording's duration once
        the iteration has ended (unless stopped)."""
        return self._engines.samples_seen / self.sample_rate_hz

    @property
    def clips(self) -> tuple[ClipResult, ...]:
        """The clip-level result of each channel so far, in channel order (see :func:`analyse`)."""
        return tuple(acc.result(self.source, self.duration_s, number, name)
                     for (number, name), acc in self._clips.items())

    @property
    def summary(self) -> CallSummary:
        """The call summary so far: per channel, speech time, time in each emotion, longest
        spans, emotion changes (:class:`~stream_ser.summary.CallSummary`)."""
        return self._summary.result()


def _until(frames: Iterator[np.ndarray], stop: Callable[[], bool]) -> Iterator[np.ndarray]:
    """The blocks of ``frames`` until ``stop()`` is true after one (that block is still scored)."""
    for block in frames:
        yield block
        if stop():
            return


def score_recording(
    audio: AudioPath | np.ndarray,
    sample_rate_hz: int | None = None,
    *,
    channels: ChannelSelection = None,
    channel_names: Sequence[str] | None = None,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    source: str | None = None,
    jobs: int = 1,
    adapt: str = "auto",
    gate: str = DEFAULT_GATE,
    stop: Callable[[], bool] | None = None,
    adapt_output: bool | None = None,
) -> ScoredRecording:
    """The one path that scores a recording: :func:`analyse`, :func:`analyse_channels`,
    ``stream-ser analyse`` and ``stream-ser batch`` all run it.

    It opens the source now (a file's header is read, the channels resolved and the
    :class:`~stream_ser.channels.ChannelPlan` built); iterating the returned
    :class:`ScoredRecording` decodes, resamples and scores the audio block by block, every
    channel with its own engine (own window, speech gate and adaptation to the voice; the one model).
    Nothing here prints, logs progress or writes files: the callers do that with the predictions.

    Args:
        audio: A file path (any format libsndfile reads), or samples: float (nominally [-1, 1])
            or integer PCM, shape ``(n_samples,)`` or ``(n_samples, n_channels)``.
        sample_rate_hz: The array's rate (Hz); None for a path (the header gives it).
        channels: None (default) averages the channels into one (channel number 0); ``"all"``
            or 1-based channel numbers such as ``(1, 2)`` score those channels each on its own.
        channel_names: A name per scored channel (``("agent", "customer")``), or None.
        model: A loaded model, a model path, or None for the shipped model.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        source: The results' ``source``; default ``str(path)`` or ``"array"``.
        jobs: Scoring threads, 1 or 2 (the model on a second thread; identical predictions).
        adapt: The adaptation to each channel's voice, as ``--adapt``: ``"auto"`` (default:
            the best the model carries, embedding, else output, else none), ``"embedding"``,
            ``"output"`` or ``"none"`` (:class:`~stream_ser.engine.Engine`); the predictions'
            ``adaptation`` says which ran.
        gate: The speech gate, ``"vad"`` (default) or ``"level"`` (see the module docstring).
        stop: Called after every block read (about 1 s of audio); when it returns True the
            scoring ends early, after that block and the last partial hop (Ctrl-C, a deadline).
        adapt_output: Deprecated: True is ``adapt="auto"``, False ``adapt="none"`` (with a
            :class:`DeprecationWarning`).

    Returns:
        A :class:`ScoredRecording`; iterate it once for the predictions, then read its
        ``clips``, ``summary`` and ``duration_s``.

    Raises:
        AudioSourceError: If the file is missing or cannot be decoded (later read errors are
            raised while iterating), or a selected channel does not exist.
        ChannelPlanError: If ``channel_names`` do not match the channels in number (a
            ``ValueError``).
        ModelError: If ``model`` is a path that cannot be loaded, or the VAD's model is missing.
        TypeError: If ``sample_rate_hz`` is missing for an array or given for a path.
        ValueError: A bad array shape or dtype, ``hop_s``, ``jobs`` or ``gate``, or an ``adapt``
            that is not a mode or names one the model does not carry.
    """
    m = _model(model)
    _check_jobs(jobs)
    name, numbers, frames = _open(audio, sample_rate_hz, channels, m.feature_config.sample_rate_hz, source)
    plan = ChannelPlan.of(numbers, channel_names, source=name)
    engines = ChannelEngines(m, hop_s=hop_s, source=name, channels=plan.numbers, channel_names=plan.names,
                             adapt=adapt_from_deprecated(adapt, adapt_output), gate=gate)
    return ScoredRecording(m, name, plan, frames, engines, jobs, stop)


def analyse(
    audio: AudioPath | np.ndarray,
    sample_rate_hz: int | None = None,
    *,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    source: str | None = None,
    jobs: int = 1,
    adapt: str = "auto",
    gate: str = DEFAULT_GATE,
    adapt_output: bool | None = None,
) -> Analysis:
    """Score a whole recording: the clip-level result and the window timeline.

    The clip label is the argmax of the mean class probabilities over the speech windows, with
    that mean as its confidence (the rule ``stream-ser analyse`` and the evaluation use).

    Args:
        audio: A file path (any format libsndfile reads), or an array of samples: float
            (nominally [-1, 1]) or integer PCM, shape ``(n_samples,)`` or
            ``(n_samples, n_channels)``.
        sample_rate_hz: The array's sample rate (Hz); required for arrays, must be None for
            paths (the file header gives the rate).
        model: A loaded model, a model path, or None for the shipped model. Load it once with
            :func:`load_model` when scoring many recordings.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        source: Name for the results' ``source``; default ``str(path)`` or ``"array"``.
        jobs: Scoring threads: 1 (default) or 2, the model on a second thread while the next
            windows' features are computed (identical results; ``stream-ser analyse --jobs``).
        adapt: The adaptation to the recording's voice, as ``stream-ser analyse --adapt``:
            ``"auto"`` (default: the best the model carries, embedding, else output, else
            none), ``"embedding"``, ``"output"`` or ``"none"`` (:mod:`stream_ser.adaptation`).
        adapt_output: Deprecated: True is ``adapt="auto"``, False ``adapt="none"``.
        gate: The speech gate: ``"vad"`` (default, ``stream-ser analyse``'s: loud enough and a
            voice by the VAD) or ``"level"`` (loud enough; ``--gate level``). Windows it rejects
            are in the timeline with ``is_speech=False`` and count for nothing in the clip.

    Returns:
        An :class:`~stream_ser.types.Analysis`: ``clip`` (a
        :class:`~stream_ser.types.ClipResult`, ``duration_s`` in seconds at the model's rate)
        and ``timeline`` (a tuple of :class:`~stream_ser.types.Prediction`, one per hop).

    Raises:
        AudioSourceError: If the file is missing or cannot be decoded.
        ModelError: If ``model`` is a path that cannot be loaded.
        TypeError: If ``sample_rate_hz`` is missing for an array or given for a path.
        ValueError: If the array has the wrong shape or dtype, ``hop_s`` is out of range,
            ``jobs`` is not 1 or 2, ``gate`` is not ``"vad"`` or ``"level"``, or ``adapt`` is
            not a mode or names one the model does not carry.
    """
    (result,) = _analyses(score_recording(audio, sample_rate_hz, model=model, hop_s=hop_s, source=source, jobs=jobs,
                                          adapt=adapt_from_deprecated(adapt, adapt_output), gate=gate))
    return result


def _analyses(scored: ScoredRecording) -> tuple[Analysis, ...]:
    """Score to the end, keeping the timeline: one :class:`Analysis` per channel."""
    with one_blas_thread():
        timeline = list(scored)
    return tuple(Analysis(clip, tuple(p for p in timeline if (p.channel, p.channel_name) == key))
                 for clip, key in zip(scored.clips, scored.plan.keys))


def analyse_channels(
    audio: AudioPath | np.ndarray,
    sample_rate_hz: int | None = None,
    *,
    channels: ChannelSelection = "all",
    channel_names: Sequence[str] | None = None,
    model: EmotionModel | AudioPath | None = None,
    hop_s: float | None = None,
    source: str | None = None,
    jobs: int = 1,
    adapt: str = "auto",
    gate: str = DEFAULT_GATE,
    adapt_output: bool | None = None,
) -> tuple[Analysis, ...]:
    """Score each channel of a recording on its own (a stereo call: agent left, customer right).

    Every channel gets its own engine (own window, own speech gate, the one model), so a channel's
    result is what :func:`analyse` gives for that channel alone, and a silent channel has no
    label. ``stream-ser analyse --channels`` does the same.

    Args:
        audio: A file path, or samples ``(n_samples, n_channels)`` (float, nominally [-1, 1], or
            integer PCM) at ``sample_rate_hz``.
        sample_rate_hz: The array's rate (Hz); None for paths.
        channels: ``"all"`` (default), or 1-based channel numbers, e.g. ``(1, 2)``.
        channel_names: A name per selected channel (written as the predictions' channel), or None.
        model: A loaded model, a model path, or None for the shipped model.
        hop_s: Seconds of new audio between predictions (default: the model's, 0.5 s).
        source: Name for the results' ``source``; default ``str(path)`` or ``"array"``.
        jobs: Scoring threads, 1 (default) or 2 (see :func:`analyse`; identical results).
        adapt: The adaptation to each channel's voice (see :func:`analyse`).
        adapt_output: Deprecated: True is ``adapt="auto"``, False ``adapt="none"``.
        gate: The speech gate of every channel, ``"vad"`` (default) or ``"level"`` (see
            :func:`analyse`); each channel has its own detector.

    Returns:
        One :class:`~stream_ser.types.Analysis` per channel, in channel order; their clips and
        predictions carry ``channel`` (the number) and ``channel_name``. Pass all timelines to
        :func:`~stream_ser.summary.summarise_call` for the call summary (or use
        :func:`score_recording`, whose result has it).

    Raises:
        AudioSourceError: If the file is missing or cannot be decoded, or a channel does not exist.
        ChannelPlanError: Names not matching the channels in number (a ``ValueError``).
        ModelError: If ``model`` is a path that cannot be loaded.
        TypeError: If ``sample_rate_hz`` is missing for an array or given for a path.
        ValueError: Wrong array shape or dtype, bad ``hop_s``, ``jobs``, ``gate`` or ``adapt``.
    """
    return _analyses(score_recording(audio, sample_rate_hz, channels=channels, channel_names=channel_names,
                                     model=model, hop_s=hop_s, source=source, jobs=jobs,
                                     adapt=adapt_from_deprecated(adapt, adapt_output), gate=gate))


#: American spelling of :func:`analyse`.
analyze = analyse
