"""The engine: every hop of new samples, score the latest window.

Position in the pipeline: a source hands the engine chunks of 16 kHz mono float32 samples of
any size; the engine writes them into its ring buffer and, each time the stream clock crosses a
hop boundary (every ``hop_s`` of *new samples*), takes the latest ``window_s`` window, runs the
feature recipe and the model, and returns a :class:`~stream_ser.types.Prediction`. The same code
serves file analysis (chunks as fast as they decode) and live capture (chunks as the microphone
delivers them), so a file replayed in any chunk size gives identical predictions.

The speech gate decides which windows are scored (``Prediction.is_speech``; everything
downstream, the CSV's ``speech`` column, JSON lines, the terminal UI's speech light and the call
summary's speech time, follows it). ``gate="vad"`` (the default, :data:`~stream_ser.vad.DEFAULT_GATE`)
scores a window when the feature recipe's level gate passes *and* the voice-activity detector
(:class:`~stream_ser.vad.VoiceActivity`, Silero) finds at least one 32 ms frame of speech in it;
``gate="level"`` uses the level gate alone (``docs/vad.md``). The model's training windows
passed the gate its recipe names (``FeatureConfig.speech_gate``; ``training.windows``). Each engine has its own detector, fed every sample once as it arrives, its
state carried from hop to hop; a new engine (a new stream, or a session resumed after a pause)
starts a fresh one. The detector runs at 16 kHz: for a model at another rate its input is
resampled with soxr as it arrives (see :class:`_VoiceGate`).

The engine keeps the stream clock: the number of samples since the stream began. A new stream
starts at sample 0; an engine that resumes a stream (a listening session after a pause) starts at
the given sample (``start_sample``), so its hop boundaries and prediction times continue the
stream's, while its windows hold only the audio it was given.

Several channels (a stereo call, several devices) are scored by :class:`ChannelEngines`: one
:class:`Engine` per channel, each with its own ring buffer and speech gate (and detector), sharing
one model (one onnxruntime session), so a channel is scored exactly as the same audio alone would be.

File analysis can overlap the two halves of a hop: ``run(..., jobs=2)`` computes the next
windows' features on the calling thread while a second thread runs the model on the previous ones
(onnxruntime and numpy's FFT and matrix product release the GIL). The windows, the model calls and
their order are the same, so the predictions are identical to ``jobs=1``.

Thread: an engine is used by one thread (the inference worker); it never touches devices or UI.
With ``run(..., jobs=2)`` it starts and joins its own model thread.

Why one module of about 650 lines: the engine, its per-channel form and the window/clip helpers
that training imports (:func:`window_ends`, :func:`cut_window`) share one stream clock, and
splitting them would put the training-runtime contract in two places.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from .adaptation import (EmbeddingAdapter, OutputAdapter, SpeakerNormaliser, adapt_from_deprecated,
                         resolve_adapt)
from .channels import ChannelPlan
from .features import window_features
from .features import FeatureConfig
from .model import EmotionModel, ModelError
from .ring_buffer import RingBuffer
from .types import ClipResult, Prediction
from .vad import DEFAULT_GATE, SAMPLE_RATE_HZ as VAD_RATE_HZ, VoiceActivity, check_gate

#: Seconds of a chunk the voice-activity detector is fed ahead of the hop boundary being scored
#: (``gate="vad"``): a file's 1 s decode blocks reach it whole, so its model scores 32-64 frames a
#: call instead of a hop's 16 (13.6 against 17.5 us per frame, ``benchmarks/README.md``). Live
#: chunks (20-40 ms) are smaller than this: nothing changes for them. Results do not depend on it.
VAD_LOOKAHEAD_S = 2.0

#: Windows in flight between the feature thread and the model thread with ``jobs=2``: enough to
#: absorb a slow window on either side, and bounds memory (24 kB of log-mel each).
PIPELINE_DEPTH = 4


class _Window(NamedTuple):
    """One hop's window after the feature recipe, before the model (``feats`` None: not speech)."""

    engine: "Engine"
    start_s: float
    end_s: float
    feats: np.ndarray | None

    def score(self) -> Prediction:
        """Run the model (if speech) and make the prediction (any thread: reads only this window;
        the engine's adapter is updated in window order, as the model thread takes them)."""
        if self.feats is None:
            return self.engine._finish(self, None)
        if self.engine.adaptation == "embedding":  # the head on the voice-standardised embedding
            _, embedding = self.engine.model.predict_with_embedding(self.feats)
            return self.engine._finish(self, self.engine.adapter(embedding), adapted=True)
        return self.engine._finish(self, self.engine.model.predict(self.feats))


