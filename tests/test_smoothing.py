"""The display smoothing of the terminal UI's bars (stream_ser.smoothing): an exponential moving
average over speech windows with a half-life in seconds."""

from __future__ import annotations

import pytest

from stream_ser.smoothing import ProbabilitySmoother, smoothing_weight


def test_smoothing_weight_follows_the_half_life() -> None:
    assert smoothing_weight(0.5, 0.5) == pytest.approx(0.5)
    assert smoothing_weight(0.5, 0) == 1.0
    # after one half-life of updates the first window's weight has halved
    alpha = smoothing_weight(0.5, 1.5)
    assert (1 - alpha) ** 3 == pytest.approx(0.5)
    with pytest.raises(ValueError):
        smoothing_weight(0.0, 1.0)


def test_smoother_skips_silence_and_stays_a_distribution() -> None:
    s = ProbabilitySmoother(3, hop_s=0.5, half_life_s=1.0)
    assert s.update(None) is None
    first = s.update([0.7, 0.2, 0.1])
    assert first == pytest.approx((0.7, 0.2, 0.1))  # the first speech window initialises
    assert s.update(None) == first  # silence keeps the state
    second = s.update([0.0, 0.0, 1.0])
    assert sum(second) == pytest.approx(1.0)
    assert second[2] == pytest.approx(0.1 + s.alpha * 0.9)
    s.reset()
    assert s.value is None
    with pytest.raises(ValueError):
        s.update([0.5, 0.5])
