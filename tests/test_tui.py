"""The terminal UI of ``stream-ser listen`` (stream_ser.tui) and the session behind it.

UI tests drive the Textual app with ``App.run_test()`` (a headless terminal of 80x24) and feed it
a replayed real clip through the live path (``MicrophoneSource(replay=...)``: a thread calling
the capture callback exactly as PortAudio would). They assert on widgets and on the CSV, never on
the labels the shipped model predicts (the model may be retrained).

The screens that matter (the live view after a replay, two channels, the key help, an input
error) are also compared with SVG snapshots in ``tests/__snapshots__/test_tui/``
(pytest-textual-snapshot's ``snap_compare``). They use the tiny ``onnx.helper`` model, whose
output is fixed, and a clock that stands still, so the latency reads 0 ms on any machine. After
a deliberate change of the screen, ``pytest tests/test_tui.py --snapshot-update`` rewrites them;
review the new SVGs (a browser shows them) before committing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, make_tiny_onnx, read_pty
from fake_device import fake_capture
from rich.console import Console

from stream_ser.audio import AudioSourceError, FileSource, audio_info, load_audio
from stream_ser.engine import Engine, window_ends
from stream_ser.session import (
    MARKER_LABEL,
    HopPaused,
    LevelMeasured,
    PauseApplied,
    PredictionMade,
    SessionEnded,
    SessionStarted,
)
from stream_ser.sinks import BASE_COLUMNS, CsvSink, csv_header
from stream_ser.sources import MicrophoneSource
from stream_ser.summary import format_summary
from stream_ser.tui import ListenApp, ListenSession, SessionOptions
from stream_ser.tui.messages import SessionMessage, message_for
from stream_ser.tui.palette import PAUSE_GLYPH, SILENCE_GLYPH
from stream_ser.tui.screens import KEYS, KeysScreen, MessageScreen
from stream_ser.tui.timeline import PAUSED, SILENCE, SpeechCell, TimelineRows, timeline_geometry
from stream_ser.tui.widgets import LevelMeter, NowPanel, ProbabilityBars, StatusBar

WAIT_S = 60.0  # generous: the test machine may be busy


def n_hops(clip: Path) -> int:
    """Predictions the engine makes for a whole clip (hop 0.5 s, plus the final partial hop)."""
    return len(window_ends(round(audio_info(clip).duration_s * 16000), 8000))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def screen_text(app: ListenApp) -> str:
    """The screen as plain text, one line per terminal row (trailing spaces dropped).

    It renders what Textual's ``App.export_screenshot`` renders (the compositor's full update of
    the screen, over the screens below a modal one) to a recording Rich console, and takes its
    text rather than an SVG.
    """
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


async def wait_for(pilot, condition, timeout_s: float = WAIT_S) -> None:
    """Let the app run until ``condition()`` holds (fails after ``timeout_s``)."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


def replay(clip: Path, realtime: bool = False, channels: str | None = None):
    """``open_source`` for a session: the clip through the live capture path (``channels="all"``:
    each channel of the file on its own)."""
    return lambda: MicrophoneSource(sample_rate_hz=16000, replay=clip, realtime=realtime, channels=channels)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


