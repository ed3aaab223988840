"""Causal speaker normalisation at run time (stream_ser.adaptation) against training's definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx

from stream_ser.adaptation import SpeakerNorm, SpeakerNormaliser
from stream_ser.engine import Engine, cut_window, window_ends
from stream_ser.features import FeatureConfig, window_features
from stream_ser.metadata import ModelMetadata, ModelMetadataError
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")


def real_windows(path: Path) -> list[np.ndarray]:
    x = load_audio(path, CFG.sample_rate_hz)
    feats = [window_features(cut_window(x, e, CFG.window_samples), CFG) for e in window_ends(x.size, CFG.hop_samples)]
    return [f for f in feats if f is not None]


def _causal_reference(x: np.ndarray, prior: np.ndarray, prior_windows: float) -> np.ndarray:
    """The definition written out with cumulative sums: window k (in visiting order) standardised per
    band by the mean and variance of ``prior_windows`` prior windows (the pooled training mean and
    mean square, ``prior`` ``(2, n_mels)``) and windows 0..k, over their frames."""
    x64 = x.astype(np.float64)
    n = prior_windows + np.arange(1, len(x) + 1)[:, None]
    mu = (prior_windows * prior[0] + np.cumsum(x64.mean(axis=2), axis=0)) / n
    var = (prior_windows * prior[1] + np.cumsum((x64**2).mean(axis=2), axis=0)) / n - mu**2
    return (x64 - mu[..., None]) / np.sqrt(np.maximum(var, 1e-6))[..., None]


def test_matches_training_causal_mode() -> None:
    """training.adaptation.normalise_speakers(mode="causal") and the runtime's SpeakerNormaliser
    (with the prior the exporter computes, SpeakerNorm.from_windows) both give the definition's
    numbers for a test speaker, visited clip by clip in training's seeded order."""
    from training.adaptation import normalise_speakers

    rng = np.random.default_rng(1)
    train = rng.normal(-45, 12, (30, CFG.n_mels, 20)).astype(np.float32)
    test = (rng.normal(-30, 6, (12, CFG.n_mels, 20)) + np.linspace(0, 10, CFG.n_mels)[:, None]).astype(np.float32)
    x = np.concatenate([train, test])
    speaker = np.array(["a"] * 30 + ["t"] * 12)
    clip = np.array([i // 3 for i in range(30)] + [100 + i // 4 for i in range(12)])  # 3 test clips of 4 windows
    order = np.array([100, 101, 102])[np.random.default_rng(5).permutation(3)]  # training's clip order
    visit = np.concatenate([np.flatnonzero(clip == c) for c in order])
    pooled = np.stack([train.astype(np.float64).mean(axis=(0, 2)), (train.astype(np.float64) ** 2).mean(axis=(0, 2))])
    want = np.empty((12, CFG.n_mels, 20))
    want[visit - 30] = _causal_reference(x[visit], pooled, 10.0)
    assert np.abs(want).max() > 1.0 and not np.allclose(want[0], want[-1], atol=0.1)  # not trivially standardised

    training = normalise_speakers(x, speaker, clip, frozenset({"t"}), "causal", seed=5, prior_windows=10.0)
    np.testing.assert_allclose(training[30:], want, atol=1e-5)
    norm = SpeakerNormaliser(SpeakerNorm.from_windows(train, prior_windows=10.0))
    got = {r - 30: norm(x[r]) for r in visit}
    assert norm.windows == 12
    np.testing.assert_allclose(np.stack([got[i] for i in range(12)]), want, atol=1e-5)
    # another seed visits the clips in another order, so the same window gets other statistics
    other = normalise_speakers(x, speaker, clip, frozenset({"t"}), "causal", seed=6, prior_windows=10.0)
    assert not np.allclose(other[30:], training[30:], atol=1e-3)


def test_voice_statistics_take_over_from_the_prior() -> None:
    windows = real_windows(ANGRY_CLIP) + real_windows(HAPPY_CLIP)
    prior = SpeakerNorm.from_windows(np.full((5, CFG.n_mels, CFG.n_frames), -60.0) + np.random.default_rng(0).normal(0, 3, (5, CFG.n_mels, CFG.n_frames)))
    norm = SpeakerNormaliser(prior)
    outs = [norm(w) for w in windows * 6]  # the same voice for a while
    late = np.stack(outs[-len(windows):])
    assert abs(float(late.mean())) < 0.3 and 0.6 < float(late.std()) < 1.4  # standardised by the voice itself
    assert abs(float(outs[0].mean())) > 1.0  # the first window was judged against the prior
    norm.reset()
    assert norm.windows == 0 and np.allclose(norm(windows[0]), outs[0])
    with pytest.raises(ValueError):
        norm(np.zeros((CFG.n_mels + 1, 10), np.float32))


def test_speaker_norm_validation_and_round_trip() -> None:
    norm = SpeakerNorm.from_windows(np.random.default_rng(0).normal(-40, 10, (8, CFG.n_mels, 30)), prior_windows=4)
    assert SpeakerNorm.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError):
        SpeakerNorm((0.0, 1.0), (0.0,))
    with pytest.raises(ValueError):
        SpeakerNorm((10.0,), (1.0,))  # variance 1 - 100 < 0
    with pytest.raises(ValueError):
        SpeakerNorm.from_dict({**norm.to_dict(), "mode": "oracle"})
    meta = ModelMetadata(LABELS, CFG, speaker_norm=norm)
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert ModelMetadata.from_json(ModelMetadata(LABELS, CFG).to_json()).speaker_norm is None
    short = SpeakerNorm(norm.prior_mean_db[:10], norm.prior_mean_square_db2[:10])
    with pytest.raises(ModelMetadataError, match="bands"):
        ModelMetadata.from_json(ModelMetadata(LABELS, CFG, speaker_norm=short).to_json())


def test_engine_applies_the_normaliser_per_voice(tmp_path: Path) -> None:
    norm = SpeakerNorm.from_windows(np.random.default_rng(0).normal(-50, 12, (8, CFG.n_mels, CFG.n_frames)))
    path = make_tiny_onnx(tmp_path / "norm.onnx", LABELS, metadata=ModelMetadata(LABELS, CFG, speaker_norm=norm).to_json())
    model = EmotionModel(path)
    assert model.metadata.speaker_norm == norm
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    preds = [p for p in Engine(model).run([x]) if p.is_speech]

    manual = SpeakerNormaliser(norm)
    want = [model.predict(manual(f)) for f in real_windows(ANGRY_CLIP)]
    np.testing.assert_allclose([p.probabilities for p in preds], want, atol=1e-6)
    # a shared normaliser carries the voice into the next engine; a fresh one starts from the prior
    shared = SpeakerNormaliser(norm)
    list(Engine(model, normaliser=shared).run([x]))
    again = [p.probabilities for p in Engine(model, normaliser=shared).run([x]) if p.is_speech]
    assert shared.windows == 2 * len(preds)
    assert not np.allclose(again, [p.probabilities for p in preds], atol=1e-4)
    plain = EmotionModel(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))
    assert Engine(plain).normaliser is None


