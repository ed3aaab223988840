"""The command line with channels (docs/calls.md): ``analyse --channels`` and ``--channel-names``,
their outputs and errors, ``listen --input --channels`` against the API, and ``plot`` of named
channels."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import ANGRY_CLIP, n_hops

import stream_ser
from stream_ser.cli import main


def test_analyse_channels_cli_outputs(stereo_call, tmp_path, capsys) -> None:
    out_csv, out_jsonl, out_summary = tmp_path / "t.csv", tmp_path / "t.jsonl", tmp_path / "s.json"
    code = main(["analyse", str(stereo_call), "--channels", "1,2", "--channel-names", "agent,customer",
                 "--csv", str(out_csv), "--jsonl", str(out_jsonl), "--summary-json", str(out_summary)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    hops = n_hops(stereo_call)
    lines = captured.out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"{stereo_call} [agent]", f"{stereo_call} [customer]"]
    assert "call summary: " in captured.err and "agent (channel 1): " in captured.err
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * hops
    assert [r["channel"] for r in rows[:4]] == ["agent", "customer", "agent", "customer"]  # per hop, channel order
    assert [r["end_s"] for r in rows[::2]] == [r["end_s"] for r in rows[1::2]]
    objs = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    preds = [o for o in objs if o["type"] == "prediction"]
    clips = [o for o in objs if o["type"] == "clip"]
    assert {o["channel"] for o in preds} == {"agent", "customer"} and len(preds) == 2 * hops
    assert [c["channel"] for c in clips] == ["agent", "customer"] and list(clips[0])[-1] == "channel"
    summary = json.loads(out_summary.read_text())
    assert summary["format"] == "stream-ser call summary" and summary["version"] == 2
    (entry,) = summary["summaries"]
    assert entry["source"] == str(stereo_call) and [c["channel"] for c in entry["channels"]] == ["agent", "customer"]
    for ch, clip in zip(entry["channels"], clips):
        assert ch["n_windows"] == hops and ch["n_speech_windows"] == clip["n_speech_windows"]
        assert sum(ch["emotion_share"].values()) == pytest.approx(1.0, abs=1e-3)
        assert ch["speech_s"] == pytest.approx(sum(ch["emotion_s"].values()), abs=1e-3)
    # unnamed channels are written as their numbers, counted from 1 (JSON numbers)
    assert main(["analyse", str(stereo_call), "--channels", "all", "--format", "jsonl"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["channel"] for o in objs} == {1, 2}


def test_analyse_channel_errors(stereo_call, tmp_path, capsys) -> None:
    """A channel a file lacks fails that file (the batch goes on); inconsistent options are usage errors."""
    assert main(["analyse", str(stereo_call), str(ANGRY_CLIP), "--channels", "2"]) == 1
    captured = capsys.readouterr()
    assert "03-01-05-02-01-01-21.flac: has 1 channel; channel 2 does not exist" in captured.err
    assert f"{stereo_call} [2]: " in captured.out
    assert main(["analyse", str(stereo_call), "--channels", "1,2", "--channel-names", "a"]) == 2
    assert "1 name(s) for 2 channel(s)" in capsys.readouterr().err
    for bad in (["--channels", "0"], ["--channels", "x"], ["--channels", "1", "--channel-names", "7"]):
        with pytest.raises(SystemExit) as exc:
            main(["analyse", str(stereo_call), *bad])
        assert exc.value.code == 2
    capsys.readouterr()
    summary = tmp_path / "s.json"
    summary.write_text("{}")
    assert main(["analyse", str(stereo_call), "--summary-json", str(summary)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_mono_analysis_is_unchanged(capsys) -> None:
    """Without --channels: channel 0, no channel key in clip objects, nothing on stderr."""
    assert main(["analyse", str(ANGRY_CLIP), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    objs = [json.loads(line) for line in captured.out.splitlines()]
    assert {o["channel"] for o in objs if o["type"] == "prediction"} == {0}
    assert "channel" not in [o for o in objs if o["type"] == "clip"][0]
    assert captured.err == ""


def test_listen_replay_scores_channels_like_analyse(stereo_call, tmp_path, capsys, shipped_model) -> None:
    """``listen --input --channels``: the live path gives the file path's per-channel windows."""
    out = tmp_path / "l.csv"
    assert main(["listen", "--input", str(stereo_call), "--fast", "--no-tui", "--channels", "all",
                 "--channel-names", "agent,customer", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert "channels agent = channel 1, customer = channel 2 scored separately" in captured.err
    assert "call summary:" in captured.err and "customer (channel 2):" in captured.err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    want = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"], model=shipped_model)
    for result in want:
        mine = [r for r in rows if r["channel"] == result.clip.channel_name]
        assert [float(r["end_s"]) for r in mine] == pytest.approx([p.end_s for p in result.timeline], abs=1e-3)
        for r, p in zip(mine, result.timeline):
            assert (r["speech"] == "1") == p.is_speech
            if p.is_speech:
                assert float(r["confidence"]) == pytest.approx(p.confidence, abs=1e-4)
    assert len(captured.out.strip().splitlines()) == 2 * n_hops(stereo_call)
    assert captured.out.splitlines()[0].split()[1] == "agent"


def test_plot_reads_named_channels(stereo_call, tmp_path) -> None:
    from stream_ser.plot import read_timeline_csv

    out = tmp_path / "t.csv"
    assert main(["analyse", str(stereo_call), "--channels", "all", "--channel-names", "agent,customer",
                 "--csv", str(out), "-q"]) == 0
    timelines = read_timeline_csv(out)
    assert [t.channel for t in timelines] == ["agent", "customer"]
    assert "(channel agent)" in timelines[0].title