class _VoiceGate:
    """The voice-activity half of the ``"vad"`` gate for one channel.

    A :class:`~stream_ser.vad.VoiceActivity` (Silero, the shipped sequence model) takes every
    sample the engine takes, once, as it arrives; at each window end it answers whether the
    window holds speech (:meth:`~stream_ser.vad.VoiceActivity.is_speech`: at least one 32 ms frame
    of probability >= 0.7, whole frames inside the window).

    The detector works at 16 kHz only. For a model at another rate (``sample_rate_hz`` != 16000)
    the samples are resampled to 16 kHz with soxr's streaming resampler (the one the sources use,
    :func:`stream_ser.audio.resample.resampler`) before the detector; the window ending at model
    sample ``end`` is then judged up to 16 kHz sample ``end * 16000 // rate`` or the last one the
    resampler has given out, whichever is earlier (soxr holds back up to about 60 ms, so the
    detector's view of a window may end that much early; the final window of a stream too, as the
    resampler is not drained). At 16 kHz (the shipped model) the windows are exactly the engine's.

    Args:
        config: The model's feature recipe (rate and window length).
        hop_samples: The engine's hop (samples at the model's rate), for the history kept.

    Raises:
        ModelError: If the detector cannot start (its ONNX model is missing or unreadable).
    """

    def __init__(self, config: FeatureConfig, hop_samples: int) -> None:
        self.rate = config.sample_rate_hz
        history_s = config.window_s + hop_samples / self.rate + VAD_LOOKAHEAD_S + 1.0
        try:
            self.activity = VoiceActivity(history_s=history_s)
        except Exception as exc:  # FileNotFoundError, or onnxruntime refusing the file
            raise ModelError(f"the VAD speech gate cannot start: {exc}") from None
        self.length = int(round(config.window_s * VAD_RATE_HZ))
        self._resample = None
        if self.rate != VAD_RATE_HZ:
            from .audio.resample import resampler

            self._resample = resampler(self.rate, VAD_RATE_HZ)

    def push(self, x: np.ndarray) -> None:
        """Take samples at the model's rate (float32 ``(n,)``)."""
        if self._resample is not None:
            x = self._resample(x, False)
        self.activity.push(x)

    def is_speech(self, end: int) -> bool:
        """Whether the window ending at model sample ``end`` (all pushed) holds speech."""
        if self._resample is not None:
            end = min(end * VAD_RATE_HZ // self.rate, self.activity.samples_seen)
        return self.activity.is_speech(end, self.length)


def check_speech_gate(config: FeatureConfig, gate: str) -> None:
    """Check, before any audio, that a speech gate can run for a model with this feature recipe:
    ``gate`` is ``"vad"`` or ``"level"``, and for ``"vad"`` the voice-activity detector starts
    (its ONNX model is found and loads; onnxruntime's session is kept for the process, so the
    engines made later start their detectors at once).

    Raises:
        ValueError: If ``gate`` is not ``"vad"`` or ``"level"``.
        ModelError: If ``gate`` is ``"vad"`` and the detector's model cannot be found or loaded.
    """
    if check_gate(gate) == "vad":
        _VoiceGate(config, config.hop_samples)


def _check_jobs(jobs: int) -> None:
    if jobs not in (1, 2):
        raise ValueError(f"jobs must be 1 (one thread) or 2 (features and model on two threads), got {jobs!r}")


def _run(scorer: "Engine | ChannelEngines", blocks: Iterable[np.ndarray], jobs: int) -> Iterator[Prediction]:
    """``scorer.run``: every block's windows, then the final partial hop's, scored by :func:`_pipelined`.

    Raises:
        ValueError: If ``jobs`` is not 1 or 2 (at once, not when iterating).
    """
    _check_jobs(jobs)

    def windows() -> Iterator[Iterable[_Window]]:
        for block in blocks:
            yield scorer._windows(block)
        yield scorer._flush_windows()

    return _pipelined(windows(), jobs)


def _pipelined(blocks: Iterator[Iterable[_Window]], jobs: int) -> Iterator[Prediction]:
    """Predictions for the windows of each block, in order; with ``jobs`` 2 the model (and the
    making of each prediction) runs on a second thread, at most :data:`PIPELINE_DEPTH` windows
    behind the feature recipe."""
    if jobs == 1:
        for windows in blocks:
            for w in windows:
                yield w.score()
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-ser-model")
    pending: deque[Future | Prediction] = deque()
    try:
        for windows in blocks:
            for w in windows:
                pending.append(w.score() if w.feats is None else pool.submit(w.score))
                while pending and (len(pending) > PIPELINE_DEPTH or not isinstance(pending[0], Future)
                                   or pending[0].done()):
                    head = pending.popleft()
                    yield head.result() if isinstance(head, Future) else head
        while pending:
            head = pending.popleft()
            yield head.result() if isinstance(head, Future) else head
    finally:  # also when the consumer stops early: no model call is left running
        pool.shutdown(wait=True, cancel_futures=True)


class Engine:
    """Sliding-window scorer on the stream clock.

    Args:
        model: The loaded model; its metadata gives the sample rate and window length.
        hop_s: Seconds of new audio between predictions; None for the model's default
            (``feature_config.hop_s``, 0.5 s). Must be > 0 and <= the window length.
        source: Source name written into each prediction.
        channel: Channel number written into each prediction (0: down-mixed input).
        channel_name: Channel name written into each prediction, or None.
        normaliser: For a model with causal speaker normalisation (``model.metadata.speaker_norm``),
            the running statistics of this channel's voice; None makes a fresh one (a new voice).
            Pass the same normaliser to carry the voice across engines (a paused and resumed
            session, the clips of one speaker). Ignored for other models.
        calibration_windows: For a speaker-normalised model, an explicit calibration phase
            (``listen --calibrate``): until the normaliser has taken in this many speech windows,
            each window only adds to the voice statistics and no prediction is returned (silent
            hops neither). The statistics are the same as without calibration, so every later
            prediction equals the uncalibrated engine's; calibration only withholds the first
            ones, made while the statistics still lean on the training prior. 0 (default): none.
            Ignored for other models.
        adapt: The adaptation to this channel's voice (:mod:`stream_ser.adaptation`,
            :func:`~stream_ser.adaptation.resolve_adapt`): ``"auto"`` (default) the best the
            model carries, ``"embedding"`` (:class:`~stream_ser.adaptation.EmbeddingAdapter`:
            the predictions hold the probabilities of the model's embedding head after the
            voice's running standardisation; the network's own output is not used),
            ``"output"`` (:class:`~stream_ser.adaptation.OutputAdapter`: the network's output
            adapted) or ``"none"`` (the network's own). :attr:`adaptation` says which runs.
        adapter: The adapter to use (carry a voice across engines, as ``normaliser``), of the
            kind ``adapt`` runs; None makes a fresh one. Ignored with ``"none"``.
        adapt_output: Deprecated: True is ``adapt="auto"``, False ``adapt="none"`` (with a
            :class:`DeprecationWarning`).
        gate: The speech gate, ``"vad"`` (default: the level gate and the voice-activity
            detector, see the module docstring) or ``"level"`` (the level gate alone).
        start_sample: The stream sample (at the model's rate) at which this engine's audio
            starts: 0 for a new stream; for a stream resumed after a gap (a paused session), the
            sample of the resume, a hop boundary. Hop boundaries fall at ``start_sample + k *
            hop_samples``, prediction times are on the stream clock, and windows hold only audio
            from ``start_sample`` on (the first ones are shorter, as at a stream's start).

    Attributes:
        gate: As given.
        vad: The channel's :class:`~stream_ser.vad.VoiceActivity` with ``gate="vad"``, else None.
        start_sample: As given.
        adaptation: The adaptation to the voice that runs: ``"embedding"``, ``"output"`` or
            ``"none"`` (``adapt`` resolved against the model); every prediction carries it.
        adapter: The channel's :class:`~stream_ser.adaptation.EmbeddingAdapter` or
            :class:`~stream_ser.adaptation.OutputAdapter`, or None with ``"none"``.

    Raises:
        ValueError: If ``hop_s`` is not in (0, window_s] (NaN and infinity are not) or is
            shorter than one sample (:meth:`~stream_ser.features.FeatureConfig.check_hop`),
            ``calibration_windows`` or ``start_sample`` is negative, ``gate`` is not ``"vad"``
            or ``"level"``, ``adapt`` is not a mode or names one the model does not carry, or
            ``adapter`` is not of the kind ``adapt`` runs.
        TypeError: If both ``adapt`` (other than ``"auto"``) and ``adapt_output`` are given.
        ModelError: If ``gate="vad"`` and the detector's model cannot be found or loaded.
    """

    def __init__(
        self,
        model: EmotionModel,
        hop_s: float | None = None,
        source: str = "",
        channel: int = 0,
        channel_name: str | None = None,
        normaliser: SpeakerNormaliser | None = None,
        calibration_windows: int = 0,
        adapt: str = "auto",
        adapter: EmbeddingAdapter | OutputAdapter | None = None,
        gate: str = DEFAULT_GATE,
        start_sample: int = 0,
        *,
        adapt_output: bool | None = None,
    ) -> None:
        cfg = model.feature_config
        self.model = model
        self.config = cfg
        self.hop_s = cfg.hop_s if hop_s is None else float(hop_s)
        self.hop_samples = cfg.check_hop(hop_s)
        if start_sample < 0:
            raise ValueError(f"start_sample must be >= 0, got {start_sample}")
        self.start_sample = int(start_sample)
        self.source = source
        self.channel = channel
        self.channel_name = channel_name
        norm = model.metadata.speaker_norm
        self.normaliser = None if norm is None else (normaliser or SpeakerNormaliser(norm))
        if calibration_windows < 0:
            raise ValueError(f"calibration_windows must be >= 0, got {calibration_windows}")
        self.calibration_windows = int(calibration_windows) if self.normaliser is not None else 0
        meta = model.metadata
        self.adaptation = resolve_adapt(adapt_from_deprecated(adapt, adapt_output), meta.embedding_adaptation,
                                        meta.output_prior)
        self.adapter = _adapter(self.adaptation, meta, adapter)
        self.gate = check_gate(gate)
        self._voice = _VoiceGate(cfg, self.hop_samples) if gate == "vad" else None
        self._vad_lookahead = int(round(VAD_LOOKAHEAD_S * cfg.sample_rate_hz))
        self._ring = RingBuffer(cfg.window_samples + self.hop_samples)
        self._window_buf = np.empty((cfg.window_samples, 1), dtype=np.float32)
        self._next_boundary = self.start_sample + self.hop_samples
        self._last_scored = self.start_sample

    @property
    def samples_seen(self) -> int:
        """The stream clock: ``start_sample`` plus the samples pushed so far (at ``sample_rate_hz``)."""
        return self.start_sample + self._ring.written

    @property
    def vad(self) -> VoiceActivity | None:
        """This channel's voice-activity detector (``gate="vad"``), or None (``gate="level"``)."""
        return None if self._voice is None else self._voice.activity

    @property
    def calibrating(self) -> bool:
        """True while the calibration phase withholds predictions (see ``calibration_windows``)."""
        return self.normaliser is not None and self.normaliser.windows < self.calibration_windows

    def push(self, chunk: np.ndarray) -> list[Prediction]:
        """Add samples and score every hop boundary they cross.

        Args:
            chunk: float32 mono samples at the model's sample rate (16 kHz), shape ``(n,)``, any
                ``n >= 0``.

        Returns:
            The predictions for the boundaries crossed, oldest first (possibly empty).

        Raises:
            ValueError: If ``chunk`` is not 1-D.
        """
        return [w.score() for w in self._windows(chunk)]

    def _windows(self, chunk: np.ndarray) -> Iterator[_Window]:
        """:meth:`push` up to the model: the windows of the boundaries ``chunk`` crosses, made as
        they are asked for (so a long chunk's windows can be scored while the next ones are made)."""
        x = np.asarray(chunk, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {x.shape}")
        pos = fed = 0
        while pos < x.size:
            take = min(x.size - pos, self._next_boundary - self.samples_seen)
            self._ring.write(x[pos : pos + take])
            pos += take
            if self._voice is not None and fed < pos:  # every sample once, up to VAD_LOOKAHEAD_S ahead
                upto = min(x.size, pos + self._vad_lookahead)
                self._voice.push(x[fed:upto])
                fed = upto
            if self.samples_seen == self._next_boundary:
                w = self._window(self._next_boundary)
                self._next_boundary += self.hop_samples
                if w is not None:
                    yield w

    def flush(self) -> list[Prediction]:
        """Score the final partial hop at the end of a stream (file end, capture stopped).

        Returns:
            One prediction for the window ending at the last sample if samples arrived after the
            last hop boundary (and calibration is over), else an empty list.
        """
        return [w.score() for w in self._flush_windows()]

    def _flush_windows(self) -> list[_Window]:
        """:meth:`flush` up to the model."""
        end = self.samples_seen
        if end > self._last_scored:
            w = self._window(end)
            return [] if w is None else [w]
        return []

    def _window(self, end: int) -> _Window | None:
        """The features of the window ending at stream sample ``end`` (None when the gate finds no
        speech: the detector first, with ``gate="vad"``, then the recipe's level gate); no window
        while calibrating."""
        cfg = self.config
        calibrating = self.calibrating
        self._last_scored = end
        pushed = end - self.start_sample  # the engine's own samples: its ring buffer and detector count from 0
        feats = None
        if self._voice is None or self._voice.is_speech(pushed):
            # only audio of the stream: the first windows are shorter than window_s (the recipe pads
            # them), so nothing before the stream start (such as a zero step under a DC offset) is scored
            n = min(pushed, cfg.window_samples)
            if n == cfg.window_samples:  # steady state: reuse one array (the recipe copies what it keeps)
                window = self._ring.read(pushed, n, self._window_buf)[:, 0]
            else:
                window = self._ring.read(pushed, n)[:, 0]
            feats = window_features(window, cfg)
        start_s = max(self.start_sample, end - cfg.window_samples) / cfg.sample_rate_hz
        end_s = end / cfg.sample_rate_hz
        if calibrating:
            if feats is not None:
                self.normaliser(feats)  # learn the voice; the standardised window is not scored
            return None
        if feats is not None and self.normaliser is not None:
            feats = self.normaliser(feats)
        return _Window(self, start_s, end_s, feats)

    def _finish(self, w: _Window, probs: np.ndarray | None, adapted: bool = False) -> Prediction:
        """The prediction for window ``w`` given the model's probabilities (None: not speech;
        ``adapted``: already the embedding adapter's, else the output adapter, if any, runs)."""
        if probs is None:
            return Prediction(self.source, self.channel, w.start_s, w.end_s, False, None, None, None,
                              self.model.labels, self.channel_name, self.adaptation)
        if self.adapter is not None and not adapted:
            probs = self.adapter(probs)
        best = int(np.argmax(probs))
        return Prediction(
            self.source,
            self.channel,
            w.start_s,
            w.end_s,
            True,
            self.model.labels[best],
            float(probs[best]),
            tuple(float(p) for p in probs),
            self.model.labels,
            self.channel_name,
            self.adaptation,
        )

    def run(self, chunks: Iterable[np.ndarray], jobs: int = 1) -> Iterator[Prediction]:
        """Push every chunk of a stream, then flush; yields predictions as they are made.

        Args:
            chunks: float32 mono chunks at the model's sample rate.
            jobs: 1 runs everything on the calling thread; 2 runs the model on a second thread,
                up to :data:`PIPELINE_DEPTH` windows behind the feature recipe (for files: about
                1.1x the throughput on two free cores with the int8 model, 636x against 576x real
                time, ``python benchmarks/bench_analyse.py --repeats 5``). The
                predictions are identical either way.

        Raises:
            ValueError: If ``jobs`` is not 1 or 2.
        """
        return _run(self, chunks, jobs)


class ChannelEngines:
    """One :class:`Engine` per channel, fed together: scores each channel on its own.

    Each channel has its own ring buffer, hop boundaries and speech gate (and voice-activity
    detector), so a silent channel yields ``is_speech=False`` predictions (no label) whatever the
    other channels hold, and a channel's predictions equal those of the same audio scored alone.
    The engines share the one model (one onnxruntime session).

    Args:
        model: The loaded model.
        hop_s: Seconds of new audio between predictions (None: the model's default).
        source: Source name written into each prediction.
        channels: Channel numbers, one per column of the frames pushed (``(0,)``: down-mixed
            mono input, exactly as :class:`Engine`).
        channel_names: A name per channel, or None (unnamed channels are written as numbers).
        normalisers: One speaker normaliser per channel to carry voices across engines (see
            :class:`Engine`), or None for fresh ones.
        calibration_windows: See :class:`Engine`.
        adapt: See :class:`Engine` (``"auto"``, ``"embedding"``, ``"output"``, ``"none"``).
        adapters: One adapter per channel (of the kind ``adapt`` runs) to carry voices across
            engines, or None for fresh ones.
        adapt_output: Deprecated, see :class:`Engine`.
        gate: The speech gate of every channel, ``"vad"`` (default) or ``"level"`` (see
            :class:`Engine`); each channel has its own detector.
        start_sample: The stream sample at which every channel's engine starts (see
            :class:`Engine`).

    Raises:
        ValueError: A bad hop, gate, adaptation or start sample, or normalisers or adapters not
            matching the channels in number.
        ChannelPlanError: Names not matching the channels in number, or channel numbers that
            are not ``(0,)`` or distinct numbers from 1 (a :class:`ValueError`;
            :class:`~stream_ser.channels.ChannelPlan` checks them).
        ModelError: If ``gate="vad"`` and the detector's model cannot be found or loaded.

    Thread: one thread (the inference worker).
    """

    def __init__(
        self,
        model: EmotionModel,
        hop_s: float | None = None,
        source: str = "",
        channels: Sequence[int] = (0,),
        channel_names: Sequence[str | None] | None = None,
        normalisers: Sequence[SpeakerNormaliser | None] | None = None,
        calibration_windows: int = 0,
        adapt: str = "auto",
        adapters: Sequence[EmbeddingAdapter | OutputAdapter | None] | None = None,
        gate: str = DEFAULT_GATE,
        start_sample: int = 0,
        *,
        adapt_output: bool | None = None,
    ) -> None:
        plan = ChannelPlan.of(channels, channel_names, source=source)
        channels, names = plan.numbers, plan.names
        self.channels = channels
        self.channel_names = names
        norms = tuple(normalisers) if normalisers is not None else (None,) * len(channels)
        adapters = tuple(adapters) if adapters is not None else (None,) * len(channels)
        for what, given in (("normaliser", norms), ("adapter", adapters)):
            if len(given) != len(channels):
                raise ValueError(f"{len(given)} {what}(s) for {len(channels)} channel(s)")
        check_gate(gate)
        adapt = adapt_from_deprecated(adapt, adapt_output)
        self.engines = [Engine(model, hop_s, source, c, n, z, calibration_windows, adapt, a, gate, start_sample)
                        for c, n, z, a in zip(channels, names, norms, adapters)]
        self.gate = gate
        self.hop_s = self.engines[0].hop_s
        self.hop_samples = self.engines[0].hop_samples
        self.adaptation = self.engines[0].adaptation

    @property
    def samples_seen(self) -> int:
        """The stream clock: the start sample plus the samples pushed per channel so far."""
        return self.engines[0].samples_seen

    def push(self, frames: np.ndarray) -> list[Prediction]:
        """Add frames and score every hop boundary they cross, in every channel.

        Args:
            frames: float32 at the model's rate, shape ``(n, n_channels)`` (or ``(n,)`` for one
                channel), any ``n >= 0``.

        Returns:
            The predictions in stream order: per hop boundary, one per channel in channel order.

        Raises:
            ValueError: If the number of columns does not match the channels.
        """
        return [w.score() for w in self._windows(frames)]

    def _windows(self, frames: np.ndarray) -> Iterable[_Window]:
        """:meth:`push` up to the model, in the order of its predictions."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != len(self.engines):
            raise ValueError(f"expected frames of shape (n, {len(self.engines)}), got {x.shape}")
        if len(self.engines) == 1:
            return self.engines[0]._windows(x[:, 0])
        return _interleave([list(engine._windows(x[:, i])) for i, engine in enumerate(self.engines)])

    def flush(self) -> list[Prediction]:
        """Score every channel's final partial hop (see :meth:`Engine.flush`)."""
        return [w.score() for w in self._flush_windows()]

    def _flush_windows(self) -> list[_Window]:
        return _interleave([engine._flush_windows() for engine in self.engines])

    def run(self, frames: Iterable[np.ndarray], jobs: int = 1) -> Iterator[Prediction]:
        """Push every block of a stream, then flush; yields predictions as they are made.

        Args:
            frames: float32 blocks at the model's rate, as for :meth:`push`.
            jobs: 1 or 2 threads, as for :meth:`Engine.run` (identical predictions).

        Raises:
            ValueError: If ``jobs`` is not 1 or 2, or a block has the wrong number of columns.
        """
        return _run(self, frames, jobs)


def _adapter(adaptation: str, meta, given: EmbeddingAdapter | OutputAdapter | None,
             ) -> EmbeddingAdapter | OutputAdapter | None:
    """The channel's adapter for ``adaptation`` (``given`` if not None, else a fresh one).

    Raises:
        ValueError: If ``given`` is not of the kind ``adaptation`` runs.
    """
    if adaptation == "none":
        return None
    if given is None:
        if adaptation == "embedding":
            return EmbeddingAdapter(meta.embedding_adaptation)
        return OutputAdapter(meta.output_prior)
    kind = EmbeddingAdapter if adaptation == "embedding" else OutputAdapter
    if not isinstance(given, kind):
        raise ValueError(f"{adaptation} adaptation needs a {kind.__name__}, got a {type(given).__name__}")
    return given


def _interleave(per_channel: list[list]) -> list:
    """Merge the channels' predictions (or windows: anything with ``end_s``) into stream order:
    by window end, then channel order.

    Channels usually return one prediction per hop each; while some channel is still in its
    calibration phase it returns fewer, so the lists are merged by time, not zipped.
    """
    if all(len(p) == len(per_channel[0]) for p in per_channel):
        return [p for hop in zip(*per_channel) for p in hop]
    tagged = [(round(p.end_s * 1e6), i, k, p) for i, preds in enumerate(per_channel) for k, p in enumerate(preds)]
    return [t[3] for t in sorted(tagged, key=lambda t: t[:3])]


def window_ends(n_samples: int, hop_samples: int) -> list[int]:
    """Absolute end samples of the windows an :class:`Engine` scores for a stream of ``n_samples``.

    Every multiple of ``hop_samples`` up to ``n_samples``, plus ``n_samples`` itself when the
    stream ends between boundaries (the :meth:`Engine.flush` window). Training cuts its windows
    at exactly these ends (``training.windows``), so training and runtime see the same windows.

    Args:
        n_samples: Stream length in samples (>= 0).
        hop_samples: Hop in samples (> 0).

    Returns:
        Sorted list of end indices (empty for an empty stream).
    """
    ends = list(range(hop_samples, n_samples + 1, hop_samples))
    if n_samples > 0 and (not ends or ends[-1] != n_samples):
        ends.append(n_samples)
    return ends


def cut_window(samples: np.ndarray, end: int, window_samples: int) -> np.ndarray:
    """The window of at most ``window_samples`` ending at ``end`` (shorter near the stream start).

    Identical to what the engine reads from its ring buffer at that boundary: the audio from
    ``max(0, end - window_samples)`` to ``end``; the feature recipe pads it to the window length.

    Args:
        samples: float32 mono stream, shape ``(n,)``.
        end: End index (exclusive), ``0 < end <= n``.
        window_samples: Window length in samples.

    Returns:
        float32 array of shape ``(min(end, window_samples),)`` (a copy).
    """
    return np.array(samples[max(end - window_samples, 0) : end], dtype=np.float32)


class ClipAccumulator:
    """The clip-level result of one channel built from its predictions as they come, in
    constant memory (what :func:`summarise` computes from a list).

    Args:
        labels: The model's labels.
    """

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = tuple(labels)
        self.n_windows = 0
        self.n_speech = 0
        self._sum = np.zeros(len(self.labels), dtype=np.float64)

    def add(self, p: Prediction) -> None:
        """Account for one prediction of the channel."""
        self.n_windows += 1
        if p.is_speech and p.probabilities is not None:
            self.n_speech += 1
            self._sum += np.asarray(p.probabilities, dtype=np.float64)

    def result(self, source: str, duration_s: float, channel: int = 0, channel_name: str | None = None) -> ClipResult:
        """The clip-level result so far (arguments as :func:`summarise`)."""
        labels = self.labels
        if not self.n_speech:
            return ClipResult(source, duration_s, self.n_windows, 0, None, None, None, labels, channel, channel_name)
        mean = self._sum / self.n_speech
        best = int(np.argmax(mean))
        return ClipResult(
            source,
            duration_s,
            self.n_windows,
            self.n_speech,
            labels[best],
            float(mean[best]),
            tuple(float(p) for p in mean),
            labels,
            channel,
            channel_name,
        )


def summarise(
    predictions: Iterable[Prediction],
    source: str,
    duration_s: float,
    labels: tuple[str, ...],
    channel: int = 0,
    channel_name: str | None = None,
) -> ClipResult:
    """Clip-level result: argmax of the mean probabilities over speech windows.

    Args:
        predictions: The stream's predictions (of one channel).
        source: Source name for the result.
        duration_s: Audio duration in seconds.
        labels: The model's labels.
        channel: Channel number of the result (0: down-mixed input).
        channel_name: Channel name of the result, or None.

    Returns:
        A :class:`~stream_ser.types.ClipResult`; ``label`` is None if no window was speech.
    """
    clip = ClipAccumulator(labels)
    for p in predictions:
        clip.add(p)
    return clip.result(source, duration_s, channel, channel_name)
