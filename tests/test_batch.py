"""``stream-ser batch`` on a local Ray (stream_ser/batch/, docs/batch.md): the fixture clips, a
stereo call and a file that is not audio, scored by Ray Data actors; the outputs against
``analyse`` on the same files, resuming, and the inputs (manifests, globs, ids)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow.dataset as pads  # noqa: E402

import stream_ser  # noqa: E402
from stream_ser.batch import (  # noqa: E402
    BatchError,
    BatchLayout,
    BatchOptions,
    read_inputs,
    read_manifest,
    recording_id,
    run_batch,
)
from stream_ser.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting Ray takes seconds); run_batch uses it as it is."""
    import ray

    for attempt in (1, 2):  # Ray gives its node 30 s to start, which an overloaded machine can exceed
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            break
        except Exception as exc:
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture
def archive(tmp_path):
    """Three real clips and a file that is not audio, in a folder of their own."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for clip in (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP):
        shutil.copy(clip, folder / clip.name)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    return folder


def timeline_rows(out, rid: str) -> list[dict]:
    """A recording's timeline as read back the way a data team would: the partitioned dataset."""
    table = pads.dataset(out / "timelines", format="parquet", partitioning="hive").to_table()
    return [r for r in table.to_pylist() if r["recording_id"] == rid]


def test_batch_outputs_match_analyse(local_ray, archive, tmp_path, capsys) -> None:
    """Timelines (Parquet, Hive partitions), summary rows and CSVs are those of ``analyse`` on the
    same files; the file that is not audio is a row with its error, and the job still ends."""
    out = tmp_path / "out"
    recordings = read_inputs([str(archive / "*")])
    report = run_batch(recordings, out, BatchOptions(csv=True), workers=2)
    assert (report.scored, report.skipped, report.failed, report.workers) == (4, 0, 1, 2)
    model = stream_ser.load_model()
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert [r["recording_id"] for r in summary] == [r.recording_id for r in recordings]  # input order
    by_source = {r["source"]: r for r in summary}
    bad = by_source[str(archive / "corrupt.wav")]
    assert bad["status"] == "error" and "corrupt.wav" in bad["error"] and bad["duration_s"] is None
    assert not (out / "timelines" / f"recording_id={bad['recording_id']}").exists()
    for clip in (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP):
        path = str(archive / clip.name)
        row = by_source[path]
        want = stream_ser.analyse(path, model=model)
        assert row["status"] == "ok" and row["error"] is None
        assert row["duration_s"] == pytest.approx(want.clip.duration_s, abs=1e-3) and row["channels"] == ["0"]
        assert row["n_windows"] == want.clip.n_windows and row["model"] == model.name and row["cpu_s"] > 0
        call = stream_ser.summarise_call(want.timeline, path, model.labels, 0.5)
        assert json.loads(row["call_summary"]) == call.to_dict()
        shares = [row[f"share_{label}"] for label in model.labels]
        if row["speech_s"] > 0:
            assert sum(shares) == pytest.approx(1.0, abs=1e-3)
            assert row["label"] == model.labels[int(np.argmax(shares))]
        rows = timeline_rows(out, row["recording_id"])
        assert [r["end_s"] for r in rows] == [p.end_s for p in want.timeline]
        for r, p in zip(rows, want.timeline):
            assert r["is_speech"] == p.is_speech and r["label"] == p.label and r["source"] == path
            assert r["channel"] == 0 and r["channel_name"] is None and r["adaptation"] == p.adaptation
            if p.is_speech:
                probs = [r[f"p_{label}"] for label in model.labels]
                np.testing.assert_allclose(probs, p.probabilities, atol=1e-6)  # float32 columns
        # the CSV asked for is the one `analyse --csv` writes, byte for byte
        mine = tmp_path / f"{clip.stem}.csv"
        assert main(["analyse", path, "--csv", str(mine), "-q"]) == 0
        assert (out / "csv" / f"{row['recording_id']}.csv").read_bytes() == mine.read_bytes()
    capsys.readouterr()
    assert not list(out.rglob(".*.tmp-*"))  # nothing half-written is left


def test_a_rerun_skips_done_work_and_retries_failures(local_ray, archive, tmp_path) -> None:
    """Each recording is committed on its own: a re-run scores only what failed or was never
    committed (a half-written file left by a crash is cleared), and leaves the rest untouched."""
    out = tmp_path / "out"
    recordings = read_inputs([str(archive / "*")])
    first = run_batch(recordings, out, BatchOptions(), workers=1)
    assert (first.scored, first.failed) == (4, 1)
    layout = BatchLayout(out)
    ids = {os.path.basename(r.path): r.recording_id for r in recordings}
    done_files = {n: layout.timeline_path(rid).stat() for n, rid in ids.items() if n != "corrupt.wav"}
    second = run_batch(recordings, out, BatchOptions(), workers=1)
    assert (second.scored, second.skipped, second.failed) == (1, 3, 1)  # only the bad file again
    for n, st in done_files.items():
        now = layout.timeline_path(ids[n]).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    # the bad file is replaced by a good recording, and a crash is simulated for another one: its
    # status never committed and a temporary file left in its partition
    shutil.copy(TESS_CLIP, archive / "corrupt.wav")
    crashed = ids[HAPPY_CLIP.name]
    layout.status_path(crashed).unlink()
    (layout.timeline_dir(crashed) / ".timeline.parquet.tmp-0123456789ab").write_bytes(b"partial")
    rows = []
    third = run_batch(recordings, out, BatchOptions(), workers=1, on_row=rows.append)
    assert (third.scored, third.skipped, third.failed) == (2, 2, 0)
    assert {r["recording_id"] for r in rows} == {ids["corrupt.wav"], crashed}
    assert not list(out.rglob(".*.tmp-*"))
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert [r["status"] for r in summary] == ["ok"] * 4
    # --redo scores everything again; the CSV wanted now but not written before also means "not done"
    assert run_batch(recordings, out, BatchOptions(), workers=1, redo=True).scored == 4
    assert run_batch(recordings, out, BatchOptions(csv=True), workers=1).scored == 4


