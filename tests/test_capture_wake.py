"""Capture: waking the consumer per hop instead of per capture block (``CaptureSource.wake_at``).

The capture callback sets the consumer's event only once the target is within reach, so a
``listen`` worker without a level meter wakes about once per hop. What must not change: the audio
(every sample, bit for bit). The devices are the fake PortAudio streams of ``test_faults.py``
delivering a real clip at 48 kHz. That the session's predictions do not change either is in
``test_session_levels.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from fake_device import factory, fake_capture
from test_faults import RATE, clip_48k

from stream_ser.audio import DEFAULT_BLOCK_S, AudioSourceError, CaptureSource

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
