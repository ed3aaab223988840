"""The call summary (:mod:`stream_ser.summary`) against a hand-computed timeline."""

from __future__ import annotations

import pytest

from stream_ser.summary import CallSummaryBuilder, format_summary
from stream_ser.types import Prediction


LABELS = ("neutral", "happy", "sad", "angry")


def timeline(labels: str, ends: list[float], channel: int = 1, name: str | None = "agent") -> list[Prediction]:
    """Predictions from a string of label letters (``-`` no speech) and window ends."""
    out = []
    for letter, end in zip(labels, ends):
        if letter == "-":
            out.append(Prediction("call", channel, max(0.0, end - 3), end, False, None, None, None, LABELS, name))
        else:
            label = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"}[letter]
            probs = tuple(0.7 if lab == label else 0.1 for lab in LABELS)
            out.append(Prediction("call", channel, max(0.0, end - 3), end, True, label, 0.7, probs, LABELS, name))
    return out


def test_summary_figures_match_a_hand_computed_timeline() -> None:
    ends = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.2]  # the last hop is a partial one
    agent = timeline("-NAAA-AHHNH", ends)
    customer = timeline("-" * len(ends), ends, 2, "customer")
    builder = CallSummaryBuilder("call", LABELS, 0.5, (1, 2), ("agent", "customer"), ("mic:A", "mic:B"))
    for a, c in zip(agent, customer):
        builder.add(a)
        builder.add(c)
    s = builder.result()
    a, c = s.channels
    # By hand: hops (0,0.5] (0.5,1] ... (4.5,5.0] (5.0,5.2]; speech in all but the 1st and 6th.
    assert a.speech_s == pytest.approx(4.2) and a.duration_s == pytest.approx(5.2)
    assert a.n_windows == 11 and a.n_speech_windows == 9
    assert dict(zip(LABELS, a.emotion_s)) == pytest.approx({"neutral": 1.0, "happy": 1.2, "sad": 0.0, "angry": 2.0})
    assert a.emotion_share() == pytest.approx({"neutral": 1.0 / 4.2, "happy": 1.2 / 4.2, "sad": 0.0, "angry": 2.0 / 4.2})
    # angry (1.0, 2.5] then, after a hop without speech, (3.0, 3.5]; happy (3.5, 4.5], later (5.0, 5.2]
    assert [(x.label, x.start_s, x.duration_s) for x in a.longest] == [
        ("happy", pytest.approx(3.5), pytest.approx(1.0)),
        ("angry", pytest.approx(1.0), pytest.approx(1.5)),
    ]
    assert a.changes == 4  # N->A, A->H, H->N, N->H; A (silence) A is no change
    assert c.speech_s == 0 and c.n_speech_windows == 0 and c.emotion_share() is None
    assert c.longest == () and c.changes == 0
    d = s.to_dict()
    assert d["duration_s"] == 5.2 and [x["channel"] for x in d["channels"]] == ["agent", "customer"]
    assert d["channels"][0]["longest"] == {"happy": {"start_s": 3.5, "duration_s": 1.0},
                                           "angry": {"start_s": 1.0, "duration_s": 1.5}}
    assert d["channels"][0]["emotion_share"]["angry"] == round(2.0 / 4.2, 4)
    text = format_summary(s)
    assert "agent (mic:A): speech 4.2 s of 5.2 s, 4 emotion changes" in text
    assert "angry 48%, happy 29%, neutral 24%" in text
    assert "longest: angry 1.5 s at 00:01.0, happy 1.0 s at 00:03.5" in text
    assert "customer (mic:B): no speech (11 windows)" in text


def test_summary_runs_break_at_pauses() -> None:
    """Hops skipped while paused leave a gap: a run of one emotion does not span it."""
    preds = timeline("AA", [0.5, 1.0]) + timeline("AAA", [2.5, 3.0, 3.5])
    s = CallSummaryBuilder("call", LABELS, 0.5, (1,), ("agent",)).add_all(preds).result()
    (a,) = s.channels
    assert a.speech_s == pytest.approx(2.5) and a.changes == 0
    assert [(x.start_s, x.duration_s) for x in a.longest] == [(pytest.approx(2.0), pytest.approx(1.5))]
