"""One listening session on its own inference thread: capture -> engine -> smoothing -> sinks.

Position in the pipeline: between a live source (a
:class:`~stream_ser.audio.capture.CaptureSource`, or any :class:`~stream_ser.audio.source.Source`)
and its consumers. The session's worker thread opens the source, drains its chunks, feeds the
:class:`~stream_ser.engine.Engine`, smooths the probabilities for display
(:mod:`stream_ser.smoothing`), writes every prediction to the sinks (CSV, ...) and reports what
happened as frozen *event* dataclasses (``SessionStarted``, ``LevelMeasured``, ``PredictionMade``,
...; :mod:`stream_ser.session_events`, re-exported here) through a callback. The terminal UI
(:mod:`stream_ser.tui.app`) turns each event into a Textual message with ``post_message``, which
only enqueues it: the worker never waits for the UI, so a slow terminal cannot make capture
overflow. Nothing here imports Textual.

Threads:

* PortAudio's callback thread (inside the source) copies audio into a ring buffer, nothing else.
* The worker thread (:meth:`ListenSession.start`, or the caller of :meth:`ListenSession.run`)
  does all DSP: the input level for the meter, features, the model, smoothing, CSV writes.
* Any thread (in practice the UI thread, or a signal handler) may call the request methods
  (:meth:`~ListenSession.request_stop`, :meth:`~ListenSession.set_paused`,
  :meth:`~ListenSession.request_marker`, :meth:`~ListenSession.request_reset`); they only set
  flags or enqueue, and the worker applies them between chunks.

The stream clock is the number of samples taken in since the source started; hop boundaries
are its multiples of the hop. Pausing stops *scoring*, not capture: at the next hop boundary the
worker drops its engine and keeps counting samples (the stream clock and the level meter go on,
PortAudio keeps being drained); on resume, at a hop boundary, a fresh engine starts at that
sample of the stream clock (``start_sample``), so its windows hold only audio captured after the
resume and its predictions' times are stream times. Hops that end while paused produce no
prediction and no CSV row, only a :class:`HopPaused` event.

Calibration (``listen --calibrate``, speaker-normalised models only): each channel's first speech
windows only feed its voice statistics; hops during that phase produce no prediction and no CSV
row for the calibrating channels, only a :class:`CalibrationProgress` event.

Markers (``m`` in the UI) are written by the sinks that hold them: the timeline CSV as a row with
``label`` = ``marker`` (:func:`stream_ser.sinks.marker_csv_row`), JSON lines as a ``marker``
object.

Channels: a source may deliver several channels (``listen --channels 1,2``, or several devices
through a :class:`~stream_ser.audio.multi.MultiDeviceSource`). Each channel gets its own engine
(:class:`~stream_ser.engine.ChannelEngines`: own ring buffer, own speech gate and voice-activity
detector, one shared model),
its own smoothing and its own level; every prediction is reported with its channel's index, and
the session keeps a running :class:`~stream_ser.summary.CallSummary` (:attr:`ListenSession.summary`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adaptation import ADAPT_MODES, resolve_adapt
from .audio import AudioSourceError, Source
from .channels import ChannelPlan, ChannelPlanError
from .engine import ChannelEngines, check_speech_gate
from .features import frame_levels_dbfs
from .model import EmotionModel, ModelError
from .sinks import MARKER_LABEL, CsvSink, OutputError  # noqa: F401  (MARKER_LABEL re-exported)
from .smoothing import DEFAULT_HALF_LIFE_S, ProbabilitySmoother
from .session_events import (  # noqa: F401  (re-exported: the session's events are imported from here too)
    CalibrationProgress,
    HopPaused,
    LevelMeasured,
    MarkerWritten,
    PauseApplied,
    PredictionMade,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    SessionStats,
)
from .summary import CallSummary, CallSummaryBuilder
from .types import Marker, Prediction
from .vad import DEFAULT_GATE, check_gate

log = logging.getLogger(__name__)


#: Exit status of a session that ended because of a device or input error (see the CLI).
EXIT_ERROR = 1
#: Exit status of a session that ended because an output could not be written (a full disk).
EXIT_OUTPUT_ERROR = 2


# --------------------------------------------------------------------------------------------
# Options (the events are in stream_ser.session_events)


@dataclass(frozen=True)
class SessionOptions:
    """How a listening session runs.

    Attributes:
        hop_s: Seconds of new audio between predictions; None for the model's default.
        duration_s: Stop after this many seconds of audio (stream clock); None to run until
            stopped or until the replayed file ends.
        level_interval_s: Stream-clock period (s) of the input level reported for the meter
            (one :class:`LevelMeasured` per interval); 0.1 s gives a lively meter at 10 events/s.
            None: no level events, for a session nobody watches (``listen --no-tui``); capture
            (:meth:`~stream_ser.audio.capture.CaptureSource.wake_at`) then wakes the worker
            about once per hop instead of once per 40 ms capture block: the worker thread's CPU
            fell from 1.0 to 0.5 % of a core (``benchmarks/bench_live.py``).
        smoothing_half_life_s: Half-life (s of speech) of the displayed probability smoothing
            (:class:`~stream_ser.smoothing.ProbabilitySmoother`); 0 disables it.
        clip_dbfs: Peak sample level (dBFS) at or above which an interval counts as clipped;
            -0.1 dBFS is a peak of 0.989 of full scale, the usual "over" mark of level meters.
        channel_names: A name per channel the source delivers (``--channel-names``), or None
            to write channels by number; a count that does not match the source's channels ends
            the session with an error.
        calibrate_s: Calibration phase for a model with causal speaker normalisation
            (``listen --calibrate``; :mod:`stream_ser.adaptation`): each channel withholds its
            predictions until it has heard this many seconds of speech (one speech window per
            hop, so ``ceil(calibrate_s / hop_s)`` windows), which only feed its voice statistics.
            Those hops write no CSV row; :class:`CalibrationProgress` reports them. 0: none.
        adapt: The adaptation to each channel's voice (``listen --adapt``): ``"auto"``
            (default: the best the model carries, embedding, else output, else none),
            ``"embedding"``, ``"output"`` or ``"none"`` (:mod:`stream_ser.adaptation`). The
            voice is kept across pauses.
        gate: The speech gate of every channel (``listen --gate``): ``"vad"`` (default: the
            level gate and the voice-activity detector) or ``"level"`` (the level gate alone);
            see :class:`~stream_ser.engine.Engine`. The detector starts afresh after a pause, with
            the fresh engine (its windows hold only audio captured after the resume).

    Raises:
        ValueError: If ``duration_s`` is not None and not a finite number > 0, ``calibrate_s``
            is negative or not finite, ``level_interval_s`` is not positive, ``gate`` is not
            ``"vad"`` or ``"level"``, or ``adapt`` is not one of the modes (whether the model
            carries it is checked when the session starts its engines).
    """

    hop_s: float | None = None
    duration_s: float | None = None
    level_interval_s: float | None = 0.1
    smoothing_half_life_s: float = DEFAULT_HALF_LIFE_S
    clip_dbfs: float = -0.1
    channel_names: tuple[str, ...] | None = None
    calibrate_s: float = 0.0
    adapt: str = "auto"
    gate: str = DEFAULT_GATE

    def __post_init__(self) -> None:
        check_gate(self.gate)
        if self.adapt not in ADAPT_MODES:
            raise ValueError(f"adapt must be one of {', '.join(map(repr, ADAPT_MODES))}, got {self.adapt!r}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"duration_s must be a finite number of seconds > 0 or None, got {self.duration_s}")
        if not (math.isfinite(self.calibrate_s) and self.calibrate_s >= 0):
            raise ValueError(f"calibrate_s must be a finite number of seconds >= 0, got {self.calibrate_s}")
        if self.level_interval_s is not None and not self.level_interval_s > 0:
            raise ValueError(f"level_interval_s must be > 0 seconds or None, got {self.level_interval_s}")


# --------------------------------------------------------------------------------------------
# Markers in the CSV


def write_marker(sink: Any, marker: Marker) -> bool:
    """Record a marker in a sink that can hold one (CSV, JSON lines: ``write_marker``).

    Returns:
        True if the sink recorded the marker; printed lines skip markers.

    Thread: the thread that writes the sink's predictions (the worker).
    """
    method = getattr(sink, "write_marker", None)
    if not callable(method):
        return False
    method(marker)
    return True


# --------------------------------------------------------------------------------------------
# The session


class _LevelAccumulator:
    """Collects stream frames into fixed intervals and measures each channel (worker thread)."""

    def __init__(self, interval_samples: int, config: Any, clip_dbfs: float, channels: int = 1) -> None:
        self._buf = np.zeros((interval_samples, channels), dtype=np.float32)
        self._n = 0
        self._config = config
        self._clip_dbfs = clip_dbfs

    def add(self, x: np.ndarray) -> list[tuple[float, float, bool, tuple[float, ...]]]:
        """Add frames ``(n, channels)``; returns ``(level_dbfs, peak_dbfs, clipped, per-channel
        levels)`` per completed interval (level: the loudest channel's)."""
        out = []
        pos = 0
        size = self._buf.shape[0]
        n = x.shape[0]
        while pos < n:
            take = min(n - pos, size - self._n)
            self._buf[self._n : self._n + take] = x[pos : pos + take]
            self._n += take
            pos += take
            if self._n == size:
                per_channel = []
                for c in range(self._buf.shape[1]):
                    levels = frame_levels_dbfs(self._buf[:, c], self._config)
                    per_channel.append(float(levels.max()) if levels.size else -200.0)
                peak = float(np.max(np.abs(self._buf)))
                peak_dbfs = 20.0 * math.log10(max(peak, 1e-10))
                out.append((max(per_channel), peak_dbfs, peak_dbfs >= self._clip_dbfs, tuple(per_channel)))
                self._n = 0
        return out

    @property
    def remaining(self) -> int:
        """Samples still missing from the current interval (1 .. interval)."""
        return self._buf.shape[0] - self._n


class ListenSession:
    """A listening session: open a source, score it every hop, write sinks, report events.

    Args:
        model: The loaded model (labels, feature recipe).
        open_source: Opens the audio source; called on the worker thread so that device errors
            are reported as a :class:`SessionEnded` event (with the message) rather than raised
            into the UI: any :class:`~stream_ser.audio.source.Source`, typically a
            :class:`~stream_ser.audio.capture.CaptureSource` (a device, or a file replayed
            through the capture path) or a :class:`~stream_ser.audio.multi.MultiDeviceSource`
            for several devices.
        sinks: Where predictions are written (CSV, ...), each with ``write(prediction)`` and
            ``close()``. The worker closes them when the session ends.
        options: See :class:`SessionOptions`.
        clock: Monotonic clock in seconds for latency stamps (injectable for tests).

    Raises:
        ValueError: If the hop is not in (0, window_s], or ``options.adapt`` names an adaptation
            the model does not carry (checked at construction).
        ModelError: If the speech gate is ``"vad"`` and the detector's model cannot be loaded
            (checked at construction, before any audio).

    Threads: :meth:`start` from the UI (or main) thread; :meth:`run` on the worker thread; the
    request methods from any thread.
    """

    def __init__(
        self,
        model: EmotionModel,
        open_source: Callable[[], Source],
        sinks: Sequence[Any] = (),
        options: SessionOptions = SessionOptions(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = model.feature_config
        self.options = options
        self.hop_s = self.config.hop_s if options.hop_s is None else float(options.hop_s)
        self.hop_samples = self.config.check_hop(options.hop_s)  # a bad hop fails here, before any audio
        check_speech_gate(self.config, options.gate)  # and so does a detector that cannot start
        #: The adaptation to the voice that runs (``options.adapt`` resolved against the model).
        self.adaptation = resolve_adapt(options.adapt, model.metadata.embedding_adaptation, model.metadata.output_prior)
        #: Speech windows each channel takes in before it predicts (0: no calibration phase, also
        #: for a model without speaker normalisation).
        self.calibration_windows = (
            math.ceil(options.calibrate_s / self.hop_s - 1e-9) if model.metadata.speaker_norm is not None else 0
        )
        self.sinks = list(sinks)
        self.csv_sink: CsvSink | None = next((s for s in self.sinks if isinstance(s, CsvSink)), None)
        self._open_source = open_source
        self._clock = clock
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._reset = threading.Event()
        self._markers: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._source: Source | None = None
        self._summary: CallSummaryBuilder | None = None
        self._channel_names: tuple[str | None, ...] = (None,)
        self._thread: threading.Thread | None = None
        self._duration_reached = False
        self._predictions = 0
        self._stream_samples = 0
        self._paused_samples = 0  # stream samples taken in while scoring was paused
        self._markers_written = 0
        # Markers never go before the start of the chunk being processed nor before the last
        # written prediction, so CSV rows stay in stream order (samples).
        self._marker_floor = 0
        self._chunk_arrival_s = 0.0
        #: The final event, once the worker has finished.
        self.result: SessionEnded | None = None

    # ---- any thread --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the worker to stop: capture stops, the last partial hop is scored, sinks close.

        Any thread; safe in a signal handler (it only sets events).
        """
        self._stop.set()
        source = self._source
        if source is not None:
            source.stop()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume scoring from the next hop boundary (capture continues). Any thread."""
        if paused:
            self._pause.set()
        else:
            self._pause.clear()

    @property
    def paused(self) -> bool:
        """Whether scoring is requested to be paused (applied at the next hop boundary)."""
        return self._pause.is_set()

    def request_marker(self) -> None:
        """Ask for a marker at the current stream time (written by the worker). Any thread."""
        self._markers.put(self._clock())

    def request_reset(self) -> None:
        """Ask the worker to forget the smoothing state (the UI's "clear view"). Any thread."""
        self._reset.set()

    @property
    def summary(self) -> CallSummary | None:
        """The call summary so far (per channel: speech time, emotions, longest spans, changes;
        with several devices, their clocks), or None before the source opened. Read it after
        the session ended (or from the worker thread)."""
        if self._summary is None:
            return None
        sr = self.config.sample_rate_hz
        # the summary states the audio the session took in, as its own line does, paused time included
        stream = self._stream_samples
        self._summary.set_stream(stream / sr, min(self._paused_samples, stream) / sr)
        return self._summary.result(self._source.clock_report() if self._source is not None else ())

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ---- starting thread ---------------------------------------------------------------------

    def start(self, emit: Callable[[Any], None]) -> None:
        """Run :meth:`run` on a new worker thread (named ``stream-ser-engine``).

        Args:
            emit: Called on the worker thread with every event; must not block (the UI passes
                ``post_message``, which only enqueues).

        Raises:
            RuntimeError: If the session was already started.
        """
        if self._thread is not None:
            raise RuntimeError("session already started")
        self._thread = threading.Thread(target=self.run, args=(emit,), name="stream-ser-engine", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the worker thread; returns True if it has finished (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # ---- worker thread -----------------------------------------------------------------------

    def _stats(self) -> SessionStats:
        source = self._source.stats if self._source is not None else None
        return SessionStats(
            stream_s=self._stream_samples / self.config.sample_rate_hz,
            predictions=self._predictions,
            rows_written=self.csv_sink.rows_written if self.csv_sink is not None else 0,
            overflows=source.overflows if source is not None else 0,
            dropped_s=source.dropped_s if source is not None else 0.0,
        )

    def run(self, emit: Callable[[Any], None]) -> SessionEnded:
        """Open the source and score it until stopped, the file ends or an error occurs.

        Sources and sinks are closed before :class:`SessionEnded` is emitted, so when the UI
        sees that event the CSV is complete.

        Args:
            emit: Receives every event (see :data:`SessionEvent`), on this thread.

        Returns:
            The final :class:`SessionEnded` event (also kept in :attr:`result`).

        Thread: the worker thread (or any single thread, for headless use and tests).
        """
        reason, error, status = "stopped", None, EXIT_ERROR
        try:
            source = self._open_source()
            self._source = source
            if self._stop.is_set():
                source.stop()
            try:
                plan = ChannelPlan.of(source.channel_numbers, self.options.channel_names,
                                      source.channel_descriptions, source=source.name)
            except ChannelPlanError as exc:
                raise AudioSourceError(str(exc)) from None
            numbers, names, descriptions = plan.numbers, plan.names, plan.descriptions
            self._channel_names = names
            self._summary = CallSummaryBuilder(source.name, self.model.labels, self.hop_s, numbers, names, descriptions)
            rates = tuple(int(rate) for rate in source.native_rates_hz)
            emit(
                SessionStarted(
                    source_name=source.name,
                    is_device=source.is_device,
                    device_sample_rate_hz=rates[0],
                    sample_rate_hz=self.config.sample_rate_hz,
                    model_name=self.model.name,
                    labels=tuple(self.model.labels),
                    hop_s=self.hop_s,
                    window_s=self.config.window_s,
                    gate_dbfs=self.config.gate_dbfs,
                    smoothing_half_life_s=self.options.smoothing_half_life_s,
                    csv_path=str(self.csv_sink.path) if self.csv_sink is not None else None,
                    stats=self._stats(),
                    channel_ids=tuple(n if n_ is None else n_ for n, n_ in zip(numbers, names)),
                    channel_descriptions=descriptions,
                    device_sample_rates_hz=rates,
                    gate=self.options.gate,
                )
            )
            try:
                source.start()
            except AudioSourceError:
                raise
            except Exception as exc:  # sounddevice.PortAudioError from sources without their own check
                raise AudioSourceError(f"cannot start capture from {source.name}: {exc}") from None
            reason = self._loop(source, emit)
            if reason == "input ended" and source.is_device:
                reason, error = "error", f"{source.name} stopped delivering audio (device disconnected?)"
            elif reason == "input ended":
                reason = "end of input"
        except AudioSourceError as exc:
            reason, error = "error", str(exc)
        except OutputError as exc:  # writing the CSV or JSON lines failed (disk full, removed mount)
            reason, error, status = "error", str(exc), EXIT_OUTPUT_ERROR
        except OSError as exc:  # another sink's write failed
            reason, error = "error", f"cannot write output: {exc}"
        except ModelError as exc:  # the model's output is not probabilities, or it failed to run
            reason, error = "error", str(exc)
        except Exception as exc:  # a bug: report it in the UI instead of a dead worker
            log.exception("listening failed")
            reason, error = "error", f"internal error: {exc!r}"
        finally:
            if self._source is not None:
                try:
                    self._source.close()
                except Exception as exc:  # PortAudio errors on a vanished device
                    log.warning("closing %s: %s", self._source.name, exc)
            for sink in self.sinks:
                try:
                    sink.close()
                except (OutputError, OSError) as exc:
                    log.warning("closing output: %s", exc)
                    if error is None:
                        reason, error, status = "error", f"cannot close output: {exc}", EXIT_OUTPUT_ERROR
        ended = SessionEnded(reason, error, status if error else 0, self._stats())
        self.result = ended
        emit(ended)
        return ended

    def _new_engine(self, source: Source, normalisers: Any = None, adapters: Any = None,
                    start_sample: int = 0) -> ChannelEngines:
        """Engines for every channel, starting at stream sample ``start_sample`` (a hop boundary);
        ``normalisers`` and ``adapters`` carry each channel's voice statistics (feature
        normalisation, adaptation to the voice) across a pause."""
        return ChannelEngines(self.model, hop_s=self.hop_s, source=source.name,
                              channels=tuple(source.channel_numbers), channel_names=self._channel_names,
                              normalisers=normalisers, calibration_windows=self.calibration_windows,
                              adapt=self.options.adapt, adapters=adapters, gate=self.options.gate,
                              start_sample=start_sample)

    def _loop(self, source: Source, emit: Callable[[Any], None]) -> str:
        """The capture loop; returns why it ended (``stopped``, ``duration reached``, ``input ended``)."""
        cfg = self.config
        sr = cfg.sample_rate_hz
        hop = self.hop_samples
        max_samples = int(round(self.options.duration_s * sr)) if self.options.duration_s else None
        engine: ChannelEngines | None = self._new_engine(source)
        normalisers = [e.normaliser for e in engine.engines]  # one voice per channel, kept across pauses
        adapters = [e.adapter for e in engine.engines]
        n_channels = len(engine.channels)
        channel_index = {(c, n): i for i, (c, n) in enumerate(zip(engine.channels, engine.channel_names))}
        levels = None
        if self.options.level_interval_s is not None:
            interval = max(cfg.level_frame_length, int(round(self.options.level_interval_s * sr)))
            levels = _LevelAccumulator(interval, cfg, self.options.clip_dbfs, n_channels)
        smoothers = [ProbabilitySmoother(len(self.model.labels), self.hop_s, self.options.smoothing_half_life_s)
                     for _ in range(n_channels)]
        summary = self._summary
        paused = False
        t_chunk = self._clock()
        chunk_end = 0

        def next_boundary() -> int:
            """The first hop boundary after the stream clock (the session's and its engine's)."""
            return (self._stream_samples // hop + 1) * hop

        def deliver(predictions: list[Prediction]) -> None:
            for p in predictions:
                if self._reset.is_set():
                    self._reset.clear()
                    for smoother in smoothers:
                        smoother.reset()
                index = channel_index[(p.channel, p.channel_name)]
                smoothed = smoothers[index].update(p.probabilities if p.is_speech else None)
                for sink in self.sinks:
                    sink.write(p)
                if summary is not None:
                    summary.add(p)
                self._predictions += 1
                end = int(round(p.end_s * sr))
                self._marker_floor = max(self._marker_floor, end)
                captured = t_chunk - max(0, chunk_end - end) / sr
                emit(PredictionMade(p, max(end - 1, 0) // hop, smoothed, t_chunk, self._stats(), index, captured))

        failure: AudioSourceError | None = None
        try:
            for chunk in source.frames():
                t_chunk = self._chunk_arrival_s = self._clock()
                self._marker_floor = max(self._marker_floor, self._stream_samples)
                if chunk.ndim == 1:
                    chunk = chunk[:, None]
                if max_samples is not None:
                    chunk = chunk[: max(0, max_samples - self._stream_samples)]
                chunk_end = self._stream_samples + chunk.shape[0]  # stream sample after the chunk
                pos = 0
                while pos < chunk.shape[0]:
                    boundary = next_boundary()
                    take = min(chunk.shape[0] - pos, boundary - self._stream_samples)
                    piece = chunk[pos : pos + take]
                    pos += take
                    if engine is not None:
                        calibrating = self.calibration_windows and any(e.calibrating for e in engine.engines)
                        deliver(engine.push(piece))
                        if calibrating and self._stream_samples + take == boundary:
                            emit(self._calibration_progress(engine, boundary))
                    else:
                        self._paused_samples += take
                    self._stream_samples += take
                    for level, peak, clipped, per_channel in levels.add(piece) if levels is not None else ():
                        emit(LevelMeasured(self._stream_samples / sr, level, peak, clipped, self._stats(), per_channel))
                    if self._stream_samples == boundary:
                        if paused:
                            emit(HopPaused(boundary // hop - 1, boundary / sr, self._stats()))
                        want = self._pause.is_set()
                        if want != paused:
                            paused = want
                            engine = None if paused else self._new_engine(source, normalisers, adapters, boundary)
                            emit(PauseApplied(paused, boundary / sr, self._stats()))
                self._take_requests(source, emit)
                # nothing to do before the next hop boundary or level interval: capture may hold back until then
                wake = next_boundary()
                source.wake_at(wake if levels is None else min(wake, self._stream_samples + levels.remaining))
                if max_samples is not None and self._stream_samples >= max_samples and not self._duration_reached:
                    self._duration_reached = True
                    source.stop()
        except AudioSourceError as exc:  # device vanished or stalled: everything captured came first
            failure = exc
        if engine is not None:
            deliver(engine.flush())  # the last partial hop, also before reporting a fault
        self._take_requests(source, emit)
        if failure is not None:
            raise failure
        if self._stop.is_set():
            return "stopped"
        if self._duration_reached:
            return "duration reached"
        return "input ended"

    def _calibration_progress(self, engine: ChannelEngines, boundary: int) -> CalibrationProgress:
        """The calibration state after the hop ending at stream sample ``boundary``."""
        n = self.calibration_windows
        speech = tuple(min(e.normaliser.windows, n) * self.hop_s for e in engine.engines)
        return CalibrationProgress(boundary // self.hop_samples - 1, boundary / self.config.sample_rate_hz, speech,
                                   n * self.hop_s, self._stats())

    def _take_requests(self, source: Source, emit: Callable[[Any], None]) -> None:
        """Write pending markers at the current stream time, one per channel (worker thread)."""
        while True:
            try:
                requested_s = self._markers.get_nowait()
            except queue.Empty:
                return
            self._markers_written += 1
            waited_s = max(0.0, self._chunk_arrival_s - requested_s)
            t = max(self._marker_floor, self._stream_samples - int(round(waited_s * self.config.sample_rate_hz)))
            numbers = tuple(source.channel_numbers)
            markers = [Marker(source.name, number, t / self.config.sample_rate_hz, self._markers_written, name)
                       for number, name in zip(numbers, self._channel_names)]
            in_csv = False
            for marker in markers:
                for sink in self.sinks:
                    wrote = write_marker(sink, marker)
                    in_csv = in_csv or (wrote and sink is self.csv_sink)
            emit(MarkerWritten(markers[0], max(t - 1, 0) // self.hop_samples, in_csv, self._stats()))
