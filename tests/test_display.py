"""How emotions and times are shown (stream_ser.display): one colour and letter per label for the
terminal UI and the plot, and the three time formats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_ser.display import (
    EMOTION_COLOURS,
    EXTRA_COLOURS,
    assign_letters,
    emotion_colours,
    format_clock,
    format_mmss,
    format_time,
)
from stream_ser.tui.palette import EmotionPalette

SHIPPED = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
#: Up to a week of stream time, in seconds.
times = st.floats(min_value=0.0, max_value=7 * 86400.0, allow_nan=False)


def seconds_of(text: str) -> float:
    """``[h:]mm:ss[.t]`` back to seconds; each field below 60 except the leading one."""
    fields = [float(f) for f in text.split(":")]
    assert all(f < 60 for f in fields[1:]), text
    return sum(f * 60 ** i for i, f in enumerate(reversed(fields)))


def test_letters_are_unique_and_the_shipped_ones_read_nhsafdu() -> None:
    assert "".join(assign_letters(SHIPPED).values()) == "NHSAFDU"
    odd = ("a", "aa", "a-b", "Ä", "calm", "calmness")
    letters = assign_letters(odd)
    assert len(set(letters.values())) == len(odd)
    assert all(len(c) == 1 and c == c.upper() for c in letters.values())


def test_colours_are_distinct_and_the_same_for_the_ui_and_the_plot() -> None:
    colours = emotion_colours(SHIPPED)
    assert colours == {label: EMOTION_COLOURS[label] for label in SHIPPED}
    assert len(set(colours.values())) == len(SHIPPED)
    assert EmotionPalette(SHIPPED).colours == colours  # the UI's palette
    assert emotion_colours(("Angry",)) == {"Angry": EMOTION_COLOURS["angry"]}  # any case
    unknown = tuple(f"label{i}" for i in range(len(EXTRA_COLOURS)))
    mixed = emotion_colours(unknown + SHIPPED)
    assert len(set(mixed.values())) == len(mixed)  # unknown labels get colours no known one has
    assert emotion_colours(unknown + SHIPPED) == mixed  # same labels, same colours


@given(times)
def test_format_time_reads_back_to_a_tenth(seconds: float) -> None:
    text = format_time(seconds)
    assert abs(seconds_of(text) - seconds) <= 0.05 + 1e-6 * seconds, text
    assert text.count(":") == (2 if seconds_of(text) >= 3600 else 1)


@pytest.mark.parametrize("seconds,text", [(0, "00:00.0"), (3.5, "00:03.5"), (-2, "00:00.0"), (59.97, "01:00.0"),
                                          (3599.96, "1:00:00.0"), (3725.25, "1:02:05.2")])
def test_format_time(seconds, text) -> None:
    assert format_time(seconds) == text


@given(times)
def test_format_mmss_truncates_to_whole_seconds(seconds: float) -> None:
    minutes, secs = format_mmss(seconds).split(":")
    assert int(minutes) * 60 + int(secs) == math.floor(seconds + 1e-6) and int(secs) < 60
    assert len(minutes) >= 2 and len(secs) == 2


@pytest.mark.parametrize(
    "seconds,text", [(0, "0:00"), (0.5, "0:00.5"), (5, "0:05"), (65, "1:05"), (600, "10:00"), (3661, "1:01:01"), (-1, "")]
)
def test_format_clock(seconds, text) -> None:
    assert format_clock(seconds) == text


@given(times)
def test_format_clock_reads_back_to_a_tenth(seconds: float) -> None:
    text = format_clock(seconds)
    assert abs(seconds_of(text) - seconds) <= 0.05 + 1e-6 * seconds, text
