"""The ``stream-ser listen`` terminal UI: a Textual app over a :class:`ListenSession`.

Position in the pipeline: the last consumer. The session's worker thread captures, scores and
writes the CSV; it hands each event to :meth:`ListenApp.post_event`, which wraps it in the
message class of its type (:mod:`stream_ser.tui.messages`) and calls Textual's thread-safe
``post_message`` (it only enqueues the message on the event loop; it never waits), so capture and
scoring never wait on the terminal. Each event type has its own handler (``on_prediction_made``,
``on_level_measured``, ...).
The UI thread applies the events to the widgets and never runs DSP: the level meter's dBFS, the
smoothed probabilities and every counter arrive computed.

With several channels (``--channels``, several ``--device``) the "now" panel and the bars give
way to a :class:`~stream_ser.tui.widgets.ChannelsPanel` (one line per channel: name, current
emotion, trend, level) and the timeline shows one line per channel in each time row.

Keys (``?`` shows them): ``q`` quit, ``space`` pause/resume scoring, ``m`` marker, ``c`` clear
the view, ``?`` keys. SIGTERM, SIGINT and SIGHUP stop the session like ``q``.

Exit status: 0 when the user quits (also after a replayed file ended), 1 when the input failed
(device missing, vanished or unusable; the error is shown in the app first, the CSV is closed
complete).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer

from ..display import format_time
from ..session import EXIT_ERROR, ListenSession, SessionEnded, SessionEvent, SessionStarted
from ..text import printable
from . import messages
from .messages import LogRecorded, message_for
from .palette import EmotionPalette
from .screens import KeysScreen, MessageScreen
from .timeline import Timeline
from .widgets import ChannelsPanel, LevelMeter, NowPanel, ProbabilityBars, SourceHeader, StatusBar

#: Seconds the UI waits for the worker to stop after ``q`` before exiting anyway.
STOP_TIMEOUT_S = 5.0
#: A live device that delivers no audio for this long (s, wall clock) is flagged on the meter.
STALL_WARNING_S = 2.0
#: Log records kept while the app owns the terminal, printed to stderr after it exits.
KEPT_LOG_RECORDS = 1000


class ListenApp(App[None]):
    """The live screen of ``stream-ser listen``.

    Args:
        session: The session to run; the app starts its worker thread on mount and stops it on
            ``q`` (or a signal), then exits once the worker reports that the CSV is closed.
        clock: Monotonic clock in seconds (the session's), used for the latency of each
            prediction: from the arrival of the audio that completed its hop to its display.
        handle_signals: Stop cleanly on SIGTERM/SIGINT/SIGHUP (main thread, Unix only).

    Attributes:
        palette: Colours and letters per label.
        latency_ms: Latency of the last displayed prediction (ms), or None.
        exit_status: The status the app will exit with.

    Thread: the UI thread (Textual's event loop), except :meth:`post_event` (any thread).
    """

    CSS_PATH = "app.tcss"
    TITLE = "stream-ser listen"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("q", "quit_session", "Quit"),
        Binding("space", "toggle_pause", "Pause/resume"),
        Binding("m", "marker", "Marker"),
        Binding("c", "clear_view", "Clear"),
        Binding("question_mark", "show_keys", "Keys", key_display="?"),
        Binding("ctrl+c", "quit_session", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        session: ListenSession,
        *,
        clock: Callable[[], float] = time.monotonic,
        handle_signals: bool = False,
    ) -> None:
        super().__init__()
        self.session = session
        self.palette = EmotionPalette(session.model.labels)
        self._clock = clock
        self._handle_signals = handle_signals
        self._signals: list[int] = []
        self._quitting = False
        self._started: SessionStarted | None = None
        self._ended: SessionEnded | None = None
        self._last_level_at: float | None = None
        self.latency_ms: float | None = None
        self.exit_status = 0
        self.markers = 0
        #: Channels shown (1 for mono input); set when the session starts.
        self.n_channels = 1
        self._channel_speech: list[bool] = [False]

    # ---- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SourceHeader(id="header")
        yield LevelMeter(id="level")
        with Horizontal(id="middle"):
            yield NowPanel(id="now")
            yield ProbabilityBars(id="bars")
        yield ChannelsPanel(id="channels")
        yield Timeline(id="timeline")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        labels = self.session.model.labels
        self.query_one("#middle").styles.height = max(len(labels), 7) + 2
        self.query_one(SourceHeader).show_opening(self.session.model.name, labels, self.session.config.window_s)
        self.query_one(LevelMeter).set_gate(self.session.config.gate_dbfs)
        now = self.query_one(NowPanel)
        now.border_title = "now"
        now.show_state("waiting", "for the first hop")
        bars = self.query_one(ProbabilityBars)
        bars.configure(self.palette)
        bars.border_title = f"smoothed · half-life {self.session.options.smoothing_half_life_s:g} s"
        timeline = self.query_one(Timeline)
        timeline.configure(self.palette, self.session.hop_s)
        csv = self.session.csv_sink
        self.query_one(StatusBar).set(state="waiting", csv_path=str(csv.path) if csv is not None else None)
        timeline.rows.focus()
        if self._handle_signals:
            self._install_signal_handlers()
        self.set_interval(0.5, self._watch_input)
        self.session.start(self.post_event)

    def on_unmount(self) -> None:
        self.session.request_stop()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGINT", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                loop.add_signal_handler(sig, self.action_quit_session)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, not the main thread
                continue
            self._signals.append(sig)

    # ---- worker thread -> UI thread ------------------------------------------------------------

    def post_event(self, event: SessionEvent) -> None:
        """Queue a session event for the UI (called on the worker thread; never blocks).

        The event travels as the message of its type (:func:`~stream_ser.tui.messages.message_for`),
        handled by the matching ``on_...`` method below on the UI thread.
        """
        self.post_message(message_for(event))

    def on_session_started(self, message: messages.SessionStarted) -> None:
        """The source is open: show it, and lay out one line per channel if there are several."""
        event = message.event
        self._started = event
        self._last_level_at = self._clock()
        self._show_channels(event)
        self.query_one(SourceHeader).show_source(
            event.source_name, event.is_device, event.device_sample_rate_hz, event.sample_rate_hz,
            event.device_sample_rates_hz, len(event.channel_ids),
        )
        self.query_one(LevelMeter).set_state("live")
        self.query_one(StatusBar).set(state=self._live_state(), stats=event.stats)

    def on_level_measured(self, message: messages.LevelMeasured) -> None:
        """A level measurement: the meter (and each channel's level); audio is arriving again."""
        event = message.event
        self._last_level_at = self._clock()
        meter = self.query_one(LevelMeter)
        if meter.state == "stalled":
            meter.set_state(self._live_state())
        meter.set_level(event.end_s, event.level_dbfs, event.peak_dbfs, event.clipped)
        if self.n_channels > 1 and event.channel_levels_dbfs:
            self.query_one(ChannelsPanel).set_levels(event.channel_levels_dbfs)
        self.query_one(StatusBar).set(stats=event.stats)

    def on_prediction_made(self, message: messages.PredictionMade) -> None:
        """A scored window: the "now" panel and bars (or its channel's line), the timeline, the
        meter's speech state; its latency is measured once it is on screen."""
        event = message.event
        p = event.prediction
        index = event.channel_index
        if self.n_channels > 1:
            self.query_one(ChannelsPanel).show_prediction(index, p, event.smoothed)
        else:
            self.query_one(NowPanel).show_prediction(p, self.palette)
            self.query_one(ProbabilityBars).set_values(event.smoothed, p.label)
        self.query_one(Timeline).rows.add_prediction(event.hop_index, p, index)
        if 0 <= index < len(self._channel_speech):
            self._channel_speech[index] = p.is_speech
        self.query_one(LevelMeter).set_speech(any(self._channel_speech))
        self.query_one(StatusBar).set(stats=event.stats)
        since = event.captured_monotonic_s if event.captured_monotonic_s is not None else event.boundary_monotonic_s
        self.call_after_refresh(self._measure_latency, since)

    def on_calibration_progress(self, message: messages.CalibrationProgress) -> None:
        """Calibrating on the first speech: how much was heard; a notification when done."""
        event = message.event
        status = self.query_one(StatusBar)
        if event.done:
            self.notify(f"calibrated on {event.target_s:g} s of speech; predictions start", timeout=4)
            status.set(state=self._live_state(), stats=event.stats)
            return
        heard = " / ".join(f"{s:g}" for s in event.speech_s)
        if self.n_channels <= 1:
            self.query_one(NowPanel).show_state(
                "CALIBRATING", f"learning the voice: {heard} of {event.target_s:g} s of speech")
        status.set(state="calibrating", stats=event.stats)

    def on_hop_paused(self, message: messages.HopPaused) -> None:
        """A hop that ended while paused: a pause cell on the timeline."""
        self.query_one(Timeline).rows.add_paused(message.event.hop_index)
        self.query_one(StatusBar).set(stats=message.event.stats)

    def on_pause_applied(self, message: messages.PauseApplied) -> None:
        """The pause (or resume) took effect at a hop boundary: say since when."""
        event = message.event
        if event.paused:
            self.query_one(NowPanel).show_state("PAUSED", f"since {format_time(event.time_s)}")
        else:
            self.query_one(NowPanel).show_state("resumed", f"at {format_time(event.time_s)}")
        self.query_one(StatusBar).set(stats=event.stats)

    def on_marker_written(self, message: messages.MarkerWritten) -> None:
        """A marker was recorded: on the timeline, and a notification."""
        event = message.event
        self.markers = event.marker.number
        self.query_one(Timeline).rows.add_marker(event.hop_index, event.marker.number)
        where = " (CSV row written)" if event.in_csv else ""
        self.notify(f"marker {event.marker.number} at {format_time(event.marker.time_s)}{where}", timeout=3)
        self.query_one(StatusBar).set(stats=event.stats)

    def on_session_ended(self, message: messages.SessionEnded) -> None:
        """The session stopped (outputs closed): exit if quitting, else say why it ended."""
        event = message.event
        self._ended = event
        self.exit_status = event.exit_status
        status = self.query_one(StatusBar)
        self.query_one(LevelMeter).set_state("ended")
        if self._quitting:
            self.exit(return_code=event.exit_status)
            return
        if event.error:
            status.set(state="error", stats=event.stats)
            self.query_one(NowPanel).show_state("ERROR", "q quits")
            rows = f"{event.stats.rows_written} rows" if self.session.csv_sink is not None else "no CSV"
            self.push_screen(
                MessageScreen(
                    "input error",
                    f"{event.error}\n\nListening stopped after {format_time(event.stats.stream_s)} of audio; "
                    f"every row written so far is in the closed CSV ({rows}).",
                )
            )
        else:
            status.set(state="ended", stats=event.stats)
            closed = "; the CSV is complete" if self.session.csv_sink is not None else ""
            self.notify(f"{event.reason}{closed}; q quits", timeout=8)

    def _live_state(self) -> str:
        """The status while capturing: ``paused`` or ``live``."""
        return "paused" if self.session.paused else "live"

    def _show_channels(self, event: SessionStarted) -> None:
        """Several channels: the channels panel replaces the "now" panel and the bars, and the
        timeline gets one line per channel."""
        self.n_channels = len(event.channel_ids)
        self._channel_speech = [False] * self.n_channels
        panel = self.query_one(ChannelsPanel)
        if self.n_channels <= 1:
            panel.display = False
            return
        names = [str(c) for c in event.channel_ids]
        panel.configure(self.palette, names)
        panel.border_title = "channels · now, trend (smoothed), level"
        panel.display = True
        self.query_one("#middle").display = False
        self.query_one(Timeline).rows.configure_channels(names)

    def on_log_recorded(self, message: LogRecorded) -> None:
        """Show a warning or error logged by any thread as a notification."""
        record = message.record
        if record.levelno >= logging.WARNING:
            severity = "error" if record.levelno >= logging.ERROR else "warning"
            self.notify(record.getMessage(), severity=severity, timeout=6)

    def _measure_latency(self, boundary_s: float) -> None:
        self.latency_ms = max(0.0, (self._clock() - boundary_s) * 1000.0)
        self.query_one(StatusBar).set(latency_ms=self.latency_ms)

    def _watch_input(self) -> None:
        """Flag a live device that stopped delivering audio (UI timer, every 0.5 s)."""
        started = self._started
        if started is None or not started.is_device or self._ended is not None or self._last_level_at is None:
            return
        if self._clock() - self._last_level_at > STALL_WARNING_S:
            self.query_one(LevelMeter).set_state("stalled")

    # ---- actions -------------------------------------------------------------------------------

    def action_quit_session(self) -> None:
        """``q``: stop the session; exit once the worker has closed the CSV."""
        if self.session.result is not None or self._ended is not None:
            result = self.session.result or self._ended
            self.exit(return_code=result.exit_status if result is not None else self.exit_status)
            return
        if self._quitting:
            return
        self._quitting = True
        self.query_one(StatusBar).set(state="stopping")
        self.session.request_stop()
        self.set_timer(STOP_TIMEOUT_S, self._force_exit)

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q) goes through the same clean stop."""
        self.action_quit_session()

    def action_help_quit(self) -> None:
        """Textual's ctrl+c hint: quit cleanly instead."""
        self.action_quit_session()

    def _force_exit(self) -> None:
        if self._ended is None:
            logging.getLogger(__name__).error("the input did not stop within %.0f s", STOP_TIMEOUT_S)
            self.exit(return_code=EXIT_ERROR)

    def action_toggle_pause(self) -> None:
        """``space``: pause or resume scoring from the next hop boundary; capture continues."""
        if self._ended is not None:
            self.notify("the session has ended", severity="warning", timeout=3)
            return
        paused = not self.session.paused
        self.session.set_paused(paused)
        self.query_one(StatusBar).set(state="paused" if paused else "live")
        self.query_one(LevelMeter).set_state("paused" if paused else "live")

    def action_marker(self) -> None:
        """``m``: ask the worker for a marker at the current stream time (a CSV row)."""
        if self._ended is not None:
            self.notify("the session has ended; no marker written", severity="warning", timeout=3)
            return
        self.session.request_marker()

    def action_clear_view(self) -> None:
        """``c``: clear the timeline, the bars and the smoothing; the CSV and counters stay."""
        self.query_one(Timeline).rows.clear()
        self.query_one(ProbabilityBars).clear()
        self.query_one(ChannelsPanel).clear()
        self.query_one(NowPanel).show_state("cleared", "waiting for the next hop")
        self.session.request_reset()

    def action_show_keys(self) -> None:
        """``?``: show the keys (again to close)."""
        if isinstance(self.screen, KeysScreen):
            self.screen.dismiss()
        else:
            self.push_screen(KeysScreen(self.palette))


class _UiLogHandler(logging.Handler):
    """Sends log records to the app (warnings and errors become notifications) while it runs,
    and keeps the last :data:`KEPT_LOG_RECORDS` so they can be printed to stderr after the app has
    given the terminal back. Any thread may log."""

    def __init__(self, app: ListenApp) -> None:
        super().__init__()
        self.app = app
        self.records: deque[logging.LogRecord] = deque(maxlen=KEPT_LOG_RECORDS)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.app.is_running:
            self.app.post_message(LogRecorded(record))


def run_listen_app(session: ListenSession, stderr: TextIO | None = None) -> int:
    """Run the terminal UI for a session until the user quits; returns the exit status.

    While the app owns the terminal, log records go to the app (as notifications) instead of
    stderr, and are printed to stderr afterwards, followed by the session's summary line.

    Args:
        session: The session (not yet started).
        stderr: Where the summary and errors are printed after the app exits (default stderr).

    Returns:
        0 when the user quit; 1 when the input failed (or the worker did not stop in time).

    Thread: the main thread (Textual needs it for the terminal and signals).
    """
    err = stderr or sys.stderr
    app = ListenApp(session, handle_signals=True)
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = _UiLogHandler(app)  # the root logger's level (-q, -v) still filters
    root.handlers = [handler]
    try:
        app.run()
    finally:
        root.handlers = saved
        session.request_stop()
        stopped = session.join(STOP_TIMEOUT_S)
        for record in handler.records:
            for h in saved:
                if record.levelno >= h.level:
                    h.handle(record)
    result = session.result
    if not stopped or result is None:
        print("stream-ser: error: the input did not stop in time; the CSV holds every row written so far",
              file=err, flush=True)
        return EXIT_ERROR
    stats = result.stats
    extra = f", CSV {printable(session.csv_sink.path)} ({stats.rows_written} rows)" if session.csv_sink is not None else ""
    if result.error:
        print(f"stream-ser: error: {printable(result.error)}", file=err, flush=True)
    print(
        f"stream-ser: {result.reason} after {stats.stream_s:.1f} s of audio: {stats.predictions} predictions, "
        f"{app.markers} marker{'' if app.markers == 1 else 's'}, {stats.overflows} input overflows, "
        f"{stats.dropped_s:.1f} s dropped{extra}",
        file=err,
        flush=True,
    )
    code = app.return_code
    return result.exit_status if code is None else max(code, result.exit_status)