class EventLog:
    """Collects the session events the app receives (a ``run_test`` message hook)."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, message) -> None:
        event = getattr(message, "event", None)
        if event is not None:
            self.events.append(event)

    def of(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]


# --------------------------------------------------------------------------------------------
# Messages and timeline geometry (no app)


def test_each_session_event_travels_as_its_own_message() -> None:
    """Every event type the session emits has a message class whose handler the app defines;
    anything else is refused."""
    from stream_ser import session

    kinds = session.SessionEvent.__args__
    assert len(kinds) == 8
    for kind in kinds:
        event = object.__new__(kind)  # the message only carries it
        message = message_for(event)
        assert isinstance(message, SessionMessage) and message.event is event
        assert type(message).__name__ == kind.__name__
        assert callable(getattr(ListenApp, message.handler_name, None)), message.handler_name
    with pytest.raises(TypeError, match="not a session event"):
        message_for("hello")


@pytest.mark.parametrize("hop_s, width, per_row", [(0.5, 67, 60), (0.5, 130, 120), (1.0, 67, 60), (0.25, 67, 60), (0.7, 40, 40)])
def test_timeline_rows_start_at_round_times(hop_s, width, per_row) -> None:
    cells, per_tick = timeline_geometry(width, hop_s)
    assert cells == per_row
    assert cells % per_tick == 0 and per_tick >= 1


# --------------------------------------------------------------------------------------------
# The session without UI


def test_session_predictions_equal_the_engine_on_the_same_clip(shipped_model, tmp_path) -> None:
    """The session's boundary bookkeeping does not change what the engine says."""
    sink = CsvSink(tmp_path / "t.csv", shipped_model.labels)
    events: list = []
    session = ListenSession(shipped_model, replay(ANGRY_CLIP), [sink])
    ended = session.run(events.append)
    assert ended.exit_status == 0 and ended.reason == "end of input"
    got = [e.prediction for e in events if isinstance(e, PredictionMade)]
    engine = Engine(shipped_model, source=str(ANGRY_CLIP))
    want = list(engine.run(FileSource(ANGRY_CLIP).chunks()))
    assert [p.end_s for p in got] == pytest.approx([p.end_s for p in want])
    for a, b in zip(got, want):
        assert a.is_speech == b.is_speech
        if a.is_speech:
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    assert [e.hop_index for e in events if isinstance(e, PredictionMade)] == list(range(len(want)))
    assert isinstance(events[0], SessionStarted) and isinstance(events[-1], SessionEnded)
    assert len(read_csv(tmp_path / "t.csv")) == len(want) == ended.stats.rows_written


def test_session_pause_keeps_the_stream_clock(shipped_model) -> None:
    """Paused hops make no predictions; after resuming, windows hold only new audio and their
    times stay on the session's clock."""
    events: list = []
    session = ListenSession(shipped_model, replay(ANGRY_CLIP))
    session.set_paused(True)

    def emit(event) -> None:
        events.append(event)
        if isinstance(event, HopPaused) and event.hop_index == 3:
            session.set_paused(False)

    session.run(emit)
    paused = [e.hop_index for e in events if isinstance(e, HopPaused)]
    preds = [e for e in events if isinstance(e, PredictionMade)]
    assert paused == [1, 2, 3]  # the pause applies from the first hop boundary (0.5 s)
    assert [e.hop_index for e in preds] == [0, *range(4, n_hops(ANGRY_CLIP))]
    resumed_at = 2.0
    for e in preds[1:]:
        assert e.prediction.start_s >= resumed_at - 1e-9
        assert e.prediction.end_s == pytest.approx(min((e.hop_index + 1) * 0.5, audio_info(ANGRY_CLIP).duration_s), abs=1e-3)
    applied = [(e.paused, e.time_s) for e in events if isinstance(e, PauseApplied)]
    assert applied == [(True, 0.5), (False, resumed_at)]


@pytest.mark.parametrize("resume_at_hop", [3, None])
def test_summary_after_a_pause_states_the_session_audio(shipped_model, resume_at_hop) -> None:
    """After a pause the call summary and the session's own line state the same audio time (the
    paused stretch included, and said), also when the session ends while paused."""
    session = ListenSession(shipped_model, replay(ANGRY_CLIP))
    session.set_paused(True)

    def emit(event) -> None:
        if isinstance(event, HopPaused) and event.hop_index == resume_at_hop:
            session.set_paused(False)

    ended = session.run(emit)
    summary = session.summary
    stream_s = ended.stats.stream_s
    assert stream_s == pytest.approx(audio_info(ANGRY_CLIP).duration_s, abs=1e-3)
    # paused from the first hop boundary (0.5 s): to 2.0 s, or to the end of the clip
    paused_s = 1.5 if resume_at_hop else stream_s - 0.5
    assert summary.paused_s == pytest.approx(paused_s, abs=1e-3)
    assert summary.duration_s == pytest.approx(stream_s, abs=1e-9)
    (channel,) = summary.channels
    assert channel.duration_s == pytest.approx(stream_s - paused_s, abs=1e-3)  # the scored hops
    header = format_summary(summary).splitlines()[0]
    seconds = f"{stream_s:04.1f}"  # the session's line: "... after 4.4 s of audio"
    assert f"00:{seconds} of audio, 00:{paused_s:04.1f} of it paused" in header, header
    assert summary.to_dict()["duration_s"] == round(stream_s, 3) and summary.to_dict()["paused_s"] == round(paused_s, 3)


