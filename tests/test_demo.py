"""The demo recording shipped in the package (``stream_ser/demo/``) and ``listen --demo``."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_ser.cli import main
from stream_ser.demo import demo_recording
from stream_ser.demo.make_demo import CLIPS, EMOTION_CODES, PAUSE_S, SAMPLE_RATE_HZ, build
from stream_ser.engine import window_ends

DEMO_DIR = Path(__file__).resolve().parents[1] / "stream_ser" / "demo"
ATTRIBUTION = DEMO_DIR / "ATTRIBUTION.md"
#: Size budget of the demo file (bytes); tests/fixtures and the demo together stay under 2 MB.
MAX_DEMO_BYTES = 600_000


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_demo_is_a_short_compressed_recording() -> None:
    path = demo_recording()
    assert path == DEMO_DIR / "demo.flac"
    info = sf.info(path)
    assert info.format == "FLAC" and info.samplerate == SAMPLE_RATE_HZ and info.channels == 1
    assert 20.0 <= info.duration <= 30.0
    assert path.stat().st_size < MAX_DEMO_BYTES
    fixtures = sum(p.stat().st_size for p in (Path(__file__).parent / "fixtures").rglob("*") if p.is_file())
    assert fixtures + path.stat().st_size < 2_000_000


def test_the_recipe_covers_every_emotion_and_several_actors() -> None:
    emotions = [emotion for _, emotion in CLIPS]
    assert sorted(emotions) == sorted(["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"])
    assert all(EMOTION_CODES[stem.split("-")[2]] == emotion for stem, emotion in CLIPS)
    actors = {stem.split("-")[6] for stem, _ in CLIPS}
    assert 2 <= len(actors) <= 3


def test_attribution_credits_every_clip_and_the_licence() -> None:
    text = ATTRIBUTION.read_text(encoding="utf-8")
    assert "CC BY-NC-SA 4.0" in text and "https://creativecommons.org/licenses/by-nc-sa/4.0/" in text
    assert "Livingstone SR, Russo FA (2018)" in text and "https://doi.org/10.1371/journal.pone.0196391" in text
    assert "derivative" in text and "concatenated" in text
    assert "python -m stream_ser.demo.make_demo --data ../shared/data" in text
    for stem, emotion in CLIPS:
        assert re.search(rf"\| {emotion} \| `{stem}\.wav` \|", text), stem


def test_the_demo_is_rebuilt_sample_for_sample_from_the_corpus(data_dir) -> None:
    """make_demo.py reproduces the shipped file from the corpus, and the attribution's table says
    where each clip sits."""
    samples, placements = build(data_dir)
    shipped, sr = sf.read(demo_recording(), dtype="int16")
    assert sr == SAMPLE_RATE_HZ and np.array_equal(samples, shipped)
    text = ATTRIBUTION.read_text(encoding="utf-8")
    for (stem, emotion, start_s, end_s), following in zip(placements, [*placements[1:], None]):
        assert f"| {start_s:.2f}-{end_s:.2f} s | {emotion} | `{stem}.wav` |" in text
        if following is not None:  # a pause of digital silence between two clips
            assert following[2] - end_s == pytest.approx(PAUSE_S)
            gap = shipped[round(end_s * sr) : round(following[2] * sr)]
            assert gap.size == round(PAUSE_S * sr) and not gap.any()
    for stem, _ in CLIPS:  # each clip is its corpus file, trimmed, unchanged in level
        original, _ = sf.read(data_dir / "ravdess" / f"Actor_{stem[-2:]}" / f"{stem}.flac", dtype="int16")
        start_s, end_s = next((a, b) for s, _, a, b in placements if s == stem)
        piece = shipped[round(start_s * sr) : round(end_s * sr)]
        loud = max(200, int(np.argmax(np.abs(piece))))  # find the piece in the original by its loudest part
        probe = piece[loud - 200 : loud + 200]
        windows = np.lib.stride_tricks.sliding_window_view(original, probe.size)
        (found,) = np.flatnonzero((windows == probe).all(axis=1))
        offset = int(found) - (loud - 200)
        assert np.array_equal(original[offset : offset + len(piece)], piece)
        assert len(piece) < len(original)  # the silence around the speech was cut


def test_listen_demo_replays_the_recording_like_input(tmp_path, capsys) -> None:
    """``listen --demo`` is ``listen --input`` on the shipped recording: the same rows."""
    demo = demo_recording()
    out, ref = tmp_path / "demo.csv", tmp_path / "input.csv"
    assert main(["listen", "--demo", "--fast", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"listening to {demo}" in captured.err
    n = len(window_ends(round(sf.info(demo).duration * SAMPLE_RATE_HZ), SAMPLE_RATE_HZ // 2))
    assert len(captured.out.strip().splitlines()) == n
    assert main(["listen", "--input", str(demo), "--fast", "--csv", str(ref)]) == 0
    rows = read_csv(out)
    assert len(rows) - 1 == n and rows == read_csv(ref)
    assert {r[0] for r in rows[1:]} == {str(demo)}


def test_listen_demo_plays_at_real_time_pace(capsys) -> None:
    t0 = time.monotonic()
    assert main(["listen", "--demo", "--duration", "2"]) == 0
    assert time.monotonic() - t0 >= 1.9  # 2 s of audio take 2 s, as a microphone would deliver them
    assert [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()] == [
        "00:00.5", "00:01.0", "00:01.5", "00:02.0"]


def test_the_wheel_ships_the_demo(tmp_path) -> None:
    """A wheel built from the repository (what ``pip install .`` installs) holds the recording,
    its attribution and its recipe."""
    root = Path(__file__).resolve().parents[1]
    if importlib.util.find_spec("hatchling") is not None:
        cmd = [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)]
    else:  # pip fetches the build backend (hatchling) into an isolated environment
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = tmp_path.glob("stream_ser-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"stream_ser/demo/demo.flac", "stream_ser/demo/ATTRIBUTION.md", "stream_ser/demo/__init__.py",
                "stream_ser/demo/make_demo.py"} <= names
        assert z.read("stream_ser/demo/demo.flac") == demo_recording().read_bytes()
