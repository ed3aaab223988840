"""One stream clock: an engine that resumes a stream at a given sample, and the hop the feature
recipe accepts.

A listening session paused and resumed starts a fresh engine at the resume's hop boundary; that
engine must score exactly what a fresh engine scores on the same audio (its windows hold only
audio from the resume on), with every time on the stream clock. Properties, not labels: the tiny
``onnx.helper`` model and the shipped one both serve.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, load_fixture_16k, make_tiny_onnx

from stream_ser.engine import ChannelEngines, Engine, window_ends
from stream_ser.features import FeatureConfig
from stream_ser.session import HopPaused, ListenSession, PredictionMade, SessionOptions
from stream_ser.sources import MicrophoneSource


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


@pytest.mark.parametrize("start", [8000, 24000, 123 * 8000])
@pytest.mark.parametrize("gate", ["vad", "level"])
def test_an_engine_resumed_at_a_sample_scores_as_a_fresh_one_on_the_stream_clock(shipped_model, start, gate) -> None:
    audio = load_fixture_16k(ANGRY_CLIP)
    chunks = [audio[i : i + 1000] for i in range(0, audio.size, 1000)]
    fresh = list(Engine(shipped_model, gate=gate).run(chunks))
    resumed = list(Engine(shipped_model, gate=gate, start_sample=start).run(chunks))
    assert len(resumed) == len(fresh) == len(window_ends(audio.size, 8000))
    for a, b in zip(resumed, fresh):
        assert round(a.end_s * 16000) == round(b.end_s * 16000) + start
        assert round(a.start_s * 16000) == round(b.start_s * 16000) + start  # never before the resume
        assert (a.is_speech, a.label, a.probabilities) == (b.is_speech, b.label, b.probabilities)
    assert resumed[0].start_s == start / 16000 and resumed[-1].end_s == (start + audio.size) / 16000


def test_channel_engines_resume_every_channel_at_the_same_sample(tiny_model) -> None:
    a, b = load_fixture_16k(ANGRY_CLIP), load_fixture_16k(HAPPY_CLIP)
    n = min(a.size, b.size)
    frames = np.stack([a[:n], b[:n]], axis=1)
    engines = ChannelEngines(tiny_model, channels=(1, 2), start_sample=40000)
    preds = list(engines.run([frames]))
    assert engines.samples_seen == 40000 + n
    ends = [round(p.end_s * 16000) for p in preds]
    assert ends == [e + 40000 for e in window_ends(n, 8000) for _ in (1, 2)]
    assert [p.channel for p in preds[:2]] == [1, 2]


def test_a_negative_start_sample_is_refused(tiny_model) -> None:
    with pytest.raises(ValueError, match="start_sample must be >= 0"):
        Engine(tiny_model, start_sample=-1)


@pytest.mark.parametrize("hop_s, samples", [(None, 8000), (0.5, 8000), (1 / 16000, 1), (3.0, 48000), (0.25, 4000),
                                            (0.33333, 5333)])
def test_the_feature_recipe_checks_a_hop(hop_s, samples) -> None:
    assert FeatureConfig().check_hop(hop_s) == samples


@pytest.mark.parametrize("hop_s", [0.0, -0.5, 0.4 / 16000, 3.0001, math.nan, math.inf, -math.inf])
def test_the_feature_recipe_refuses_a_hop(tiny_model, hop_s) -> None:
    want = r"hop must be between 1 sample and the window \(3.0 s\)"
    with pytest.raises(ValueError, match=want):
        FeatureConfig().check_hop(hop_s)
    with pytest.raises(ValueError, match=want):  # the engine and a session refuse it the same way
        Engine(tiny_model, hop_s=hop_s)
    with pytest.raises(ValueError, match=want):
        ListenSession(tiny_model, lambda: None, options=SessionOptions(hop_s=hop_s))


def test_a_resumed_session_equals_an_engine_resumed_at_its_boundary(shipped_model) -> None:
    """Pause at 1.0 s, resume at 2.5 s: the predictions after the resume are those of an engine
    started at 2.5 s on the audio from 2.5 s on, times included (the model's own outputs: the
    adaptation to the voice, which a session carries across a pause, is off)."""
    session = ListenSession(shipped_model, lambda: MicrophoneSource(replay=ANGRY_CLIP, realtime=False),
                            options=SessionOptions(hop_s=0.5, level_interval_s=None, adapt="none"))
    events: list = []

    def emit(event) -> None:
        events.append(event)
        if isinstance(event, PredictionMade) and event.hop_index == 1:
            session.set_paused(True)
        if isinstance(event, HopPaused) and event.hop_index == 4:
            session.set_paused(False)

    session.run(emit)
    after = [e.prediction for e in events if isinstance(e, PredictionMade) and e.hop_index >= 5]
    audio = load_fixture_16k(ANGRY_CLIP)
    want = list(Engine(shipped_model, source=str(ANGRY_CLIP), adapt="none", start_sample=40000).run([audio[40000:]]))
    assert after == want and after[0].start_s == 2.5
