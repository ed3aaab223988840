"""SIGINT, SIGTERM and SIGKILL during listen and analyse: nothing written is lost."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP

from stream_ser.audio import load_audio

N_COLUMNS = 7 + 7 + 1  # base columns, one per label, adaptation


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """About 60 s of real speech with pauses."""
    a, b = load_audio(ANGRY_CLIP), load_audio(HAPPY_CLIP)
    pause = np.zeros(8000, np.float32)
    x = np.concatenate([a, pause, b, pause] * 8)
    path = tmp_path_factory.mktemp("signals") / "long.wav"
    sf.write(path, x, 16000)
    return path


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stream_ser", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_rows(csv_path: Path, rows: int, timeout_s: float = 90.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if csv_path.exists() and csv_path.read_text().count("\n") > rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"{csv_path} did not reach {rows} rows")


def whole_rows(csv_path: Path) -> list[list[str]]:
    text = csv_path.read_text()
    assert text.endswith("\n"), "last row is incomplete"
    rows = list(csv.reader(text.splitlines()))
    assert all(len(r) == N_COLUMNS for r in rows)
    return rows


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_listen_stops_cleanly(long_clip, tmp_path, sig) -> None:
    out = tmp_path / "live.csv"
    proc = start(["listen", "--input", str(long_clip), "--csv", str(out)])
    wait_for_rows(out, 3)  # real-time pace: about 1.5 s of audio
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    rows = whole_rows(out)
    assert len(rows) - 1 == len(stdout.strip().splitlines()) >= 3
    assert "stopped after" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_analyse_interrupted_cleanly(long_clip, tmp_path, sig) -> None:
    out = tmp_path / "batch.csv"
    files = [str(long_clip)] * 40
    proc = start(["analyse", *files, "--csv", str(out)])
    wait_for_rows(out, 150)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    rows = whole_rows(out)
    assert 150 <= len(rows) - 1 < 40 * 120
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_sigkill_loses_at_most_the_row_being_written(long_clip, tmp_path) -> None:
    out = tmp_path / "killed.csv"
    proc = start(["listen", "--input", str(long_clip), "--csv", str(out)])
    wait_for_rows(out, 4)
    os.kill(proc.pid, signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=30)
    printed = len(stdout.strip().splitlines())
    lines = out.read_text().splitlines(keepends=True)
    complete = [ln for ln in lines if ln.endswith("\n")]
    assert len(lines) - len(complete) <= 1  # at most one partial row
    assert all(len(r) == N_COLUMNS for r in csv.reader(complete))
    assert len(complete) - 1 >= printed - 1  # every row printed before the kill was already on disk
