"""Properties of the feature recipe (stream_ser.features), on synthetic and real audio."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import ANGRY_CLIP, FIXTURES, HAPPY_CLIP, TESS_CLIP
from make_golden import golden_input

from stream_ser.engine import cut_window, window_ends
from stream_ser.features import (
    FeatureConfig,
    frame_levels_dbfs,
    is_speech,
    log_mel,
    preprocess,
    window_features,
)
from stream_ser.audio import load_audio

CFG = FeatureConfig()
CONFIGS = [CFG, dataclasses.replace(CFG, n_mels=64, hop_length=160), dataclasses.replace(CFG, window_s=2.0, n_fft=1024, win_length=1024)]


def tone(freq_hz: float, dur_s: float, level_dbfs: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(round(dur_s * sr))) / sr
    return (10 ** (level_dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)  # RMS = level


def embed(x: np.ndarray, at_s: float, total_s: float, sr: int = 16000) -> np.ndarray:
    out = np.zeros(int(round(total_s * sr)), np.float32)
    i = int(round(at_s * sr))
    out[i : i + x.size] = x
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "64mel-10ms", "2s-1024"])
def test_shape_dtype_and_determinism(cfg: FeatureConfig) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(cfg.window_samples) * 0.1).astype(np.float32)
    a = window_features(x, cfg)
    b = window_features(x.copy(), cfg)
    assert a is not None and a.shape == cfg.input_shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))
    assert a.min() >= 10 * np.log10(cfg.amin) - 1e-3


def test_default_input_shape_is_documented_value() -> None:
    assert CFG.window_samples == 48000 and CFG.hop_samples == 8000
    assert CFG.input_shape == (40, 149)


def test_tone_level_in_dbfs() -> None:
    levels = frame_levels_dbfs(tone(440, 1.0, -20.0), CFG)
    assert np.allclose(levels, -20.0, atol=0.2)


@pytest.mark.parametrize("level_dbfs,expected", [(-80.0, False), (-60.0, False), (-40.0, True), (-10.0, True)])
def test_speech_gate_is_absolute(level_dbfs: float, expected: bool) -> None:
    x = embed(tone(300, 1.0, level_dbfs), 1.0, 3.0)
    assert is_speech(x, CFG) is expected
    assert (preprocess(x, CFG) is not None) is expected


def test_gate_needs_minimum_duration() -> None:
    short = embed(tone(300, 0.1, -20.0), 1.0, 3.0)  # 0.1 s < gate_min_speech_s
    long = embed(tone(300, 0.5, -20.0), 1.0, 3.0)
    assert not is_speech(short, CFG)
    assert is_speech(long, CFG)


def test_digital_silence_and_room_noise_are_not_speech() -> None:
    rng = np.random.default_rng(0)
    assert window_features(np.zeros(CFG.window_samples, np.float32), CFG) is None
    noise = (rng.standard_normal(CFG.window_samples) * 10 ** (-65 / 20)).astype(np.float32)  # -65 dBFS room noise
    assert window_features(noise, CFG) is None


@pytest.mark.parametrize("dur_s,at_s", [(0.5, 0.2), (1.0, 1.0), (1.7, 1.2)])
def test_tone_in_silence_is_trimmed_to_its_length(dur_s: float, at_s: float) -> None:
    y = preprocess(embed(tone(500, dur_s, -25.0), at_s, 3.0), CFG)
    assert y is not None and y.shape == (CFG.window_samples,)
    nonzero = np.flatnonzero(np.abs(y) > 1e-6)
    kept_s = (nonzero[-1] - nonzero[0] + 1) / CFG.sample_rate_hz
    frame_s = CFG.level_frame_length / CFG.sample_rate_hz
    assert abs(kept_s - dur_s) <= frame_s  # trimmed to the tone, within one level frame
    assert nonzero[0] < CFG.level_frame_length  # content starts at the window start (frame granularity)
    assert np.all(np.abs(y[nonzero[-1] + 1 :]) <= 1e-6)  # (near-)silence, then zero padding at the end


def test_peak_normalisation_makes_gain_irrelevant() -> None:
    x = load_audio(ANGRY_CLIP)[: CFG.window_samples]
    y = preprocess(x, CFG)
    assert y is not None and np.isclose(np.abs(y).max(), 1.0, atol=1e-6)
    a, b = window_features(x, CFG), window_features(x * 0.3, CFG)
    assert a is not None and b is not None
    assert np.allclose(a, b, atol=1e-3)


def test_non_finite_samples_do_not_propagate() -> None:
    x = embed(tone(300, 1.0, -20.0), 0.5, 3.0)
    x[100:200] = np.nan
    x[5000] = np.inf
    f = window_features(x, CFG)
    assert f is not None and np.all(np.isfinite(f))


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        window_features(np.zeros((2, 100), np.float32), CFG)
    with pytest.raises(ValueError):
        log_mel(np.zeros(100, np.float32), CFG)


def test_short_and_long_inputs_are_padded_or_cropped() -> None:
    short = tone(300, 1.0, -20.0)
    longer = np.concatenate([tone(300, 2.0, -20.0), tone(600, 2.0, -20.0)])
    for x in (short, longer):
        y = preprocess(x, CFG)
        assert y is not None and y.shape == (CFG.window_samples,)


def test_config_round_trip_and_rejection() -> None:
    assert FeatureConfig.from_dict(CFG.to_dict()) == CFG
    bad = CFG.to_dict() | {"unknown_field": 1}
    with pytest.raises(ValueError, match="unknown"):
        FeatureConfig.from_dict(bad)
    missing = CFG.to_dict()
    del missing["n_mels"]
    with pytest.raises(ValueError, match="missing"):
        FeatureConfig.from_dict(missing)
    with pytest.raises(ValueError):
        FeatureConfig(fmax_hz=9000.0)


@pytest.mark.parametrize("clip", [ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP], ids=lambda p: p.stem)
def test_real_speech_windows(clip) -> None:
    x = load_audio(clip, CFG.sample_rate_hz)
    feats = [window_features(cut_window(x, end, CFG.window_samples), CFG) for end in window_ends(x.size, CFG.hop_samples)]
    speech = [f for f in feats if f is not None]
    assert len(speech) >= len(feats) // 2  # these are speech clips
    for f in speech:
        assert f.shape == CFG.input_shape and np.all(np.isfinite(f))
        assert -100.5 <= f.min() and f.max() <= 40.0
        assert f.max() > -20.0  # normalised speech has energy near full scale


def test_golden_log_mel() -> None:
    """The recipe's output for a committed real window must not drift (librosa/numpy upgrades)."""
    window, cfg = golden_input()
    golden = np.load(FIXTURES / "golden_logmel.npy")
    feats = window_features(window, cfg)
    assert feats is not None and feats.shape == golden.shape
    np.testing.assert_allclose(feats, golden, atol=0.02, rtol=0)


