"""Scoring on two threads (``run(..., jobs=2)``, ``stream-ser analyse --jobs 2``): the model runs on
a second thread while the next windows' features are computed. The predictions must be exactly
those of one thread, on real clips, for one channel, several channels and a speaker-normalised
model in calibration; an early stop leaves no thread behind."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, padded
from test_calibration import norm_model  # noqa: F401  (fixture)

from stream_ser import api
from stream_ser.cli import default_jobs, main
from stream_ser.engine import PIPELINE_DEPTH, ChannelEngines, Engine
from stream_ser.audio import load_audio


def speech_with_pauses() -> np.ndarray:
    """Three real clips (two RAVDESS actors, one TESS talker) with 2 s of silence between them, so
    the timeline mixes speech and non-speech windows (16 kHz float32)."""
    gap = np.zeros(32000, dtype=np.float32)
    return np.concatenate([load_audio(ANGRY_CLIP), gap, load_audio(TESS_CLIP), gap, load_audio(HAPPY_CLIP)])


def model_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stream-ser-model")]


@pytest.mark.parametrize("chunk", [700, 16000, None], ids=["700", "16000", "whole"])
def test_two_threads_give_the_same_predictions(shipped_model, chunk) -> None:
    x = speech_with_pauses()
    chunks = [x] if chunk is None else [x[i : i + chunk] for i in range(0, x.size, chunk)]
    one = list(Engine(shipped_model, source="s").run(chunks, jobs=1))
    two = list(Engine(shipped_model, source="s").run(chunks, jobs=2))
    assert len(one) > 3 * PIPELINE_DEPTH  # more windows than are ever in flight
    assert {p.is_speech for p in one} == {True, False}
    assert two == one  # same windows, order, labels and probabilities, bit for bit
    assert not model_threads()


def test_two_threads_with_channels(shipped_model) -> None:
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    frames = np.stack([left, right], axis=1)
    blocks = [frames[i : i + 4321] for i in range(0, frames.shape[0], 4321)]

    def run(jobs: int):
        engines = ChannelEngines(shipped_model, source="s", channels=(1, 2), channel_names=("a", "b"))
        return list(engines.run(blocks, jobs=jobs))

    one, two = run(1), run(2)
    assert [p.channel_id for p in one[:4]] == ["a", "b", "a", "b"]
    assert two == one


@pytest.mark.parametrize("n", [0, 5])
def test_two_threads_with_speaker_normalisation_and_calibration(norm_model, n) -> None:  # noqa: F811
    """The running voice statistics are updated in window order on the feature thread."""
    x = speech_with_pauses()
    chunks = np.array_split(x, 23)
    one_engine, two_engine = Engine(norm_model, calibration_windows=n), Engine(norm_model, calibration_windows=n)
    one, two = list(one_engine.run(chunks, jobs=1)), list(two_engine.run(chunks, jobs=2))
    assert two == one and any(p.is_speech for p in one)
    assert two_engine.normaliser.windows == one_engine.normaliser.windows > n


def test_stopping_early_leaves_no_model_thread(shipped_model) -> None:
    x = speech_with_pauses()
    gen = Engine(shipped_model).run([x[i : i + 8000] for i in range(0, x.size, 8000)], jobs=2)
    first = [next(gen) for _ in range(3)]
    assert len(model_threads()) == 1
    gen.close()
    assert not model_threads()
    assert [p.end_s for p in first] == [0.5, 1.0, 1.5]


def test_jobs_must_be_one_or_two(shipped_model) -> None:
    with pytest.raises(ValueError, match="jobs must be 1"):
        list(Engine(shipped_model).run([np.zeros(100, np.float32)], jobs=3))
    with pytest.raises(ValueError, match="jobs must be 1"):
        api.analyse(np.zeros(16000, np.float32), 16000, model=shipped_model, jobs=0)


def test_api_analyse_with_two_threads(shipped_model, tmp_path) -> None:
    x = speech_with_pauses()
    path = tmp_path / "s.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    one = api.analyse(path, model=shipped_model)
    assert api.analyse(path, model=shipped_model, jobs=2) == one
    # an array at another rate: the same as a StreamScorer fed the whole array
    x44 = load_audio(ANGRY_CLIP, 44100)
    scorer = api.StreamScorer(shipped_model, 44100, source="array")
    want = tuple(scorer.push(x44)) + tuple(scorer.flush())
    assert api.analyse(x44, 44100, model=shipped_model, jobs=2).timeline == want
    stereo = np.stack(padded(ANGRY_CLIP, HAPPY_CLIP), axis=1)
    assert api.analyse_channels(stereo, 16000, model=shipped_model, jobs=2) == api.analyse_channels(
        stereo, 16000, model=shipped_model)


def test_cli_jobs(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, speech_with_pauses(), 16000)
    rows = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"t{jobs}.csv"
        assert main(["analyse", str(path), "-q", "--jobs", jobs, "--csv", str(out)]) == 0
        with open(out, newline="") as f:
            rows[jobs] = list(csv.DictReader(f))
    assert rows["1"] == rows["2"] and len(rows["1"]) > 10
    with pytest.raises(SystemExit) as exc:
        main(["analyse", str(path), "--jobs", "3"])
    assert exc.value.code == 2
    capsys.readouterr()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_jobs() == 1  # pinned to one CPU (taskset -c 0)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert default_jobs() == 2


def test_help_explains_jobs(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["analyse", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "-j N, --jobs N" in out and "identical results" in out and "taskset" in out