def test_summary_without_a_pause_is_unchanged(shipped_model) -> None:
    session = ListenSession(shipped_model, replay(ANGRY_CLIP))
    ended = session.run(lambda event: None)
    summary = session.summary
    assert summary.paused_s == 0 and summary.duration_s == pytest.approx(ended.stats.stream_s)
    assert summary.channels[0].duration_s == pytest.approx(ended.stats.stream_s, abs=1e-3)
    assert "paused" not in format_summary(summary)


@pytest.mark.parametrize("level_interval_s", [0.1, None])
def test_the_last_partial_hop_of_a_replay_comes_without_delay(tiny_model, level_interval_s) -> None:
    """The final partial window of a real-time replay is scored as soon as the file's last block
    arrives: its latency (from that block's arrival to the prediction) is that of any hop. Once
    the stream has ended, the capture loop must not sit out its idle wait (up to a second) for
    audio that can no longer come."""
    made: list[tuple[float, PredictionMade]] = []

    def emit(event) -> None:
        if isinstance(event, PredictionMade):
            made.append((time.monotonic(), event))

    options = SessionOptions(level_interval_s=level_interval_s)
    ListenSession(tiny_model, replay(TESS_CLIP, realtime=True), options=options).run(emit)
    assert len(made) == n_hops(TESS_CLIP)
    at, last = made[-1]
    assert last.prediction.end_s == pytest.approx(audio_info(TESS_CLIP).duration_s, abs=1e-3)  # partial hop
    assert at - last.captured_monotonic_s < 0.5  # the idle wait alone would be a second


def test_session_duration_limit(shipped_model) -> None:
    events: list = []
    ended = ListenSession(shipped_model, replay(ANGRY_CLIP), options=SessionOptions(duration_s=2.0)).run(events.append)
    assert ended.reason == "duration reached" and ended.exit_status == 0
    assert ended.stats.stream_s == 2.0
    assert [e.prediction.end_s for e in events if isinstance(e, PredictionMade)] == [0.5, 1.0, 1.5, 2.0]


def test_session_level_meter_data_comes_from_the_worker(shipped_model) -> None:
    events: list = []
    ListenSession(shipped_model, replay(ANGRY_CLIP)).run(events.append)
    levels = [e for e in events if isinstance(e, LevelMeasured)]
    assert len(levels) == int(audio_info(ANGRY_CLIP).duration_s / 0.1)  # one per 100 ms of audio
    values = [e.level_dbfs for e in levels]
    assert max(values) - min(values) > 20  # speech and the silence around it
    assert max(values) <= 0 and all(e.peak_dbfs >= e.level_dbfs for e in levels)


class VanishingStream:
    """A fake PortAudio input stream (``MicrophoneSource(stream_factory=...)``): delivers
    ``audio`` in blocks from a thread through the capture callback, then the device vanishes
    (``finished_callback`` without ``stop()``), as a USB microphone pulled out does."""

    def __init__(self, audio: np.ndarray, **kw) -> None:
        self.audio, self.callback, self.finished = audio, kw["callback"], kw["finished_callback"]
        self.blocksize = kw["blocksize"]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(0, self.audio.size, self.blocksize):
            if self.stopped.is_set():
                return
            block = self.audio[i : i + self.blocksize, None]
            self.callback(block, block.shape[0], None, None)
        self.finished()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(5)

    def close(self) -> None:
        pass


def vanishing_mic(seconds: float = 1.5):
    """``open_source``: a 48 kHz "device" that delivers ``seconds`` of a real clip and vanishes."""
    import soxr

    audio = soxr.resample(load_audio(HAPPY_CLIP), 16000, 48000).astype(np.float32)[: int(seconds * 48000)]
    return lambda: fake_capture(lambda **kw: VanishingStream(audio, **kw), "USB headset")


