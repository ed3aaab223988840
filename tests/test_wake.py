"""Waking the consumer per hop instead of per capture block (``CaptureSource.wake_at``).

The capture callback sets the consumer's event only once the target is within reach, so a
``listen`` worker without a level meter wakes about once per hop. What must not change: the audio
(every sample, bit for bit) and the predictions. The devices are the fake PortAudio streams of
``test_faults.py`` delivering a real clip at 48 kHz.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from conftest import ANGRY_CLIP
from fake_device import factory, fake_capture
from test_faults import RATE, clip_48k

from stream_ser.session import LevelMeasured, ListenSession, PredictionMade, SessionOptions
from stream_ser.audio import DEFAULT_BLOCK_S, AudioSourceError, CaptureSource, load_audio
from stream_ser.sources import MicrophoneSource

HOP = 8000  # 0.5 s at 16 kHz, listen's default hop


def drain(source: CaptureSource, hop: int | None) -> list[np.ndarray]:
    """All chunks of ``source`` (a fake device that vanishes after its audio); with ``hop``, ask
    to be woken at the next hop boundary after each."""
    chunks, total = [], 0
    source.start()
    try:
        with pytest.raises(AudioSourceError, match="ended unexpectedly"):
            for chunk in source.frames():
                chunks.append(chunk)
                total += chunk.shape[0]
                if hop is not None:
                    source.wake_at((total // hop + 1) * hop)
    finally:
        source.close()
    return chunks


def test_wake_at_hop_boundaries_yields_the_same_audio_in_a_few_chunks() -> None:
    audio = clip_48k()  # ~3.5 s; one 40 ms block every 5 ms
    every_block = drain(fake_capture(factory(audio=audio, then="finish", pace_s=0.005)), None)
    per_hop = drain(fake_capture(factory(audio=audio, then="finish", pace_s=0.005)), HOP)
    a, b = np.concatenate(every_block)[:, 0], np.concatenate(per_hop)[:, 0]
    assert np.array_equal(a, b)
    np.testing.assert_array_equal(b, soxr.resample(audio, RATE, 16000, quality="LQ").astype(np.float32))
    hops = -(-b.size // HOP)
    blocks = -(-audio.size // int(DEFAULT_BLOCK_S * RATE))
    # a hop boundary may take a second wake-up (the resampler holds back up to ~20 ms), and the
    # stream's end one more; every block would be ~90 chunks
    assert len(per_hop) <= 2 * hops + 2 < blocks // 3
    # the chunks end on or just past a boundary (within one block of output), or short of one by at
    # most the resampler's delay (a retry); only the last audio and the resampler's flushed tail
    # end elsewhere
    ends = np.cumsum([c.shape[0] for c in per_hop])
    for end in ends[:-2]:
        past = end % HOP
        assert past <= DEFAULT_BLOCK_S * 16000 or HOP - past <= 0.025 * 16000, end


def test_a_target_beyond_the_ring_buffer_does_not_lose_audio() -> None:
    """A hop longer than the capture buffer: the wake-up comes early enough that nothing is overwritten."""
    audio = clip_48k()
    source = fake_capture(factory(audio=audio, then="finish", pace_s=0.005), capacity_s=2.0)
    chunks = drain(source, 10 * 16000)  # a 10 s hop against a 2 s buffer (woken after 0.5 s of audio)
    assert source.dropped_frames == 0
    assert sum(c.shape[0] for c in chunks) == pytest.approx(audio.size / 3, abs=2)


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
