"""JSON lines (``--format jsonl`` and ``--jsonl OUT``): the documented schema, on real clips."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

from stream_ser.cli import main
from stream_ser.engine import window_ends
from stream_ser.sinks import (
    JsonLinesSink,
    OutputError,
    clip_record,
    error_record,
    json_line,
    prediction_record,
)
from stream_ser.audio import audio_info
from stream_ser.types import ClipResult, Prediction

PREDICTION_KEYS = ["type", "source", "channel", "start_s", "end_s", "speech", "label", "confidence", "probabilities",
                   "adaptation"]
CLIP_KEYS = ["type", "source", "duration_s", "n_windows", "n_speech_windows", "label", "confidence", "probabilities"]


def n_windows(clip) -> int:
    return len(window_ends(round(audio_info(clip).duration_s * 16000), 8000))


def parse(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines)
    return [json.loads(line) for line in lines]


def check_prediction(obj: dict, labels: list[str]) -> None:
    assert list(obj) == PREDICTION_KEYS and obj["type"] == "prediction"
    assert isinstance(obj["channel"], int) and obj["channel"] == 0
    assert 0 <= obj["start_s"] <= obj["end_s"] and round(obj["end_s"], 3) == obj["end_s"]
    assert isinstance(obj["speech"], bool) and obj["adaptation"] in ("embedding", "output", "none")
    if obj["speech"]:
        probs = obj["probabilities"]
        assert list(probs) == labels and abs(sum(probs.values()) - 1) < 2e-3
        assert obj["label"] in labels and obj["confidence"] == probs[obj["label"]] == max(probs.values())
    else:
        assert obj["label"] is None and obj["confidence"] is None and obj["probabilities"] is None


def test_analyse_jsonl_on_stdout_matches_the_csv(tmp_path, capsys, shipped_model) -> None:
    labels = list(shipped_model.labels)
    out = tmp_path / "t.csv"
    clips = (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP)
    assert main(["analyse", *map(str, clips), "--format", "jsonl", "--csv", str(out)]) == 0
    objs = parse(capsys.readouterr().out)
    # per file: its predictions, then one clip object
    pos = 0
    for clip in clips:
        n = n_windows(clip)
        preds, summary = objs[pos : pos + n], objs[pos + n]
        pos += n + 1
        assert all(o["type"] == "prediction" and o["source"] == str(clip) for o in preds)
        for o in preds:
            check_prediction(o, labels)
        assert list(summary) == CLIP_KEYS and summary["type"] == "clip" and summary["source"] == str(clip)
        assert summary["n_windows"] == n and summary["n_speech_windows"] == sum(o["speech"] for o in preds)
        assert summary["duration_s"] == pytest.approx(audio_info(clip).duration_s, abs=1e-3)
        assert summary["label"] in labels and list(summary["probabilities"]) == labels
    assert pos == len(objs)
    assert any(o["type"] == "prediction" and not o["speech"] for o in objs)
    # the same values as the CSV rows
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    preds = [o for o in objs if o["type"] == "prediction"]
    assert len(rows) == len(preds)
    for row, o in zip(rows, preds):
        assert float(row["start_s"]) == o["start_s"] and float(row["end_s"]) == o["end_s"]
        assert row["speech"] == ("1" if o["speech"] else "0")
        if o["speech"]:
            assert row["label"] == o["label"] and float(row["confidence"]) == o["confidence"]
            assert [float(row[f"p_{lab}"]) for lab in labels] == list(o["probabilities"].values())


def test_bad_files_become_error_objects(tmp_path, capsys) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    code = main(["analyse", str(tmp_path / "missing.wav"), str(bad), str(TESS_CLIP), "--format", "jsonl"])
    captured = capsys.readouterr()
    assert code == 1
    objs = parse(captured.out)
    errors = [o for o in objs if o["type"] == "error"]
    assert [e["source"] for e in errors] == [str(tmp_path / "missing.wav"), str(bad)]
    assert list(errors[0]) == ["type", "source", "message"] and "no such file" in errors[0]["message"]
    assert objs[-1]["type"] == "clip" and objs[-1]["source"] == str(TESS_CLIP)
    assert "no such file" in captured.err and "Traceback" not in captured.err


def test_jsonl_file_with_line_output(tmp_path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["analyse", str(TESS_CLIP), "--jsonl", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"{TESS_CLIP}: ")  # stdout keeps the summary line
    objs = parse(out.read_text(encoding="utf-8"))
    assert [o["type"] for o in objs] == ["prediction"] * n_windows(TESS_CLIP) + ["clip"]


def test_jsonl_file_is_protected_like_the_csv(tmp_path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["analyse", str(TESS_CLIP), "--jsonl", str(out)]) == 0
    first = out.read_text()
    assert main(["analyse", str(TESS_CLIP), "--jsonl", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == first
    assert main(["analyse", str(TESS_CLIP), "--jsonl", str(out), "--append"]) == 0
    assert out.read_text() == first + first
    assert main(["analyse", str(TESS_CLIP), "--jsonl", str(out), "--force"]) == 0
    assert out.read_text() == first


def test_unwritable_jsonl_fails_before_any_audio(tmp_path, capsys) -> None:
    bad = str(tmp_path / "no" / "such" / "dir.jsonl")
    for argv in (["listen", "--input", str(TESS_CLIP), "--jsonl", bad], ["analyse", str(TESS_CLIP), "--jsonl", bad]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "cannot write" in captured.err and captured.out == "" and "Traceback" not in captured.err


def test_listen_jsonl_equals_analyse(tmp_path, capsys) -> None:
    out = tmp_path / "live.jsonl"
    assert main(["listen", "--input", str(HAPPY_CLIP), "--fast", "--format", "jsonl", "--jsonl", str(out)]) == 0
    live = parse(capsys.readouterr().out)
    assert live == parse(out.read_text())
    assert len(live) == n_windows(HAPPY_CLIP) and all(o["type"] == "prediction" for o in live)
    assert main(["analyse", str(HAPPY_CLIP), "--format", "jsonl"]) == 0
    batch = parse(capsys.readouterr().out)
    assert live == batch[:-1] and batch[-1]["type"] == "clip"


def test_records_and_sink_units(tmp_path) -> None:
    labels = ("calm", "angry")
    silent = Prediction("mic:Ünïcode", 1, 0.0, 0.5, False, None, None, None, labels)
    speech = Prediction("x.wav", 0, 0.1234, 3.12345, True, "angry", 0.876543, (0.123457, 0.876543), labels)
    assert prediction_record(silent) == {
        "type": "prediction", "source": "mic:Ünïcode", "channel": 1, "start_s": 0.0, "end_s": 0.5,
        "speech": False, "label": None, "confidence": None, "probabilities": None, "adaptation": "none",
    }
    rec = prediction_record(speech)
    assert rec["start_s"] == 0.123 and rec["end_s"] == 3.123
    assert rec["confidence"] == 0.8765 and rec["probabilities"] == {"calm": 0.1235, "angry": 0.8765}
    line = json_line(prediction_record(silent))
    assert "\n" not in line and "Ünïcode" in line and ": " not in line  # compact, UTF-8 kept
    none = ClipResult("y.wav", 1.0, 2, 0, None, None, None, labels)
    assert clip_record(none)["label"] is None and clip_record(none)["probabilities"] is None
    assert error_record("z.wav", "z.wav: bad") == {"type": "error", "source": "z.wav", "message": "z.wav: bad"}
    path = tmp_path / "u.jsonl"
    with JsonLinesSink(path) as sink:
        sink.write(silent)
        sink.write(speech)
        sink.write_clip(none)
    assert sink.lines_written == 3
    assert [json.loads(x)["type"] for x in path.read_text(encoding="utf-8").splitlines()] == ["prediction"] * 2 + ["clip"]
    with pytest.raises(OutputError, match="already exists"):
        JsonLinesSink(path)


def test_closed_pipe_ends_quietly(tmp_path) -> None:
    """``stream-ser analyse ... --format jsonl | head -n 1``: no traceback, exit 0, stops early."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_ser", "analyse", *[str(ANGRY_CLIP)] * 30, "--format", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    _, err = proc.communicate(timeout=120)
    assert json.loads(first)["type"] == "prediction"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