def test_training_standardises_each_speakers_windows_with_its_own_statistics() -> None:
    """``training.train.speaker_normalised``: per speaker and mel band, the windows' frames have
    mean 0 and standard deviation 1 over all of that speaker's windows, whatever the speaker's
    own level and spread (two voices 20 dB apart here)."""
    from training.corpora import Utterance
    from training.train import speaker_normalised
    from training.windows import FeatureSet

    rng = np.random.default_rng(0)
    utts = tuple(Utterance(Path(f"{spk}-{i}.wav"), "ravdess", spk, "happy", "happy") for spk in ("a", "b") for i in range(3))
    clip_index = np.repeat(np.arange(6), 2).astype(np.int32)
    level = np.where(clip_index < 3, -60.0, -40.0)[:, None, None]
    log_mels = (level + rng.normal(0, 5, (12, 40, 149)) * np.linspace(0.5, 2, 40)[None, :, None]).astype(np.float32)
    n = np.full(6, 2)
    out = speaker_normalised(FeatureSet(utts, log_mels, clip_index, np.tile([3.0, 3.5], 6), n))
    for rows in (clip_index < 3, clip_index >= 3):
        x = out.log_mels[rows].astype(np.float64)
        assert np.allclose(x.mean(axis=(0, 2)), 0, atol=1e-4) and np.allclose(x.std(axis=(0, 2)), 1, atol=1e-3)
    assert not np.allclose(log_mels[clip_index < 3].mean(), log_mels[clip_index >= 3].mean(), atol=1)
