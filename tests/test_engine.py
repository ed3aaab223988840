"""The engine: chunk-size invariance, window timing, live path parity, on real clips."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

from stream_ser.engine import Engine, cut_window, summarise, window_ends
from stream_ser.features import window_features
from stream_ser.audio import FileSource, load_audio
from stream_ser.sources import MicrophoneSource


def run_in_chunks(model, x: np.ndarray, chunk: int, hop_s: float | None = None, adapt: str = "auto"):
    engine = Engine(model, hop_s=hop_s, source="clip", adapt=adapt)
    preds = []
    for i in range(0, x.size, chunk):
        preds += engine.push(x[i : i + chunk])
    return preds + engine.flush()


@pytest.mark.parametrize("clip", [ANGRY_CLIP, TESS_CLIP], ids=lambda p: p.stem)
def test_identical_predictions_for_any_chunk_size(shipped_model, clip) -> None:
    x = load_audio(clip)
    runs = {chunk: run_in_chunks(shipped_model, x, chunk) for chunk in (160, 1024, 4800, x.size)}
    reference = runs[x.size]
    assert any(p.is_speech for p in reference)
    for chunk, preds in runs.items():
        assert preds == reference, f"chunk size {chunk} changed the predictions"


def test_window_timing_follows_the_sample_clock(shipped_model) -> None:
    x = load_audio(ANGRY_CLIP)
    cfg = shipped_model.feature_config
    preds = run_in_chunks(shipped_model, x, 1000)
    ends = window_ends(x.size, cfg.hop_samples)
    assert [round(p.end_s * cfg.sample_rate_hz) for p in preds] == ends
    assert ends[-1] == x.size  # the final partial hop is scored
    for p in preds:
        assert p.start_s == pytest.approx(max(0.0, p.end_s - cfg.window_s))
        if p.is_speech:
            assert p.label in shipped_model.labels
            assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-4)
            assert p.confidence == max(p.probabilities)
        else:
            assert p.label is None and p.confidence is None and p.probabilities is None


def test_engine_windows_equal_training_windows(shipped_model) -> None:
    """What the engine scores at a boundary is exactly cut_window + the recipe (training's path)."""
    x = load_audio(HAPPY_CLIP)
    cfg = shipped_model.feature_config
    preds = run_in_chunks(shipped_model, x, 777, adapt="none")  # the model's own probabilities
    for p, end in zip(preds, window_ends(x.size, cfg.hop_samples)):
        feats = window_features(cut_window(x, end, cfg.window_samples), cfg)
        assert (feats is not None) == p.is_speech
        if feats is not None:
            assert np.allclose(shipped_model.predict(feats), p.probabilities, atol=1e-6)


def test_other_hops(shipped_model) -> None:
    x = load_audio(TESS_CLIP)
    for hop in (0.25, 1.0, 3.0):
        preds = run_in_chunks(shipped_model, x, 1024, hop_s=hop)
        assert len(preds) == len(window_ends(x.size, int(round(hop * 16000))))
    with pytest.raises(ValueError):
        Engine(shipped_model, hop_s=3.5)


def test_silence_gives_no_labels(shipped_model) -> None:
    preds = run_in_chunks(shipped_model, np.zeros(5 * 16000, np.float32), 4800)
    assert len(preds) == 10 and not any(p.is_speech for p in preds)
    assert summarise(preds, "silence", 5.0, shipped_model.labels).label is None


def test_replayed_live_path_equals_file_analysis(shipped_model) -> None:
    """listen --input (capture callback -> ring buffer -> consumer) == analyse (file decode)."""
    source = FileSource(ANGRY_CLIP)
    want = list(Engine(shipped_model, source="x").run(source.chunks()))
    mic = MicrophoneSource(replay=ANGRY_CLIP, realtime=False)
    engine = Engine(shipped_model, source="x")
    mic.start()
    try:
        got = list(engine.run(mic.chunks()))
    finally:
        mic.close()
    assert got == want
    assert mic.overflows == 0 and mic.dropped_frames == 0


def test_resampled_and_stereo_input_is_close(shipped_model, tmp_path) -> None:
    """A 44.1 kHz stereo copy of a clip gives nearly the same clip-level probabilities."""
    import soundfile as sf
    import soxr

    x = load_audio(ANGRY_CLIP)
    y = soxr.resample(x, 16000, 44100)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([y, y], axis=1), 44100, subtype="PCM_24")
    a = summarise(Engine(shipped_model).run(FileSource(ANGRY_CLIP).chunks()), "a", 0, shipped_model.labels)
    b = summarise(Engine(shipped_model).run(FileSource(path).chunks()), "b", 0, shipped_model.labels)
    assert a.label == b.label
    assert np.allclose(a.mean_probabilities, b.mean_probabilities, atol=0.05)