def test_session_reports_a_vanished_device(shipped_model, tmp_path) -> None:
    """A device that vanishes ends the session with an error (exit 1) after everything captured
    was scored, and the CSV is complete."""
    sink = CsvSink(tmp_path / "t.csv", shipped_model.labels)
    events: list = []
    ended = ListenSession(shipped_model, vanishing_mic(1.5), [sink]).run(events.append)
    assert ended.exit_status == 1 and ended.reason == "error" and "USB headset" in ended.error
    preds = [e for e in events if isinstance(e, PredictionMade)]
    assert len(preds) >= 3 and preds[-1].prediction.end_s == pytest.approx(1.5, abs=0.01)
    assert len(read_csv(tmp_path / "t.csv")) == len(preds) == ended.stats.rows_written


# --------------------------------------------------------------------------------------------
# The app


def test_app_scores_a_replayed_clip(shipped_model, tmp_path) -> None:
    """Current label, timeline length, level meter and status counts after a whole clip."""
    out = tmp_path / "t.csv"
    session = ListenSession(shipped_model, replay(ANGRY_CLIP), [CsvSink(out, shipped_model.labels)])
    app = ListenApp(session)
    log = EventLog()
    hops = n_hops(ANGRY_CLIP)

    async def run() -> None:
        async with app.run_test(size=(80, 24), message_hook=log) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.pause(0.2)
            now = app.query_one(NowPanel)
            band = now.band_text
            labels = [" ".join(label.upper()) for label in shipped_model.labels]
            last = log.of(PredictionMade)[-1].prediction
            assert band == (" ".join(last.label.upper()) if last.is_speech else "no speech")
            assert band in labels + ["no speech"]
            rows = app.query_one(TimelineRows)
            assert len(rows.cells) == hops and rows.latest_hop == hops - 1
            preds = [e.prediction for e in log.of(PredictionMade)]
            cells = [rows.cells[hop] for hop in range(hops)]
            assert cells == [SpeechCell(p.label, p.confidence) if p.is_speech else SILENCE for p in preds]
            text = rows.row_text(0)[:hops]
            for cell, shown in zip(cells, text):  # lowercase exactly when the window was not confident
                if isinstance(cell, SpeechCell):
                    letter = rows.palette.letters[cell.label]
                    assert shown == (letter if cell.confidence >= 0.5 else letter.lower())
            codes = set(rows.palette.letters.values())
            assert set(text.upper()) <= codes | {SILENCE_GLYPH}  # every hop filled: a letter or silence
            letters = {rows.palette.letters[p.label] for p in (e.prediction for e in log.of(PredictionMade)) if p.is_speech}
            assert letters and letters <= set(text.upper())
            meter = app.query_one(LevelMeter)
            levels = [e.level_dbfs for e in log.of(LevelMeasured)]
            assert max(levels) - min(levels) > 20 and meter.level_dbfs == levels[-1]
            status = app.query_one(StatusBar)
            assert status.stats.predictions == hops and status.stats.rows_written == hops
            assert status.state == "ended" and app.latency_ms is not None
            bars = app.query_one(ProbabilityBars)
            assert bars.values is not None and sum(bars.values) == pytest.approx(1.0)
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(run())
    assert len(read_csv(out)) == hops


def test_two_minutes_of_timeline_fit_80x24(tiny_model) -> None:
    session = ListenSession(tiny_model, replay(ANGRY_CLIP))
    app = ListenApp(session)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            rows = app.query_one(TimelineRows)
            visible_s = rows.size.height * rows.per_row * session.hop_s
            assert visible_s >= 120
            for hop in range(600):  # five minutes: the view follows the newest row
                rows.add_paused(hop)
            # (wait for the layout rather than a fixed pause: a busy machine refreshes later)
            await wait_for(pilot, lambda: rows.max_scroll_y > 0 and rows.scroll_y == rows.max_scroll_y)
            assert rows.row_count == 600 // rows.per_row
            await pilot.press("up", "up")  # scrolling back stops following the newest row
            await wait_for(pilot, lambda: rows.scroll_y == rows.max_scroll_y - 2)
            assert not rows.following
            for hop in range(600, 720):
                rows.add_paused(hop)
            await wait_for(pilot, lambda: rows.scroll_y == rows.max_scroll_y - 4)
            await pilot.press("end")  # End follows again
            await wait_for(pilot, lambda: rows.following and rows.scroll_y == rows.max_scroll_y)
            await pilot.press("q")

    asyncio.run(run())


