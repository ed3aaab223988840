"""The Python API (``stream_ser.api``, re-exported by ``stream_ser``) on real clips, and the
Python examples of ``docs/api.md``, which are executed here as written (the README's own
example is checked, output and all, by ``tests/test_readme.py``)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

import stream_ser
from stream_ser.engine import window_ends
from stream_ser.sinks import csv_row
from stream_ser.audio import RESAMPLER_QUALITY, audio_info, load_audio

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture(scope="module")
def model():
    return stream_ser.load_model()


def chunked(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def renamed(preds, source: str):
    return [dataclasses.replace(p, source=source) for p in preds]


def test_import_is_cheap_and_names_are_lazy() -> None:
    code = (
        "import sys, stream_ser\n"
        "heavy = [m for m in ('numpy', 'onnxruntime', 'librosa', 'soundfile') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'analyse' in dir(stream_ser) and 'analyse' in stream_ser.__all__\n"
        "f = stream_ser.analyse\n"
        "assert 'numpy' in sys.modules and f is sys.modules['stream_ser.api'].analyse\n"
        "try:\n    stream_ser.nope\nexcept AttributeError as e:\n    assert 'nope' in str(e)\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr


def test_public_names() -> None:
    for name in stream_ser.__all__:
        assert getattr(stream_ser, name) is not None
    assert stream_ser.analyze is stream_ser.analyse
    assert stream_ser.summarize_call is stream_ser.summarise_call
    assert stream_ser.Prediction is stream_ser.types.Prediction


def test_load_model(model, tiny_model_path, tmp_path) -> None:
    assert model.labels and model.feature_config.sample_rate_hz == 16000
    tiny = stream_ser.load_model(tiny_model_path)
    assert tiny.labels == ("neutral", "happy", "sad")
    with pytest.raises(stream_ser.ModelError, match="not found"):
        stream_ser.load_model(tmp_path / "missing.onnx")


def test_analyse_file_matches_the_cli_timeline(model, tmp_path) -> None:
    from stream_ser.cli import main

    result = stream_ser.analyse(ANGRY_CLIP, model=model)
    assert isinstance(result, stream_ser.Analysis)
    n = len(window_ends(round(audio_info(ANGRY_CLIP).duration_s * 16000), 8000))
    assert len(result.timeline) == result.clip.n_windows == n
    assert result.clip.source == str(ANGRY_CLIP) and result.clip.duration_s == pytest.approx(4.37, abs=0.01)
    assert result.label == result.clip.label in model.labels
    assert result.confidence == result.clip.confidence
    probs = result.clip.probabilities_by_label()
    assert list(probs) == list(model.labels) and max(probs.values()) == result.clip.confidence
    out = tmp_path / "t.csv"
    assert main(["analyse", str(ANGRY_CLIP), "--csv", str(out), "-q"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert [",".join(csv_row(p)) for p in result.timeline] == rows


def test_score_recording_is_the_path_behind_analyse(model, stereo_call) -> None:
    """``score_recording`` yields the predictions ``analyse_channels`` keeps, in stream order, and
    ends with the same clips; its summary is ``summarise_call`` of those predictions."""
    scored = stream_ser.score_recording(stereo_call, channels="all", channel_names=("agent", "customer"), model=model)
    assert scored.plan.ids == ("agent", "customer") and scored.source == str(stereo_call)
    assert scored.duration_s == 0.0 and scored.clips[0].n_windows == 0  # nothing read before iterating
    preds = list(scored)
    assert [p.channel_id for p in preds[:4]] == ["agent", "customer", "agent", "customer"]
    ref = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"], model=model)
    assert tuple(r.clip for r in ref) == scored.clips
    assert [p for p in preds if p.channel_name == "customer"] == list(ref[1].timeline)
    assert scored.duration_s == ref[0].clip.duration_s == pytest.approx(sf.info(stereo_call).duration, abs=1e-3)
    want = stream_ser.summarise_call(preds, str(stereo_call), model.labels, scored.hop_s, (1, 2), ("agent", "customer"))
    assert scored.summary.to_dict() == want.to_dict()
    assert list(scored) == []  # one pass: the iterator is spent


def test_score_recording_checks_before_scoring_and_stops_on_request(model, stereo_call, tmp_path) -> None:
    """File and channel errors come when the recording is opened, before any prediction; ``stop``
    ends the scoring after the block it was asked at, with the last partial hop scored."""
    with pytest.raises(stream_ser.AudioSourceError, match="no such file"):
        stream_ser.score_recording(tmp_path / "missing.wav", model=model)
    with pytest.raises(stream_ser.ChannelPlanError, match=r"call.wav: 1 channel name\(s\) given \(a\) for 2"):
        stream_ser.score_recording(stereo_call, channels="all", channel_names=["a"], model=model)
    with pytest.raises(ValueError, match="jobs"):
        stream_ser.score_recording(stereo_call, model=model, jobs=3)
    blocks = []
    scored = stream_ser.score_recording(stereo_call, model=model, stop=lambda: blocks.append(1) or len(blocks) >= 2)
    preds = list(scored)
    full = stream_ser.analyse(stereo_call, model=model)
    assert len(blocks) == 2 and 0 < scored.duration_s < full.clip.duration_s
    assert preds == list(full.timeline[: len(preds) - 1]) + [preds[-1]]  # the same hops, then the cut
    assert preds[-1].end_s == pytest.approx(scored.duration_s)


def test_results_are_frozen(model) -> None:
    result = stream_ser.analyse(TESS_CLIP, model=model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.clip = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.timeline[0].label = "x"  # type: ignore[misc]
    assert isinstance(result.timeline, tuple)


def test_analyse_array_equals_file(model) -> None:
    x = load_audio(HAPPY_CLIP)
    from_file = stream_ser.analyse(HAPPY_CLIP, model=model)
    from_array = stream_ser.analyse(x, 16000, model=model, source=str(HAPPY_CLIP))
    assert from_array == from_file
    assert stream_ser.analyse(x, 16000, model=model).clip.source == "array"


@pytest.mark.parametrize("dtype", ["int16", "float64", "stereo"])
def test_array_dtypes_and_channels(model, dtype) -> None:
    x = load_audio(TESS_CLIP)  # 16-bit FLAC: float = int16 / 32768 exactly
    ref = stream_ser.analyse(x, 16000, model=model)
    if dtype == "int16":
        y = np.round(x * 32768).astype(np.int16)
    elif dtype == "float64":
        y = x.astype(np.float64)
    else:
        y = np.stack([x, x], axis=1)  # (n, 2), identical channels average to the same signal
    assert stream_ser.analyse(y, 16000, model=model) == ref


def test_other_sample_rates_are_resampled(model) -> None:
    x = load_audio(ANGRY_CLIP)
    ref = stream_ser.analyse(x, 16000, model=model)
    y = soxr.resample(x, 16000, 44100).astype(np.float32)
    res = stream_ser.analyse(y, 44100, model=model)
    assert res.clip.duration_s == pytest.approx(ref.clip.duration_s, abs=1e-3)
    assert [p.end_s for p in res.timeline] == [p.end_s for p in ref.timeline]
    assert [p.is_speech for p in res.timeline] == [p.is_speech for p in ref.timeline]
    # exactly what the engine gives for the same audio resampled in one go at the runtime's quality
    once = soxr.resample(y, 44100, 16000, quality=RESAMPLER_QUALITY).astype(np.float32)
    same = stream_ser.analyse(once, 16000, model=model)
    assert [p.is_speech for p in same.timeline] == [p.is_speech for p in res.timeline]
    np.testing.assert_allclose([p.probabilities for p in same.timeline if p.is_speech],
                               [p.probabilities for p in res.timeline if p.is_speech], atol=1e-5)
    # and close to the native 16 kHz clip: soxr LQ rolls off above 6 kHz (-3 dB at 6.5 kHz), which
    # moves this clip's window probabilities by about 0.03
    a = np.array([p.probabilities for p in res.timeline if p.is_speech])
    b = np.array([p.probabilities for p in ref.timeline if p.is_speech])
    assert np.max(np.abs(a - b)) < 0.1 and res.clip.label == ref.clip.label


@pytest.mark.parametrize("rate,sizes", [(16000, (160, 1024, 4800)), (44100, (441, 4096, 44100))])
def test_stream_is_chunk_size_invariant(model, rate, sizes) -> None:
    x = load_audio(ANGRY_CLIP, rate)
    ref = list(stream_ser.analyse(x, rate, model=model, source="stream").timeline)
    for size in sizes:
        assert list(stream_ser.stream(chunked(x, size), rate, model=model)) == ref


def test_stream_scorer_push_and_flush(model) -> None:
    x = load_audio(HAPPY_CLIP, 48000)
    scorer = stream_ser.StreamScorer(model, 48000, source="cb", channel=1)
    assert scorer.hop_s == 0.5 and scorer.labels == model.labels
    got = []
    for chunk in chunked(x, 960):  # 20 ms callbacks at 48 kHz
        got += scorer.push(chunk)
    got += scorer.flush()
    assert scorer.flush() == []
    assert scorer.elapsed_s == pytest.approx(audio_info(HAPPY_CLIP).duration_s, abs=1e-3)
    assert {p.source for p in got} == {"cb"} and {p.channel for p in got} == {1}
    assert [p.end_s for p in got] == [e / 16000 for e in window_ends(len(load_audio(HAPPY_CLIP)), 8000)]
    with pytest.raises(RuntimeError, match="flushed"):
        scorer.push(x[:10])


def test_hop_option(model) -> None:
    res = stream_ser.analyse(TESS_CLIP, model=model, hop_s=0.25)
    assert [p.end_s for p in res.timeline][:3] == [0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="hop"):
        stream_ser.analyse(TESS_CLIP, model=model, hop_s=10.0)


def test_stream_file_paths_agree(model) -> None:
    ref = stream_ser.analyse(TESS_CLIP, model=model).timeline
    assert tuple(stream_ser.stream_file(TESS_CLIP, model=model)) == ref
    live = tuple(stream_ser.stream_file(TESS_CLIP, model=model, realtime=True))  # paced: ~1.9 s
    assert live == ref


def test_silence_gets_no_label(model) -> None:
    res = stream_ser.analyse(np.zeros(3 * 16000, dtype=np.float32), 16000, model=model)
    assert res.label is None and res.confidence is None and res.clip.probabilities_by_label() is None
    assert res.timeline and not any(p.is_speech for p in res.timeline)
    assert all(p.probabilities_by_label() is None for p in res.timeline)


def test_bad_inputs_are_clear_errors(model, tmp_path) -> None:
    x = load_audio(TESS_CLIP)
    with pytest.raises(TypeError, match="sample_rate_hz is required"):
        stream_ser.analyse(x, model=model)
    with pytest.raises(TypeError, match="only for arrays"):
        stream_ser.analyse(TESS_CLIP, 16000, model=model)
    with pytest.raises(ValueError, match="shape"):
        stream_ser.analyse(x.reshape(1, 1, -1), 16000, model=model)
    with pytest.raises(ValueError, match="dtype"):
        stream_ser.analyse(x.astype(np.complex64), 16000, model=model)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        stream_ser.StreamScorer(model, 0)
    with pytest.raises(stream_ser.AudioSourceError, match="no such file"):
        stream_ser.analyse(tmp_path / "missing.wav", model=model)
    with pytest.raises(stream_ser.AudioSourceError, match="no such file"):
        next(stream_ser.stream_file(tmp_path / "missing.wav", model=model))


def test_microphone_errors_are_audio_source_errors(model) -> None:
    # Without a matching device (or without PortAudio) this is a clear AudioSourceError.
    with pytest.raises(stream_ser.AudioSourceError):
        next(stream_ser.stream_microphone("no such device 7f3a", model=model))


# --------------------------------------------------------------------------------------------
# The Python examples of docs/api.md, executed as written (with the fixture clip as clip.flac)

MIC_MARK = "# needs a microphone"


def doc_python_blocks() -> list[str]:
    text = API_DOC.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_api_doc_has_python_examples() -> None:
    blocks = doc_python_blocks()
    assert len(blocks) >= 4
    assert any("stream_ser.analyse" in b for b in blocks) and any("stream_ser.stream(" in b for b in blocks)


def test_api_doc_python_examples_run(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    os.symlink(ANGRY_CLIP, tmp_path / "clip.flac")
    namespace: dict[str, object] = {"__name__": "__api_doc__"}
    ran = 0
    for i, block in enumerate(doc_python_blocks()):
        code = compile(block, f"docs/api.md python block {i + 1}", "exec")
        if block.lstrip().startswith(MIC_MARK):
            continue  # compiled (syntax checked) but not run: no microphone here
        exec(code, namespace)
        ran += 1
    assert ran >= 3
    out = capsys.readouterr().out
    assert out.strip(), "the examples print their results"


def test_lazy_names_match_the_api_module() -> None:
    """``stream_ser`` serves exactly ``stream_ser.api.__all__`` (the lazy list is kept by hand)."""
    import stream_ser
    import stream_ser.api

    assert sorted(stream_ser._API_NAMES) == sorted(stream_ser.api.__all__)
