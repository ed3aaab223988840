"""Bad and unusual input: every case is processed correctly or rejected with one clear line.

A corpus of generated files (built from a real clip where audio is needed) goes through
``stream-ser analyse`` in one batch: good files get a summary line, bad ones exactly one error
line naming the file and the problem, the batch goes on, the exit status is 1 and the final
summary lists the failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP

from stream_ser.cli import main

SR = 16000


def speech() -> np.ndarray:
    x, sr = sf.read(ANGRY_CLIP, dtype="float32")
    assert sr == SR
    return x


def resampled(rate: int) -> np.ndarray:
    return soxr.resample(speech(), SR, rate).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int = SR, **kw) -> None:
    sf.write(path, x, rate, **kw)


def corrupt_middle(path: Path) -> None:
    write(path, np.tile(speech(), 3), format="FLAC")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 2000):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))


# name -> (maker, expected): expected is "ok", "no speech", or a substring of the one error line
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing.wav": (lambda p: None, "no such file"),
    "a folder.wav": (lambda p: p.mkdir(), "is a directory"),
    "empty.wav": (lambda p: p.write_bytes(b""), "empty file"),
    "zero_frames.wav": (lambda p: write(p, np.zeros(0, np.float32)), "no speech"),
    "truncated_header.wav": (lambda p: (write(p, speech()), p.write_bytes(p.read_bytes()[:30])), "cannot read audio"),
    "not_audio.wav": (lambda p: p.write_bytes(bytes(range(256)) * 40), "cannot read audio"),
    "notes.txt": (lambda p: p.write_text("hello, this is text\n" * 50), "cannot read audio"),
    "nan_inf.wav": (lambda p: write(p, np.where(np.arange(speech().size) % 97 == 0, np.nan, speech()).astype(np.float32), subtype="FLOAT"), "ok"),
    "inf_samples.wav": (lambda p: write(p, np.where(np.arange(speech().size) % 89 == 0, np.inf, speech()).astype(np.float32), subtype="FLOAT"), "ok"),
    "dc_offset.wav": (lambda p: write(p, speech() * 0.5 + 0.3), "ok"),
    "dc_offset_silence.wav": (lambda p: write(p, np.full(4 * SR, 0.05, np.float32)), "no speech"),
    "clipped.wav": (lambda p: write(p, np.clip(speech() * 40, -1, 1)), "ok"),
    "digital_silence.wav": (lambda p: write(p, np.zeros(5 * SR, np.float32)), "no speech"),
    "pcm_u8.wav": (lambda p: write(p, speech(), subtype="PCM_U8"), "ok"),
    "pcm_24.wav": (lambda p: write(p, speech(), subtype="PCM_24"), "ok"),
    "float32.wav": (lambda p: write(p, speech(), subtype="FLOAT"), "ok"),
    "rate_8k.wav": (lambda p: write(p, resampled(8000), 8000), "ok"),
    "rate_22050.wav": (lambda p: write(p, resampled(22050), 22050), "ok"),
    "rate_96k.wav": (lambda p: write(p, resampled(96000), 96000), "ok"),
    "six_channels.wav": (lambda p: write(p, np.stack([speech()] * 3 + [np.zeros_like(speech())] * 3, axis=1)), "ok"),
    "short_0.1s.wav": (lambda p: write(p, speech()[int(1.5 * SR) : int(1.6 * SR)]), "no speech"),
    "short_2.5s.wav": (lambda p: write(p, speech()[: int(2.5 * SR)]), "ok"),
    "with spaces and ünïcödé – 情绪.wav": (lambda p: write(p, speech()), "ok"),
    "clip.flac": (lambda p: write(p, speech(), format="FLAC"), "ok"),
    "clip.ogg": (lambda p: write(p, speech(), format="OGG", subtype="VORBIS"), "ok"),
    "clip.mp3": (lambda p: write(p, speech(), format="MP3"), "ok"),
    "corrupt_middle.flac": (corrupt_middle, "decoding failed after"),
    "stereo_44k.wav": (lambda p: write(p, np.stack([resampled(44100)] * 2, axis=1), 44100), "ok"),
}


def test_case_count() -> None:
    assert len(CASES) >= 25


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad input")
    for name, (make, _) in CASES.items():
        make(root / name)
    return root


def test_batch_goes_on_and_reports_each_failure_once(corpus: Path, tmp_path: Path, capsys) -> None:
    files = [str(corpus / name) for name in CASES]
    code = main(["analyse", *files, "--csv", str(tmp_path / "t.csv")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err
    failures = [n for n, (_, want) in CASES.items() if want not in ("ok", "no speech")]
    assert f"{len(failures)} of {len(CASES)} file(s) failed" in err
    for name, (_, want) in CASES.items():
        path = str(corpus / name)
        err_lines = [ln for ln in err.splitlines() if ln.startswith(f"stream-ser: error: {path}:")]
        out_lines = [ln for ln in out.splitlines() if ln.startswith(f"{path}: ")]
        if want == "ok":
            assert not err_lines, f"{name}: {err_lines}"
            assert len(out_lines) == 1 and "no speech" not in out_lines[0], f"{name}: {out_lines}"
        elif want == "no speech":
            assert not err_lines and len(out_lines) == 1 and "no speech" in out_lines[0], f"{name}: {out_lines}"
        else:
            assert len(err_lines) == 1 and want in err_lines[0], f"{name}: {err_lines}"


def test_odd_formats_give_the_same_label_as_the_original(corpus: Path, shipped_model, capsys) -> None:
    """Format, rate, bit depth, channels and DC do not change what the clip is recognised as."""
    assert main(["analyse", str(ANGRY_CLIP)]) == 0
    reference = capsys.readouterr().out.split(": ")[1].split()[0]
    same = ["pcm_24.wav", "float32.wav", "clip.flac", "rate_22050.wav", "rate_96k.wav", "six_channels.wav",
            "stereo_44k.wav", "dc_offset.wav"]
    assert main(["analyse", *(str(corpus / n) for n in same)]) == 0
    labels = [line.split(": ")[1].split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert labels == [reference] * len(same)


@pytest.mark.skipif(not hasattr(os, "geteuid") or shutil.which("setpriv") is None, reason="needs Linux setpriv")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.wav"
    write(path, speech())
    path.chmod(0)
    cmd = [sys.executable, "-m", "stream_ser", "analyse", str(path)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that allow it
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert f"{path}: permission denied" in res.stderr and "Traceback" not in res.stderr


def _long_recording(path: Path, hours: float) -> float:
    """8 kHz 8-bit WAV: silence with a real clip every 5 minutes, written block by block."""
    rate = 8000
    clip = resampled(rate)
    minute = np.zeros(60 * rate, np.float32)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_U8") as f:
        for m in range(int(hours * 60)):
            block = minute.copy()
            if m % 5 == 0:
                block[rate : rate + clip.size] = clip
            f.write(block)
    return hours * 3600


def _peak_rss_mb(args: list[str]) -> tuple[float, str]:
    code = (
        "import resource, sys\n"
        "from stream_ser.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rss = float(res.stdout.split("RSS_MB")[1].split()[0])
    return rss, res.stdout


def test_two_hour_file_is_streamed_with_flat_memory(tmp_path: Path) -> None:
    short, long = tmp_path / "ten_minutes.wav", tmp_path / "two_hours.wav"
    _long_recording(short, 10 / 60)
    _long_recording(long, 2.0)
    rss_short, _ = _peak_rss_mb(["analyse", str(short), "--csv", str(tmp_path / "short.csv")])
    rss_long, out = _peak_rss_mb(["analyse", str(long), "--csv", str(tmp_path / "long.csv")])
    assert f"{long}: " in out and "7200.00 s" in out
    rows = (tmp_path / "long.csv").read_text().count("\n") - 1
    assert rows == 7200 * 2  # one row per 0.5 s hop, nothing skipped
    assert rss_long - rss_short < 20, f"peak RSS {rss_short:.0f} MB for 10 min, {rss_long:.0f} MB for 2 h"
