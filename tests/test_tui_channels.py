"""The terminal UI with several channels: a line per channel, a timeline line per channel."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx, n_hops, padded

from stream_ser.sources import MicrophoneSource


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


def test_tui_shows_one_row_per_channel(tiny_model, tmp_path) -> None:
    """Two channels (the right one silent): a line per channel with its name and current emotion,
    and in the timeline one line per channel in each time row; the silent channel gets no letter."""
    from test_tui import screen_text, wait_for

    from stream_ser.session import ListenSession, SessionOptions
    from stream_ser.tui import ListenApp
    from stream_ser.tui.palette import SILENCE_GLYPH
    from stream_ser.tui.widgets import ChannelsPanel, TimelineRows

    left, _ = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path / "call.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_16")
    session = ListenSession(tiny_model, lambda: MicrophoneSource(replay=path, realtime=False, channels="all"),
                            options=SessionOptions(channel_names=("agent", "customer")))
    app = ListenApp(session)
    hops = n_hops(path)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.pause(0.3)
            panel = app.query_one(ChannelsPanel)
            assert panel.display and not app.query_one("#middle").display
            agent, customer = panel.line_text(0), panel.line_text(1)
            assert agent.startswith("agent") and any(lab.upper() in agent for lab in tiny_model.labels)
            assert customer.startswith("customer") and "no speech" in customer
            rows = app.query_one(TimelineRows)
            assert rows.lines_per_row == 2
            assert len(rows.channel_cells[0]) == len(rows.channel_cells[1]) == hops
            assert set(rows.row_text(0, 1)[:hops]) == {SILENCE_GLYPH}
            assert set(rows.row_text(0, 0)[:hops].upper()) & set(rows.palette.letters.values())
            text = screen_text(app)
            assert "00:00 agent" in text and "\n│        customer " in text and "2 channels" in text
            assert max(len(line) for line in text.splitlines()) <= 80
            await pilot.press("c")
            assert rows.channel_cells[1] == {} and panel.latest == [None, None]
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(run())