def test_pause_key_skips_scoring_but_not_capture(tiny_model, tmp_path) -> None:
    out = tmp_path / "t.csv"
    session = ListenSession(tiny_model, replay(ANGRY_CLIP, realtime=True), [CsvSink(out, tiny_model.labels)])
    app = ListenApp(session)
    log = EventLog()

    async def run() -> None:
        async with app.run_test(size=(80, 24), message_hook=log) as pilot:
            await wait_for(pilot, lambda: len(log.of(PredictionMade)) >= 2)
            await pilot.press("space")
            assert app.query_one(StatusBar).state == "paused" and session.paused
            await wait_for(pilot, lambda: len(log.of(HopPaused)) >= 2)
            await pilot.press("space")
            await wait_for(pilot, lambda: app._ended is not None)
            rows = app.query_one(TimelineRows)
            assert rows.row_text(0).count(PAUSE_GLYPH) == len(log.of(HopPaused))
            assert [hop for hop, cell in rows.cells.items() if cell == PAUSED] == [e.hop_index for e in log.of(HopPaused)]
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(run())
    paused, preds = log.of(HopPaused), log.of(PredictionMade)
    assert len(paused) >= 2
    assert len(paused) + len(preds) == n_hops(ANGRY_CLIP)  # every hop is either scored or paused
    assert len(read_csv(out)) == len(preds)  # no rows while paused
    levels = log.of(LevelMeasured)
    assert len(levels) == int(audio_info(ANGRY_CLIP).duration_s / 0.1)  # the meter never paused


def test_marker_key_writes_a_marker_row(tiny_model, tmp_path) -> None:
    out = tmp_path / "t.csv"
    session = ListenSession(tiny_model, replay(ANGRY_CLIP, realtime=True), [CsvSink(out, tiny_model.labels)])
    app = ListenApp(session)
    log = EventLog()

    async def run() -> None:
        async with app.run_test(size=(80, 24), message_hook=log) as pilot:
            await wait_for(pilot, lambda: len(log.of(PredictionMade)) >= 2)
            await pilot.press("m")
            await wait_for(pilot, lambda: app.markers == 1)
            await wait_for(pilot, lambda: app._ended is not None)
            rows = app.query_one(TimelineRows)
            assert list(rows.markers.values()) == [[1]]
            await pilot.press("q")

    asyncio.run(run())
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == csv_header(tiny_model.labels)  # the schema is unchanged
    assert all(len(row) == len(table[0]) for row in table)
    records = [dict(zip(table[0], row)) for row in table[1:]]
    markers = [r for r in records if r["label"] == MARKER_LABEL]
    assert len(markers) == 1
    m = markers[0]
    assert m["speech"] == "0" and m["start_s"] == m["end_s"] and m["confidence"] == ""
    assert all(m[f"p_{label}"] == "" for label in tiny_model.labels)
    t = float(m["end_s"])
    assert 1.0 <= t <= audio_info(ANGRY_CLIP).duration_s
    ends = [float(r["end_s"]) for r in records]
    assert ends == sorted(ends)  # the marker row sits in stream order
    assert len(records) == n_hops(ANGRY_CLIP) + 1
    assert all(r["label"] == "" for r in records if r["speech"] == "0" and r is not m)