# --- fuzzing (hypothesis) --------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(
    x=arrays(
        np.float32,
        st.integers(0, CFG.window_samples + 4000),
        elements=st.one_of(
            st.floats(-1.0, 1.0, width=32),
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-6, -1e-6, 1.0, -1.0]),
        ),
    ),
    gain=st.sampled_from([0.0, 1e-4, 0.01, 0.5, 1.0, 30.0]),
)
def test_fuzz_recipe_never_raises_and_stays_finite(x: np.ndarray, gain: float) -> None:
    y = (x * np.float32(gain)) if gain else x
    with np.errstate(all="ignore"):
        pre = preprocess(y, CFG)
        feats = window_features(y, CFG)
    assert (pre is None) == (feats is None) == (not is_speech(y, CFG))
    if feats is not None:
        assert pre.shape == (CFG.window_samples,) and np.all(np.isfinite(pre))
        assert np.isclose(np.abs(pre).max(), 1.0, atol=1e-5)
        assert feats.shape == CFG.input_shape and feats.dtype == np.float32
        assert np.all(np.isfinite(feats))


@pytest.mark.parametrize("dc", [0.01, -0.2, 0.5])
def test_dc_offset_is_removed(dc: float) -> None:
    """A microphone's DC offset neither passes the gate on silence nor changes the features."""
    rng = np.random.default_rng(2)
    silence = (rng.standard_normal(CFG.window_samples) * 10 ** (-70 / 20)).astype(np.float32)
    assert not is_speech(silence + np.float32(dc), CFG)
    assert window_features(silence + np.float32(dc), CFG) is None
    x = load_audio(ANGRY_CLIP)[: CFG.window_samples] * np.float32(0.4)
    a, b = window_features(x, CFG), window_features(x + np.float32(dc), CFG)
    assert a is not None and b is not None
    np.testing.assert_allclose(a, b, atol=0.05)


def test_scoring_runs_numpy_blas_on_one_thread(monkeypatch) -> None:
    """`analyse` and the API score with one BLAS thread (the mel product is too small to share; a
    second OpenBLAS thread waiting for a busy core doubled analyse's time) and restore it after."""
    from threadpoolctl import threadpool_info

    import stream_ser.features as features
    from stream_ser import api
    from stream_ser.cli import main

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    seen: list[list[int]] = []
    real = features._log_mel_checked  # what window_features calls per speech window

    def spy(window, config, kept=None):
        seen.append(blas_threads())
        return real(window, config, kept)

    monkeypatch.setattr(features, "_log_mel_checked", spy)
    assert main(["analyse", "-q", str(ANGRY_CLIP)]) == 0
    api.analyse(ANGRY_CLIP)
    assert seen and all(t == [1] * len(t) and t for t in seen)
    assert blas_threads() == before


@pytest.mark.parametrize("speech_s", [0.4, 1.3, 2.2, 3.0])
def test_frames_past_the_trimmed_audio_skip_the_fft_bit_for_bit(speech_s: float) -> None:
    """A window whose speech stops early (a pause, the end of a call) is trimmed and padded
    with zeros; window_features skips the FFT of the frames that hold only that padding. The
    log-mel must equal, bit for bit, the one computed with every frame transformed."""
    import stream_ser.features as features

    for cfg in (FeatureConfig(), FeatureConfig(fmax_hz=4000.0)):
        speech = load_audio(ANGRY_CLIP)
        start = int(np.argmax(np.abs(speech) > 0.05))  # where the actor starts speaking
        n = int(speech_s * cfg.sample_rate_hz)
        window = np.zeros(cfg.window_samples, np.float32)
        window[:n] = speech[start : start + n]
        window += np.random.default_rng(0).normal(0, 1e-4, window.size).astype(np.float32)  # room noise
        fast = window_features(window, cfg)
        padded = preprocess(window, cfg)
        kept = int(np.flatnonzero(padded)[-1]) + 1
        live = -(-kept // cfg.hop_length)
        if speech_s < 2.9:
            assert live < cfg.n_frames - 10  # the shortcut is taken
        full = features._log_mel_checked(padded, cfg)  # every frame through the FFT
        assert fast is not None and np.array_equal(fast, full)
        assert np.all(full[:, live:] == full.min())  # the skipped frames are at the floor
