"""Five minutes of real speech through the live path (the 1-hour run is benchmarks/soak.py)."""

from __future__ import annotations

from benchmarks.soak import make_recording, run_soak


def test_five_minute_soak(tmp_path, shipped_model) -> None:
    rec = tmp_path / "soak.wav"
    audio_s = make_recording(rec, minutes=5)
    r = run_soak(rec, tmp_path / "soak.csv")
    print(r, f"growth {r.rss_growth_mb:.1f} MB")
    assert r.audio_s == audio_s
    assert r.predictions == r.expected_predictions == r.csv_rows == 600  # 300 s / 0.5 s hop
    assert r.speech_predictions > 0.8 * r.predictions  # mostly speech: 1 s pauses between clips
    assert r.overflows == 0 and r.dropped_frames == 0
    assert r.rss_growth_mb <= 5.0