def test_quit_key_leaves_a_complete_csv(tiny_model, tmp_path) -> None:
    out = tmp_path / "t.csv"
    sink = CsvSink(out, tiny_model.labels)
    session = ListenSession(tiny_model, replay(ANGRY_CLIP, realtime=True), [sink])
    app = ListenApp(session)
    log = EventLog()

    async def run() -> None:
        async with app.run_test(size=(80, 24), message_hook=log) as pilot:
            await wait_for(pilot, lambda: len(log.of(PredictionMade)) >= 2)
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running)

    asyncio.run(run())
    assert app.return_code == 0
    assert session.join(10) and session.result.reason == "stopped"
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    assert table[0][: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
    assert len(table) - 1 == session.result.stats.rows_written == len(log.of(PredictionMade))
    assert 2 <= len(table) - 1 < n_hops(ANGRY_CLIP)  # stopped before the end of the clip
    assert all(len(row) == len(table[0]) for row in table)


def test_clear_and_help_keys(tiny_model, tmp_path) -> None:
    out = tmp_path / "t.csv"
    session = ListenSession(tiny_model, replay(ANGRY_CLIP), [CsvSink(out, tiny_model.labels)])
    app = ListenApp(session)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.press("c")
            rows = app.query_one(TimelineRows)
            assert rows.cells == {} and app.query_one(ProbabilityBars).values is None
            assert app.query_one(StatusBar).stats.predictions == n_hops(ANGRY_CLIP)  # counters stay
            await pilot.press("question_mark")
            assert isinstance(app.screen, KeysScreen)
            await pilot.pause(0.2)
            assert "marker" in screen_text(app)
            await pilot.press("question_mark")
            assert not isinstance(app.screen, KeysScreen)
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(run())
    assert len(read_csv(out)) == n_hops(ANGRY_CLIP)  # clearing the view leaves the CSV alone


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_help_key_shows_every_key(shipped_model, size) -> None:
    """``?`` opens a box that shows each key with what it does, the emotion letters and how to
    close it, in full, at 80x24 and at 100x30."""
    session = ListenSession(shipped_model, replay(ANGRY_CLIP))
    app = ListenApp(session)

    async def run() -> str:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen))
            await pilot.pause(0.2)
            text = screen_text(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, KeysScreen))
            await pilot.press("q")
        return text

    text = asyncio.run(run())
    lines = text.splitlines()
    for key, what in KEYS:
        assert any(re.search(rf"│\s+{re.escape(key)}  {re.escape(what)}\s+│", line) for line in lines), (key, text)
    for label in shipped_model.labels:
        assert re.search(rf" {app.palette.letters[label]}  {label} ", text), (label, text)
    assert "Esc or ? closes this help." in text
    assert "╭─ keys " in text


@pytest.mark.parametrize("fault", ["missing", "vanished"])
def test_device_error_is_shown_and_exits_1(tiny_model, tmp_path, fault) -> None:
    """A device that cannot be opened, or vanishes while listening: the error is shown in the
    app, q ends it with status 1, and the CSV is complete."""
    out = tmp_path / "t.csv"
    sink = CsvSink(out, tiny_model.labels)

    def no_device():
        raise AudioSourceError("no input device matches 'USB' (run `stream-ser devices`)")

    session = ListenSession(tiny_model, no_device if fault == "missing" else vanishing_mic(1.5), [sink])
    app = ListenApp(session)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MessageScreen))
            await pilot.pause(0.2)
            shown = screen_text(app)
            assert ("no input device matches 'USB'" if fault == "missing" else "USB headset") in shown
            assert "CSV" in shown and app.query_one(StatusBar).state == "error"
            await pilot.press("q")
        assert app.return_code == 1

    asyncio.run(run())
    table = out.read_text().splitlines()
    assert table[0] == ",".join(csv_header(tiny_model.labels))
    assert len(table) - 1 == session.result.stats.rows_written == (0 if fault == "missing" else 3)


# --------------------------------------------------------------------------------------------
# Snapshots of the screens that matter (tests/__snapshots__/test_tui/*.svg)


def still_clock() -> float:
    """The app's clock in the snapshots: it stands still, so every latency shows 0 ms (the one
    value on the screen that depends on the machine)."""
    return 0.0


async def until_ended(pilot) -> None:
    """``run_before`` of a snapshot: let the session run to its end."""
    await wait_for(pilot, lambda: pilot.app._ended is not None)