def test_channels_and_names_per_recording(local_ray, stereo_call, tmp_path) -> None:
    """``--channels all --channel-names``: a stereo call's two sides, named, as analyse_channels
    gives them; a mono recording in the same batch is an error row (two names, one channel)."""
    out = tmp_path / "out"
    recordings = read_inputs([str(stereo_call), str(TESS_CLIP)])
    options = BatchOptions(channels="all", channel_names=("agent", "customer"))
    report = run_batch(recordings, out, options, workers=2)
    assert (report.scored, report.failed) == (2, 1)
    call, mono = report.rows
    assert mono["status"] == "error" and "2 channel name(s) given (agent,customer) for 1 channel(s)" in mono["error"]
    assert call["channels"] == ["agent", "customer"]
    want = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"])
    rows = timeline_rows(out, call["recording_id"])
    assert [(r["channel"], r["channel_name"]) for r in rows[:2]] == [(1, "agent"), (2, "customer")]
    for side in want:
        mine = [r for r in rows if r["channel_name"] == side.clip.channel_name]
        assert [r["end_s"] for r in mine] == [p.end_s for p in side.timeline]
        assert [r["label"] for r in mine] == [p.label for p in side.timeline]


def test_batch_command(local_ray, archive, tmp_path, capsys) -> None:
    """The command: one error line per bad recording, a closing line, status 1 when one failed;
    a run with nothing left to do does not start any worker."""
    out = tmp_path / "out"
    manifest = tmp_path / "calls.txt"
    manifest.write_text("# the archive\n" + "".join(f"archive/{p.name}\n" for p in sorted(archive.iterdir())))
    assert main(["batch", str(manifest), "--out", str(out), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "corrupt.wav" in err and "4 recording(s): 4 scored now (1 failed), 0 done before;" in err
    os.remove(archive / "corrupt.wav")
    (manifest).write_text("".join(f"archive/{p.name}\n" for p in sorted(archive.iterdir())))
    assert main(["batch", str(manifest), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["batch", str(manifest), "--out", str(out)]) == 0
    assert "3 recording(s): 0 scored now (0 failed), 3 done before;" in capsys.readouterr().err
    assert len(pq.read_table(out / "summary.parquet")) == 3


def test_batch_command_errors(tmp_path, monkeypatch, capsys) -> None:
    """Problems that stop a batch before it starts are one line and status 2."""
    assert main(["batch", str(tmp_path / "nothing-*.wav"), "--out", str(tmp_path / "o")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert main(["batch", str(TESS_CLIP), "--out", str(tmp_path / "o"), "--channels", "1,2",
                 "--channel-names", "a"]) == 2
    assert "1 name(s) for 2 channel(s)" in capsys.readouterr().err
    assert main(["batch", str(TESS_CLIP), "--out", str(tmp_path / "o"), "--hop", "5"]) == 2
    assert "--hop" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["batch", str(TESS_CLIP), "--out", str(blocker / "o")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # the batch extra not installed
    assert main(["batch", str(TESS_CLIP), "--out", str(tmp_path / "o")]) == 2
    assert 'pip install "stream-ser[batch]"' in capsys.readouterr().err


def test_inputs_manifests_globs_and_ids(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        shutil.copy(TESS_CLIP, tmp_path / folder / "call.flac")
    rid_a, rid_b = recording_id(tmp_path / "a" / "call.flac"), recording_id(tmp_path / "b" / "call.flac")
    assert rid_a != rid_b and rid_a.startswith("call-") and rid_a == recording_id(str(tmp_path / "a" / "call.flac"))
    assert recording_id("/x/we ird:name.wav").startswith("we_ird_name-")
    found = read_inputs([str(tmp_path / "**" / "*.flac"), str(tmp_path / "a" / "call.flac")])
    assert [r.path for r in found] == [str(tmp_path / "a" / "call.flac"), str(tmp_path / "b" / "call.flac")]  # once each
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n\na/call.flac\n" + str(tmp_path / "b" / "call.flac") + "\n")
    assert [r.recording_id for r in read_manifest(listing)] == [rid_a, rid_b]  # relative to the manifest
    table = tmp_path / "calls.csv"
    table.write_text("path,recording_id,agent\na/call.flac,CA001,x\nb/call.flac,,y\n")
    assert [(r.path, r.recording_id) for r in read_inputs([str(table)])] == [
        (str(tmp_path / "a" / "call.flac"), "CA001"), (str(tmp_path / "b" / "call.flac"), rid_b)]
    for text, words in (("file\nx.wav\n", "'path' column"), ("path,recording_id\nx.wav,../up\n", "recording_id"),
                        ("path,recording_id\na/call.flac,X\nb/call.flac,X\n", "given to two files")):
        table.write_text(text)
        with pytest.raises(BatchError, match=words):
            read_inputs([str(table)])
    listing.write_text("# nothing\n")
    with pytest.raises(BatchError, match="no recording"):
        read_inputs([str(listing)])
