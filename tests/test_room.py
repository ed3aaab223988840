"""Room and line augmentation (training/room.py) and the transfer architecture (training/transfer.py).

Real properties on real clips: the chain keeps length and range and is reproducible from its
seed, a longer target reverberation time gives a longer measured decay, other talkers are always
other speakers, and the fine-tuned encoder keeps the runtime's input and output contract.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from stream_ser.features import FeatureConfig
from stream_ser.audio import load_audio

from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP


def _need(module: str):
    try:
        return pytest.importorskip(module) if not os.environ.get("STREAM_SER_REQUIRE_TRAIN") else __import__(module)
    except ImportError as exc:  # pragma: no cover - CI installs the train extra
        pytest.fail(f"training extra not installed ({exc}) but STREAM_SER_REQUIRE_TRAIN is set")


def _rt60_s(impulse_response: np.ndarray, sample_rate_hz: int = 16000) -> float:
    """T20-based RT60 of an impulse response (Schroeder backward integration, ISO 3382)."""
    e = np.cumsum(impulse_response[::-1].astype(np.float64) ** 2)[::-1]
    db = 10 * np.log10(e / e[0] + 1e-12)
    return 3.0 * (np.argmax(db < -25) - np.argmax(db < -5)) / sample_rate_hz


def test_test_rooms_have_the_target_reverberation_time_and_repeat_exactly():
    _need("pyroomacoustics")
    from training.room import reverberate, test_room_rir

    impulse = np.zeros(32000, np.float32)
    impulse[0] = 1.0
    for seed in range(2):
        for target in (0.3, 0.6):
            measured = _rt60_s(test_room_rir(seed, target))
            assert abs(measured - target) < 0.25 * target, (seed, target, measured)
        # the same room on every call (no random tail): a rerun reproduces every figure
        test_room_rir.cache_clear()
        np.testing.assert_array_equal(reverberate(impulse, seed, rt60_s=0.3), reverberate(impulse, seed, rt60_s=0.3))


def test_reverberated_speech_keeps_length_and_peak_and_is_smeared():
    _need("pyroomacoustics")
    from training.room import reverberate

    x = load_audio(ANGRY_CLIP, 16000)
    y = reverberate(x, seed=0, rt60_s=0.6)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)  # the level is kept
    # reverberation carries energy into the dry clip's quiet frames (gaps, the end of the clip)
    def frame_energy(s):
        frames = s[: s.size // 400 * 400].reshape(-1, 400).astype(np.float64)
        return np.mean(frames**2, axis=1)

    dry, wet = frame_energy(x), frame_energy(y)
    quiet = 10 * np.log10(dry + 1e-12) < 10 * np.log10(dry.max()) - 30
    assert quiet.sum() > 10
    assert wet[quiet].sum() / wet.sum() > 3 * dry[quiet].sum() / dry.sum()


def test_augmented_copy_is_cached_repeatable_and_keeps_the_windows(tmp_path):
    _need("audiomentations")
    from training.corpora import discover
    from training.room import build_room_features
    from training.windows import build_features

    # a corpus-shaped folder of the three real fixture clips (two RAVDESS actors, one TESS voice)
    ravdess = tmp_path / "ravdess" / "Actor_21"
    ravdess.mkdir(parents=True)
    tess = tmp_path / "tess" / "YAF_happy"
    tess.mkdir(parents=True)
    for clip, folder in ((ANGRY_CLIP, ravdess), (HAPPY_CLIP, tmp_path / "ravdess" / "Actor_22"), (TESS_CLIP, tess)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / clip.name).write_bytes(clip.read_bytes())
    utts = [u for u in discover(tmp_path) if u.label is not None]
    assert len({u.speaker for u in utts}) == 3
    config = FeatureConfig(fmax_hz=4000.0)
    a = build_room_features(utts, config, copy=0, cache_dir=None, workers=1)
    b = build_room_features(utts, config, copy=0, cache_dir=tmp_path / "cache", workers=1)
    c = build_room_features(utts, config, copy=0, cache_dir=tmp_path / "cache", workers=1)  # from the cache
    clean = build_features(utts, config, cache_dir=None, workers=1)
    np.testing.assert_array_equal(b.log_mels, c.log_mels)  # the cache gives back exactly what was built
    # a rebuild draws the same conditions; only the ray tracer's late tail (which pyroomacoustics
    # cannot seed) differs, by a small fraction of what the conditions change (measured: 0.1 dB
    # mean against 19 dB)
    assert a.log_mels.shape == b.log_mels.shape
    np.testing.assert_array_equal(a.windows_per_clip, b.windows_per_clip)
    a32, b32 = a.log_mels.astype(np.float32), b.log_mels.astype(np.float32)
    assert a.log_mels.shape[1:] == config.input_shape
    # the room keeps each clip's length, so each clip keeps about its number of windows
    assert np.all(np.abs(a.windows_per_clip - clean.windows_per_clip) <= 1)
    n = min(len(a32), len(clean.log_mels))
    change = np.abs(a32[:n] - clean.log_mels[:n].astype(np.float32)).mean()
    assert change > 3.0  # the copy is not the clean clip (dB)
    assert np.abs(a32 - b32).mean() < 0.02 * change
    other = build_room_features(utts, config, copy=1, cache_dir=None, workers=1)
    assert not np.array_equal(other.log_mels, a.log_mels)


def test_mn04_ft_takes_the_runtime_window_and_gives_probabilities():
    _need("tensorflow")
    from training.efficientat import default_weights_path
    from training.transfer import mn04_ft

    if not default_weights_path().is_file():
        pytest.skip(f"pretrained weights not found at {default_weights_path()}")
    config = FeatureConfig(fmax_hz=4000.0)
    model = mn04_ft(config.input_shape, 7, norm_mean=-40.0, norm_var=150.0)
    x = np.random.default_rng(0).normal(-40, 12, (2, *config.input_shape, 1)).astype(np.float32)
    p = model.predict(x, verbose=0)
    assert p.shape == (2, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # the encoder is the pretrained one: its first convolution holds the AudioSet weights
    stem = np.load(default_weights_path())["features.0.0.weight"]
    keras_stem = next(w for w in model.weights if "features.0.0" in w.path and "kernel" in w.path)
    np.testing.assert_allclose(np.transpose(np.asarray(keras_stem), (3, 2, 0, 1)), stem, rtol=1e-6)