def test_snapshot_after_a_replay(tiny_model, tmp_path, monkeypatch, snap_compare) -> None:
    """The live view at 80x24 once a replayed clip has ended: header, meter, "now" panel, bars,
    timeline, status bar with the CSV, keys."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(ANGRY_CLIP, "clip.flac")
    session = ListenSession(tiny_model, replay(Path("clip.flac")), [CsvSink("timeline.csv", tiny_model.labels)])
    assert snap_compare(ListenApp(session, clock=still_clock), terminal_size=(80, 24), run_before=until_ended)


def test_snapshot_of_the_key_help(tiny_model, tmp_path, monkeypatch, snap_compare) -> None:
    """``?`` over the live view: every key, the emotion letters, how to close it."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(ANGRY_CLIP, "clip.flac")
    app = ListenApp(ListenSession(tiny_model, replay(Path("clip.flac"))), clock=still_clock)
    assert snap_compare(app, press=["question_mark"], terminal_size=(80, 24), run_before=until_ended)


def test_snapshot_of_two_channels(tiny_model, tmp_path, monkeypatch, snap_compare) -> None:
    """A stereo call (the right channel silent) with named channels: the channels panel instead of
    the "now" panel and the bars, and one timeline line per channel."""
    monkeypatch.chdir(tmp_path)
    left = load_audio(ANGRY_CLIP)
    sf.write("call.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_16")
    session = ListenSession(tiny_model, replay(Path("call.wav"), channels="all"),
                            options=SessionOptions(channel_names=("agent", "customer")))
    assert snap_compare(ListenApp(session, clock=still_clock), terminal_size=(80, 24), run_before=until_ended)


def test_snapshot_of_an_input_error(tiny_model, tmp_path, monkeypatch, snap_compare) -> None:
    """A device that vanishes after 1.5 s: the error box over the view, with the rows written."""
    monkeypatch.chdir(tmp_path)
    session = ListenSession(tiny_model, vanishing_mic(1.5), [CsvSink("timeline.csv", tiny_model.labels)])
    app = ListenApp(session, clock=still_clock)

    async def until_the_error_shows(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, MessageScreen))

    assert snap_compare(app, terminal_size=(80, 24), run_before=until_the_error_shows)


# --------------------------------------------------------------------------------------------
# The command line


def test_listen_without_a_terminal_prints_lines(tmp_path, capsys) -> None:
    from stream_ser.cli import _listen_wants_tui, build_parser, main

    assert main(["listen", "--input", str(HAPPY_CLIP), "--fast"]) == 0  # pytest's stdout is no tty
    assert len(capsys.readouterr().out.strip().splitlines()) == n_hops(HAPPY_CLIP)
    args = build_parser().parse_args(["listen", "--no-tui"])
    assert not _listen_wants_tui(args)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGINT"])
def test_listen_opens_the_ui_on_a_terminal(tmp_path, how) -> None:
    """``stream-ser listen`` in a pseudo-terminal: the UI runs, q, SIGTERM or SIGINT ends it with status
    0, the CSV is complete and a summary line follows on the terminal."""
    import pty

    out = tmp_path / "t.csv"
    cmd = [sys.executable, "-m", "stream_ser", "listen", "--input", str(HAPPY_CLIP), "--fast", "--csv", str(out)]
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(Path(__file__).parents[1])
        os.execvpe(cmd[0], cmd, env)
    output = b""
    hops = n_hops(HAPPY_CLIP)
    t0 = time.monotonic()
    sent = False
    try:
        while True:
            data = read_pty(fd)
            if data is None:
                break
            output += data
            done = out.exists() and len(out.read_text().splitlines()) == hops + 1
            if done and not sent and b"\x1b[?1049h" in output:  # the app owns the screen
                time.sleep(0.5)
                if how == "q":
                    os.write(fd, b"q")
                else:
                    os.kill(pid, getattr(signal, how))
                sent = True
            assert time.monotonic() - t0 < 120, output[-2000:]
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output[-2000:]
    text = output.decode("utf-8", errors="replace")
    assert "stream-ser: end of input after" in text and f"{hops} predictions" in text
    assert len(read_csv(out)) == hops
