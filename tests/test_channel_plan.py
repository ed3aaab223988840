"""Which channels are scored and what they are called: ``--channels`` parsed and resolved against
a source, the channels selected from native frames, and the :class:`~stream_ser.channels.ChannelPlan`
built from them (its one check: as many names as channels)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ser.channels import ChannelPlan, ChannelPlanError
from stream_ser.sources import AudioSourceError, parse_channel_selection, resolve_channels, select_channels


def test_channel_selection_parsing() -> None:
    assert parse_channel_selection("all") == "all" and parse_channel_selection(" ALL ") == "all"
    assert parse_channel_selection("1,2") == (1, 2) and parse_channel_selection("2") == (2,)
    for bad in ("", "0", "1,1", "a,b", "1,,2", "-1", ",".join(map(str, range(1, 10)))):
        with pytest.raises(ValueError):
            parse_channel_selection(bad)
    assert resolve_channels(None, 6, "x") == (0,)
    assert resolve_channels("all", 2, "x") == (1, 2)
    assert resolve_channels("all", 12, "x") == tuple(range(1, 9))  # at most 8
    assert resolve_channels((2,), 2, "x") == (2,)
    with pytest.raises(AudioSourceError, match="call.wav: has 2 channels; channel 3 does not exist"):
        resolve_channels((1, 3), 2, "call.wav")
    frames = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    np.testing.assert_array_equal(select_channels(frames, (0,)), [[2], [5]])
    np.testing.assert_array_equal(select_channels(frames, (3, 1)), [[3, 1], [6, 4]])


def test_channel_plan_names_and_descriptions() -> None:
    """A plan has a name and a description per channel: None and ``channel N`` (the source's name
    for the down-mix) unless given; the CSV's channel ids are the names, else the numbers."""
    plan = ChannelPlan.of((1, 2), ("agent", "customer"), source="call.wav")
    assert plan.numbers == (1, 2) and plan.names == ("agent", "customer") and len(plan) == 2
    assert plan.descriptions == ("channel 1", "channel 2") and plan.ids == ("agent", "customer")
    assert plan.keys == ((1, "agent"), (2, "customer"))
    mono = ChannelPlan.of((0,), source="clip.flac")
    assert mono.names == (None,) and mono.descriptions == ("clip.flac",) and mono.ids == (0,)
    devices = ChannelPlan.of((1, 2), None, ("mic:USB", "mic:Monitor of Speakers"))
    assert devices.ids == (1, 2) and devices.descriptions[1] == "mic:Monitor of Speakers"


def test_channel_plan_refuses_names_that_do_not_fit() -> None:
    """The one check of names against channels: the message names the source, the names given
    and the channels (the command line reports it per file, the API raises it)."""
    with pytest.raises(ChannelPlanError, match=r"^call.wav: 1 channel name\(s\) given \(agent\) for 2 channel\(s\)$"):
        ChannelPlan.of((1, 2), ("agent",), source="call.wav")
    with pytest.raises(ChannelPlanError) as exc:
        ChannelPlan.of((0,), ("a", "b"))
    assert exc.value.names == ("a", "b") and exc.value.count == 1 and isinstance(exc.value, ValueError)
    with pytest.raises(ChannelPlanError):  # constructed directly: checked the same way
        ChannelPlan((1, 2), ("a",), ("x", "y"))
    for numbers in ((), (1, 1), (0, 1), (-1,)):
        with pytest.raises(ValueError):
            ChannelPlan.of(numbers)
    with pytest.raises(ValueError, match="description"):
        ChannelPlan.of((1, 2), None, ("only one",))
