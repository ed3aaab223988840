"""The command line and the timeline CSV interface, on real clips."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

from stream_ser.cli import main
from stream_ser.engine import window_ends
from stream_ser.sinks import BASE_COLUMNS, CsvSink, OutputError, csv_header
from stream_ser.audio import audio_info

LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def expected_rows(*clips) -> int:
    return sum(len(window_ends(round(audio_info(c).duration_s * 16000), 8000)) for c in clips)


def test_analyse_writes_the_documented_csv(tmp_path, capsys) -> None:
    out = tmp_path / "timeline.csv"
    assert main(["analyse", str(ANGRY_CLIP), str(HAPPY_CLIP), str(TESS_CLIP), "--csv", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 3
    for line, clip in zip(printed, (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP)):
        assert line.startswith(f"{clip}: ") and line.split(": ")[1].split()[0] in LABELS
    rows = read_csv(out)
    assert rows[0] == [*BASE_COLUMNS, *(f"p_{lab}" for lab in LABELS), "adaptation"]
    assert len(rows) - 1 == expected_rows(ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP)
    for row in rows[1:]:
        rec = dict(zip(rows[0], row))
        assert rec["channel"] == "0" and rec["speech"] in ("0", "1") and rec["adaptation"] in ("embedding", "output", "none")
        for key in ("start_s", "end_s"):
            assert len(rec[key].split(".")[1]) == 3  # millisecond precision
        assert float(rec["start_s"]) <= float(rec["end_s"])
        probs = [rec[f"p_{lab}"] for lab in LABELS]
        if rec["speech"] == "1":
            assert rec["label"] in LABELS
            assert abs(sum(map(float, probs)) - 1) < 2e-3
            assert float(rec["confidence"]) == max(map(float, probs))
        else:
            assert rec["label"] == rec["confidence"] == "" and probs == [""] * len(LABELS)
    assert any(r[4] == "1" for r in rows[1:]) and any(r[4] == "0" for r in rows[1:])


def test_analyse_goes_on_after_a_bad_file(tmp_path, capsys) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    code = main(["analyse", str(tmp_path / "missing.wav"), str(text), str(TESS_CLIP)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{TESS_CLIP}: " in captured.out  # the good file was still analysed
    assert "missing.wav: no such file" in captured.err and "notes.wav: cannot read audio" in captured.err
    assert "2 of 3 file(s) failed" in captured.err
    assert "Traceback" not in captured.err


def test_existing_csv_is_protected(tmp_path, capsys) -> None:
    out = tmp_path / "t.csv"
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out)]) == 0
    first = read_csv(out)
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert read_csv(out) == first
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out), "--append"]) == 0
    assert read_csv(out) == first + first[1:]
    assert main(["analyse", str(TESS_CLIP), "--csv", str(out), "--force"]) == 0
    assert read_csv(out) == first


def test_unwritable_csv_fails_before_any_audio(tmp_path, capsys) -> None:
    code = main(["listen", "--input", str(TESS_CLIP), "--csv", str(tmp_path / "no" / "such" / "dir.csv")])
    captured = capsys.readouterr()
    assert code == 2 and "cannot write" in captured.err and captured.out == ""


def test_listen_replay_prints_one_line_per_hop(tmp_path, capsys) -> None:
    out = tmp_path / "live.csv"
    assert main(["listen", "--input", str(HAPPY_CLIP), "--fast", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == expected_rows(HAPPY_CLIP) == len(read_csv(out)) - 1
    assert "listening to" in captured.err and "0 input overflows" in captured.err
    # the same rows as analysing the file
    ref = tmp_path / "ref.csv"
    assert main(["analyse", str(HAPPY_CLIP), "--csv", str(ref)]) == 0
    assert read_csv(out) == read_csv(ref)


def test_listen_duration_limit(capsys) -> None:
    assert main(["listen", "--input", str(ANGRY_CLIP), "--fast", "--duration", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # 0.5, 1.0, 1.5, 2.0 s


def test_bad_model_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00" * 10)
    assert main(["analyse", str(TESS_CLIP), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a loadable ONNX model" in err and "Traceback" not in err


def test_csv_sink_header_follows_model_labels(tmp_path) -> None:
    sink = CsvSink(tmp_path / "x.csv", ("calm", "angry"))
    sink.close()
    assert read_csv(tmp_path / "x.csv") == [csv_header(("calm", "angry"))] == [[*BASE_COLUMNS, "p_calm", "p_angry", "adaptation"]]
    with pytest.raises(OutputError, match="header differs"):
        CsvSink(tmp_path / "x.csv", ("a", "b"), append=True)


def test_console_script_help_and_version() -> None:
    exe = shutil.which("stream-ser")
    cmd = [exe] if exe else [sys.executable, "-m", "stream_ser"]
    for args in (["--help"], ["listen", "--help"], ["analyse", "--help"]):
        res = subprocess.run(cmd + args, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "example" in res.stdout
    res = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("stream-ser ")
