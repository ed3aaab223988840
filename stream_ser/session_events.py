"""What a listening session reports: its counters and its events, as frozen dataclasses.

Position in the pipeline: the vocabulary between :class:`~stream_ser.session.ListenSession`'s
worker thread and its consumers (the terminal UI, ``listen --no-tui``'s status lines, tests).
The worker emits each event through a callback as it happens (``SessionStarted``, then
``LevelMeasured``, ``PredictionMade``, ``HopPaused``, ``CalibrationProgress``, ``PauseApplied``,
``MarkerWritten`` in stream order, last ``SessionEnded``); every event carries the counters at
that moment (:class:`SessionStats`). Times are on the session's stream clock (samples at the
model's rate), except the monotonic latency stamps of :class:`PredictionMade`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Marker, Prediction
from .vad import DEFAULT_GATE


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
        gate_dbfs: Frame RMS level (dBFS) of the speech gate's level half.
        smoothing_half_life_s: Half-life of the displayed smoothing (s).
        csv_path: Path of the timeline CSV, or None.
        stats: Counters at this moment.
        channel_ids: Each scored channel as the CSV writes it (name, else number); ``(0,)`` for
            mono input.
        channel_descriptions: What each channel is (device name, ``channel 2``, or the source).
        device_sample_rates_hz: Native rate of each device (several devices), else of the source.
        gate: The speech gate (``"vad"``: level and voice activity; ``"level"``: level alone).
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
    channel_ids: tuple[int | str, ...] = (0,)
    channel_descriptions: tuple[str, ...] = ()
    device_sample_rates_hz: tuple[int, ...] = ()
    gate: str = DEFAULT_GATE


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
        channel_levels_dbfs: The level of each channel (same measure), in channel order;
            ``level_dbfs`` is the loudest of them and ``peak_dbfs``/``clipped`` cover all channels.
    """

    end_s: float
    level_dbfs: float
    peak_dbfs: float
    clipped: bool
    stats: SessionStats
    channel_levels_dbfs: tuple[float, ...] = ()


@dataclass(frozen=True)
class PredictionMade:
    """A window was scored and written to the sinks.

    Attributes:
        prediction: The prediction, times on the session's stream clock.
        hop_index: Index of the hop the window ends in: hop ``k`` covers
            ``(k * hop_s, (k + 1) * hop_s]`` of the stream clock.
        smoothed: Smoothed probabilities (model order) of the prediction's channel after this
            window, or None before that channel's first speech window (since the start or the
            last reset).
        boundary_monotonic_s: ``time.monotonic()`` (or the session's clock) when the worker
            received the audio that completed the hop; the UI subtracts it from the time of
            display to show the latency.
        captured_monotonic_s: Estimated time the hop's last sample was captured: the arrival
            of its chunk minus the duration of the chunk's samples after it (a capture block
            delivers its first sample a block duration after it was recorded). Latency from
            here includes the capture block time; device and sound-server buffering before the
            callback are not visible to the program.
        stats: Counters after this prediction.
        channel_index: Position of the prediction's channel among the session's channels (0 for
            mono input); the channels of one hop arrive one after the other in this order.
    """

    prediction: Prediction
    hop_index: int
    smoothed: tuple[float, ...] | None
    boundary_monotonic_s: float
    stats: SessionStats
    channel_index: int = 0
    captured_monotonic_s: float | None = None


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
class CalibrationProgress:
    """A hop ended while at least one channel was still calibrating (see
    :attr:`SessionOptions.calibrate_s`); calibrating channels made no prediction for it.

    Attributes:
        hop_index: Index of the hop (see :class:`PredictionMade`).
        end_s: Its end on the stream clock (s).
        speech_s: Per channel, seconds of speech taken in so far (speech windows x hop),
            capped at ``target_s``.
        target_s: Seconds of speech each channel needs (calibration windows x hop).
        stats: Counters at this moment.
    """

    hop_index: int
    end_s: float
    speech_s: tuple[float, ...]
    target_s: float
    stats: SessionStats

    @property
    def done(self) -> bool:
        """True once every channel is calibrated (the last such event of a session)."""
        return all(s >= self.target_s for s in self.speech_s)


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
    """A marker was recorded (once per session, whatever the number of channels).

    Attributes:
        marker: The marker (of the first channel; every channel gets a row with the same time
            and number).
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
        exit_status: 0, :data:`EXIT_OUTPUT_ERROR` after an output error, or :data:`EXIT_ERROR`
            after another error.
        stats: Final counters.
    """

    reason: str
    error: str | None
    exit_status: int
    stats: SessionStats


#: Everything :meth:`ListenSession.run` reports.
SessionEvent = (
    SessionStarted | LevelMeasured | PredictionMade | HopPaused | CalibrationProgress | PauseApplied | MarkerWritten
    | SessionEnded
)
