"""One listening session on its own inference thread: capture -> engine -> smoothing -> sinks.

Position in the pipeline: between a live :class:`~stream_ser.sources.MicrophoneSource` and its
consumers. The session's worker thread opens the source, drains its chunks, feeds the
:class:`~stream_ser.engine.Engine`, smooths the probabilities for display
(:mod:`stream_ser.smoothing`), writes every prediction to the sinks (CSV, ...) and reports what
happened as frozen *event* dataclasses (``SessionStarted``, ``LevelMeasured``, ``PredictionMade``,
...) through a callback. The terminal UI (:mod:`stream_ser.tui.app`) turns each event into a
Textual message with ``post_message``, which only enqueues it: the worker never waits for the UI,
so a slow terminal cannot make capture overflow. Nothing here imports Textual.

Threads:

* PortAudio's callback thread (inside the source) copies audio into a ring buffer, nothing else.
* The worker thread (:meth:`ListenSession.start`, or the caller of :meth:`ListenSession.run`)
  does all DSP: the input level for the meter, features, the model, smoothing, CSV writes.
* Any thread (in practice the UI thread, or a signal handler) may call the request methods
  (:meth:`~ListenSession.request_stop`, :meth:`~ListenSession.set_paused`,
  :meth:`~ListenSession.request_marker`, :meth:`~ListenSession.request_reset`); they only set
  flags or enqueue, and the worker applies them between chunks.

Pausing stops *scoring*, not capture: at the next hop boundary the worker drops its engine and
keeps counting samples (the stream clock and the level meter go on, PortAudio keeps being
drained); on resume, at a hop boundary, a fresh engine starts whose windows hold only audio
captured after the resume, and its times are shifted onto the session's stream clock. Hops that
end while paused produce no prediction and no CSV row, only a :class:`HopPaused` event.

Markers (``m`` in the UI) are written by the sinks that hold them: the timeline CSV as a row with
``label`` = ``marker`` (:func:`stream_ser.sinks.marker_csv_row`), JSON lines as a ``marker``
object.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine import Engine
from .features import frame_levels_dbfs
from .model import EmotionModel
from .sinks import MARKER_LABEL, CsvSink  # noqa: F401  (MARKER_LABEL re-exported)
from .smoothing import DEFAULT_HALF_LIFE_S, ProbabilitySmoother
from .sources import AudioSourceError, MicrophoneSource
from .types import Marker, Prediction

log = logging.getLogger(__name__)


#: Exit status of a session that ended because of a device or output error (see the CLI).
EXIT_ERROR = 1


# --------------------------------------------------------------------------------------------
# Options and events


@dataclass(frozen=True)
class SessionOptions:
    """How a listening session runs.

    Attributes:
        hop_s: Seconds of new audio between predictions; None for the model's default.
        duration_s: Stop after this many seconds of audio (stream clock); None to run until
            stopped or until the replayed file ends.
        level_interval_s: Stream-clock period (s) of the input level reported for the meter
            (one :class:`LevelMeasured` per interval); 0.1 s gives a lively meter at 10 events/s.
        smoothing_half_life_s: Half-life (s of speech) of the displayed probability smoothing
            (:class:`~stream_ser.smoothing.ProbabilitySmoother`); 0 disables it.
        clip_dbfs: Peak sample level (dBFS) at or above which an interval counts as clipped;
            -0.1 dBFS is a peak of 0.989 of full scale, the usual "over" mark of level meters.
    """

    hop_s: float | None = None
    duration_s: float | None = None
    level_interval_s: float = 0.1
    smoothing_half_life_s: float = DEFAULT_HALF_LIFE_S
    clip_dbfs: float = -0.1


@dataclass(frozen=True)
class SessionStats:
    """Counters of a session, attached to every event.

    Attributes:
        stream_s: Audio captured so far, in seconds on the stream clock (samples / 16 kHz).
        predictions: Predictions made (speech or not); hops skipped while paused are not counted.
        rows_written: Data rows in the CSV (predictions and markers); 0 without a CSV.
        overflows: Input overflows PortAudio reported (dropped input blocks).
        dropped_s: Audio lost because the worker fell behind the capture ring buffer (s of the
            device's native rate).
    """

    stream_s: float = 0.0
    predictions: int = 0
    rows_written: int = 0
    overflows: int = 0
    dropped_s: float = 0.0


@dataclass(frozen=True)
class SessionStarted:
    """The source is open and capture is about to start.

    Attributes:
        source_name: ``mic:<device name>`` or the replayed file's path.
        is_device: True for a live device, False for a replayed file.
        device_sample_rate_hz: Native rate captured (Hz).
        sample_rate_hz: The model's rate (Hz); audio is resampled to it.
        model_name: Model file stem.
        labels: The model's classes in output order.
        hop_s: Seconds between predictions.
        window_s: Length of each scored window (s).
        gate_dbfs: Frame RMS level (dBFS) of the speech gate.
        smoothing_half_life_s: Half-life of the displayed smoothing (s).
        csv_path: Path of the timeline CSV, or None.
        stats: Counters at this moment.
    """

    source_name: str
    is_device: bool
    device_sample_rate_hz: int
    sample_rate_hz: int
    model_name: str
    labels: tuple[str, ...]
    hop_s: float
    window_s: float
    gate_dbfs: float
    smoothing_half_life_s: float
    csv_path: str | None
    stats: SessionStats


@dataclass(frozen=True)
class LevelMeasured:
    """Input level over the last ``level_interval_s`` of audio (computed on the worker thread).

    Attributes:
        end_s: End of the interval on the stream clock (s).
        level_dbfs: Loudest frame RMS in the interval, in dBFS, with the speech gate's frames
            (25 ms frames, 10 ms hop, :func:`~stream_ser.features.frame_levels_dbfs`), so it
            compares directly with ``gate_dbfs``; -200 for digital silence.
        peak_dbfs: Largest absolute sample in the interval, in dBFS.
        clipped: ``peak_dbfs >= clip_dbfs``.
        stats: Counters at this moment.
    """

    end_s: float
    level_dbfs: float
    peak_dbfs: float
    clipped: bool
    stats: SessionStats


@dataclass(frozen=True)
class PredictionMade:
    """A window was scored and written to the sinks.

    Attributes:
        prediction: The prediction, times on the session's stream clock.
        hop_index: Index of the hop the window ends in: hop ``k`` covers
            ``(k * hop_s, (k + 1) * hop_s]`` of the stream clock.
        smoothed: Smoothed probabilities (model order) after this window, or None before the
            first speech window (since the start or the last reset).
        boundary_monotonic_s: ``time.monotonic()`` (or the session's clock) when the worker
            received the audio that completed the hop; the UI subtracts it from the time of
            display to show the latency.
        stats: Counters after this prediction.
    """

    prediction: Prediction
    hop_index: int
    smoothed: tuple[float, ...] | None
    boundary_monotonic_s: float
    stats: SessionStats


@dataclass(frozen=True)
class HopPaused:
    """A hop ended while scoring was paused (no prediction, no CSV row).

    Attributes:
        hop_index: Index of the hop (see :class:`PredictionMade`).
        end_s: Its end on the stream clock (s).
        stats: Counters at this moment.
    """

    hop_index: int
    end_s: float
    stats: SessionStats


@dataclass(frozen=True)
class PauseApplied:
    """The worker paused or resumed scoring at a hop boundary.

    Attributes:
        paused: The new state.
        time_s: The hop boundary on the stream clock (s).
        stats: Counters at this moment.
    """

    paused: bool
    time_s: float
    stats: SessionStats


@dataclass(frozen=True)
class MarkerWritten:
    """A marker was recorded.

    Attributes:
        marker: The marker.
        hop_index: The hop it falls in (see :class:`PredictionMade`).
        in_csv: True if a CSV row was written for it (False without ``--csv``).
        stats: Counters after writing it.
    """

    marker: Marker
    hop_index: int
    in_csv: bool
    stats: SessionStats


@dataclass(frozen=True)
class SessionEnded:
    """The worker finished; sources and sinks are closed (the CSV is complete).

    Attributes:
        reason: ``"stopped"`` (requested), ``"end of input"`` (the replayed file ended),
            ``"duration reached"`` or ``"error"``.
        error: The error message when ``reason == "error"``, else None.
        exit_status: 0, or :data:`EXIT_ERROR` after an error.
        stats: Final counters.
    """

    reason: str
    error: str | None
    exit_status: int
    stats: SessionStats


#: Everything :meth:`ListenSession.run` reports.
SessionEvent = (
    SessionStarted | LevelMeasured | PredictionMade | HopPaused | PauseApplied | MarkerWritten | SessionEnded
)


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
    """Collects stream samples into fixed intervals and measures each (worker thread)."""

    def __init__(self, interval_samples: int, config: Any, clip_dbfs: float) -> None:
        self._buf = np.zeros(interval_samples, dtype=np.float32)
        self._n = 0
        self._config = config
        self._clip_dbfs = clip_dbfs

    def add(self, x: np.ndarray) -> list[tuple[float, float, bool]]:
        """Add samples; returns ``(level_dbfs, peak_dbfs, clipped)`` per completed interval."""
        out = []
        pos = 0
        size = self._buf.size
        while pos < x.size:
            take = min(x.size - pos, size - self._n)
            self._buf[self._n : self._n + take] = x[pos : pos + take]
            self._n += take
            pos += take
            if self._n == size:
                levels = frame_levels_dbfs(self._buf, self._config)
                level = float(levels.max()) if levels.size else -200.0
                peak = float(np.max(np.abs(self._buf)))
                peak_dbfs = 20.0 * math.log10(max(peak, 1e-10))
                out.append((level, peak_dbfs, peak_dbfs >= self._clip_dbfs))
                self._n = 0
        return out


class ListenSession:
    """A listening session: open a source, score it every hop, write sinks, report events.

    Args:
        model: The loaded model (labels, feature recipe).
        open_source: Opens the audio source; called on the worker thread so that device errors
            are reported as a :class:`SessionEnded` event (with the message) rather than raised
            into the UI. Typically ``lambda: MicrophoneSource(device=..., replay=...)``.
        sinks: Where predictions are written (CSV, ...), each with ``write(prediction)`` and
            ``close()``. The worker closes them when the session ends.
        options: See :class:`SessionOptions`.
        clock: Monotonic clock in seconds for latency stamps (injectable for tests).

    Raises:
        ValueError: If the hop is not in (0, window_s] (checked at construction).

    Threads: :meth:`start` from the UI (or main) thread; :meth:`run` on the worker thread; the
    request methods from any thread.
    """

    def __init__(
        self,
        model: EmotionModel,
        open_source: Callable[[], MicrophoneSource],
        sinks: Sequence[Any] = (),
        options: SessionOptions = SessionOptions(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = model.feature_config
        self.options = options
        probe = Engine(model, hop_s=options.hop_s)  # validates the hop before any audio
        self.hop_s = probe.hop_s
        self.hop_samples = probe.hop_samples
        self.sinks = list(sinks)
        self.csv_sink: CsvSink | None = next((s for s in self.sinks if isinstance(s, CsvSink)), None)
        self._open_source = open_source
        self._clock = clock
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._reset = threading.Event()
        self._markers: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._source: MicrophoneSource | None = None
        self._thread: threading.Thread | None = None
        self._duration_reached = False
        self._predictions = 0
        self._stream_samples = 0
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
        source = self._source
        rate = source.device_sample_rate_hz if source is not None else self.config.sample_rate_hz
        return SessionStats(
            stream_s=self._stream_samples / self.config.sample_rate_hz,
            predictions=self._predictions,
            rows_written=self.csv_sink.rows_written if self.csv_sink is not None else 0,
            overflows=source.overflows if source is not None else 0,
            dropped_s=(source.dropped_frames / rate) if source is not None else 0.0,
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
        reason, error = "stopped", None
        try:
            source = self._open_source()
            self._source = source
            if self._stop.is_set():
                source.stop()
            emit(
                SessionStarted(
                    source_name=source.name,
                    is_device=source.name.startswith("mic:"),
                    device_sample_rate_hz=int(source.device_sample_rate_hz),
                    sample_rate_hz=self.config.sample_rate_hz,
                    model_name=self.model.name,
                    labels=tuple(self.model.labels),
                    hop_s=self.hop_s,
                    window_s=self.config.window_s,
                    gate_dbfs=self.config.gate_dbfs,
                    smoothing_half_life_s=self.options.smoothing_half_life_s,
                    csv_path=str(self.csv_sink.path) if self.csv_sink is not None else None,
                    stats=self._stats(),
                )
            )
            try:
                source.start()
            except AudioSourceError:
                raise
            except Exception as exc:  # sounddevice.PortAudioError from sources without their own check
                raise AudioSourceError(f"cannot start capture from {source.name}: {exc}") from None
            reason = self._loop(source, emit)
            if reason == "input ended" and source.name.startswith("mic:"):
                reason, error = "error", f"{source.name} stopped delivering audio (device disconnected?)"
            elif reason == "input ended":
                reason = "end of input"
        except AudioSourceError as exc:
            reason, error = "error", str(exc)
        except OSError as exc:  # writing the CSV failed (disk full, removed mount)
            reason, error = "error", f"cannot write output: {exc}"
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
                except OSError as exc:
                    log.warning("closing output: %s", exc)
                    if error is None:
                        reason, error = "error", f"cannot close output: {exc}"
        ended = SessionEnded(reason, error, EXIT_ERROR if error else 0, self._stats())
        self.result = ended
        emit(ended)
        return ended

    def _new_engine(self, source: MicrophoneSource) -> Engine:
        return Engine(self.model, hop_s=self.hop_s, source=source.name)

    def _loop(self, source: MicrophoneSource, emit: Callable[[Any], None]) -> str:
        """The capture loop; returns why it ended (``stopped``, ``duration reached``, ``input ended``)."""
        cfg = self.config
        sr = cfg.sample_rate_hz
        hop = self.hop_samples
        max_samples = int(round(self.options.duration_s * sr)) if self.options.duration_s else None
        interval = max(cfg.level_frame_length, int(round(self.options.level_interval_s * sr)))
        levels = _LevelAccumulator(interval, cfg, self.options.clip_dbfs)
        smoother = ProbabilitySmoother(len(self.model.labels), self.hop_s, self.options.smoothing_half_life_s)
        engine: Engine | None = self._new_engine(source)
        offset = 0  # stream sample at which the current engine started (a hop boundary)
        paused = False
        next_boundary = hop
        t_chunk = self._clock()

        def deliver(predictions: list[Prediction]) -> None:
            for p in predictions:
                if offset:
                    p = dataclasses.replace(
                        p,
                        start_s=(round(p.start_s * sr) + offset) / sr,
                        end_s=(round(p.end_s * sr) + offset) / sr,
                    )
                if self._reset.is_set():
                    self._reset.clear()
                    smoother.reset()
                smoothed = smoother.update(p.probabilities if p.is_speech else None)
                for sink in self.sinks:
                    sink.write(p)
                self._predictions += 1
                end = int(round(p.end_s * sr))
                self._marker_floor = max(self._marker_floor, end)
                emit(PredictionMade(p, max(end - 1, 0) // hop, smoothed, t_chunk, self._stats()))

        failure: AudioSourceError | None = None
        try:
            for chunk in source.chunks():
                t_chunk = self._chunk_arrival_s = self._clock()
                self._marker_floor = max(self._marker_floor, self._stream_samples)
                if max_samples is not None:
                    chunk = chunk[: max(0, max_samples - self._stream_samples)]
                pos = 0
                while pos < chunk.size:
                    take = min(chunk.size - pos, next_boundary - self._stream_samples)
                    piece = chunk[pos : pos + take]
                    pos += take
                    if engine is not None:
                        deliver(engine.push(piece))
                    self._stream_samples += take
                    for level, peak, clipped in levels.add(piece):
                        emit(LevelMeasured(self._stream_samples / sr, level, peak, clipped, self._stats()))
                    if self._stream_samples == next_boundary:
                        if paused:
                            emit(HopPaused(next_boundary // hop - 1, next_boundary / sr, self._stats()))
                        want = self._pause.is_set()
                        if want != paused:
                            paused = want
                            if paused:
                                engine = None
                            else:
                                engine, offset = self._new_engine(source), next_boundary
                            emit(PauseApplied(paused, next_boundary / sr, self._stats()))
                        next_boundary += hop
                self._take_requests(source, emit)
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

    def _take_requests(self, source: MicrophoneSource, emit: Callable[[Any], None]) -> None:
        """Write pending markers at the current stream time (worker thread)."""
        while True:
            try:
                requested_s = self._markers.get_nowait()
            except queue.Empty:
                return
            self._markers_written += 1
            waited_s = max(0.0, self._chunk_arrival_s - requested_s)
            t = max(self._marker_floor, self._stream_samples - int(round(waited_s * self.config.sample_rate_hz)))
            marker = Marker(source.name, 0, t / self.config.sample_rate_hz, self._markers_written)
            in_csv = False
            for sink in self.sinks:
                wrote = write_marker(sink, marker)
                in_csv = in_csv or (wrote and sink is self.csv_sink)
            emit(MarkerWritten(marker, max(t - 1, 0) // self.hop_samples, in_csv, self._stats()))
