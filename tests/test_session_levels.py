"""The listening session with and without its level meter (``SessionOptions.level_interval_s``).

Without level measurements the session's worker asks the capture to wake it only once per hop
(``MicrophoneSource.wake_at``, ``test_capture_wake.py``); the predictions must be the same as
with the meter, on a real clip replayed through the live capture path, as fast as it decodes and
at real-time pace.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANGRY_CLIP

from stream_ser.session import LevelMeasured, ListenSession, PredictionMade, SessionOptions
from stream_ser.audio import load_audio
from stream_ser.sources import MicrophoneSource

HOP = 8000  # 0.5 s at 16 kHz, listen's default hop


@pytest.mark.parametrize("realtime", [False, True])
def test_session_without_levels_makes_the_same_predictions(shipped_model, realtime) -> None:
    def run(level_interval_s):
        events = []
        ListenSession(shipped_model, lambda: MicrophoneSource(replay=ANGRY_CLIP, realtime=realtime),
                      options=SessionOptions(level_interval_s=level_interval_s)).run(events.append)
        return events

    with_levels, without = run(0.1), run(None)
    assert any(isinstance(e, LevelMeasured) for e in with_levels)
    assert not any(isinstance(e, LevelMeasured) for e in without)
    p1 = [e.prediction for e in with_levels if isinstance(e, PredictionMade)]
    p2 = [e.prediction for e in without if isinstance(e, PredictionMade)]
    assert len(p1) == len(p2) == -(-load_audio(ANGRY_CLIP).size // HOP)
    for x, y in zip(p1, p2):
        assert (x.start_s, x.end_s, x.is_speech, x.label) == (y.start_s, y.end_s, y.is_speech, y.label)
        np.testing.assert_array_equal(x.probabilities, y.probabilities)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_level_interval_must_be_positive_or_none(bad) -> None:
    with pytest.raises(ValueError, match="level_interval_s"):
        SessionOptions(level_interval_s=bad)
