"""Channels scored each on its own (:class:`~stream_ser.engine.ChannelEngines`, through
``analyse_channels``): a channel of a stereo file is scored exactly as the same audio alone
(identical probabilities), whatever the shipped model says; labels are never asserted."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx, padded

import stream_ser
from stream_ser.engine import ChannelEngines, Engine


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


def test_stereo_channels_follow_each_side(stereo_call, shipped_model) -> None:
    """Left and right are scored on their own: each channel's windows and clip result are those
    of the mono analysis of that side (identical probabilities), and the two sides differ."""
    agent, customer = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"], model=shipped_model)
    samples, rate = sf.read(stereo_call, dtype="float32")
    for side, result in ((0, agent), (1, customer)):
        mono = stream_ser.analyse(samples[:, side], rate, model=shipped_model)
        assert [p.end_s for p in result.timeline] == [p.end_s for p in mono.timeline]
        assert [p.is_speech for p in result.timeline] == [p.is_speech for p in mono.timeline]
        for a, b in zip(result.timeline, mono.timeline):
            if a.is_speech:
                np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_allclose(result.clip.mean_probabilities, mono.clip.mean_probabilities, atol=1e-6)
        assert result.clip.label == mono.clip.label
        assert {p.channel for p in result.timeline} == {side + 1}
    assert {p.channel_name for p in agent.timeline} == {"agent"} and agent.clip.channel_id == "agent"
    # different clips on the two sides give different results (whatever the labels are)
    assert np.max(np.abs(np.subtract(agent.clip.mean_probabilities, customer.clip.mean_probabilities))) > 0.01


def test_silent_channel_yields_no_labels(tmp_path, shipped_model) -> None:
    """The speech gate is per channel: loud speech on one channel never labels a silent one."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path / "three.wav"
    sf.write(path, np.stack([left, right, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    results = stream_ser.analyse_channels(path, model=shipped_model)
    assert [r.clip.channel for r in results] == [1, 2, 3]
    assert results[0].clip.n_speech_windows > 0 and results[1].clip.n_speech_windows > 0
    silent = results[2]
    assert silent.clip.label is None and silent.clip.n_speech_windows == 0
    assert all(not p.is_speech and p.label is None for p in silent.timeline)


def test_channel_engines_equal_single_engines(tiny_model) -> None:
    """ChannelEngines is one Engine per channel, predictions interleaved per hop in channel order."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    frames = np.stack([left, right], axis=1)
    engines = ChannelEngines(tiny_model, source="s", channels=(1, 2), channel_names=("a", None))
    got = []
    for start in range(0, frames.shape[0], 1234):
        got += engines.push(frames[start : start + 1234])
    got += engines.flush()
    assert [p.channel_id for p in got[:4]] == ["a", 2, "a", 2]
    for col, number in ((left, 1), (right, 2)):
        want = list(Engine(tiny_model, source="s", channel=number).run([col]))
        mine = [p for p in got if p.channel == number]
        assert [p.end_s for p in mine] == [p.end_s for p in want]
        for a, b in zip(mine, want):
            assert a.probabilities == b.probabilities
    with pytest.raises(ValueError, match="shape"):
        engines.push(np.zeros((10, 3), np.float32))
