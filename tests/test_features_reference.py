"""The runtime's numpy feature recipe against librosa, the reference it replaces.

``stream_ser.features`` computes frame RMS, the silence trim, the STFT and the dB scale with
numpy so that the live tool need not import librosa (about 1 s and 140 MB). These tests state
the contract: on real speech and on fuzzed input, the gate and trim decisions are the ones
librosa's functions make, and the log-mel equals librosa's to within float32 rounding.
"""

from __future__ import annotations

import dataclasses
import random

import librosa
import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stream_ser import features as F
from stream_ser.engine import cut_window, window_ends
from stream_ser.audio import load_audio

CFG = F.FeatureConfig()
CONFIGS = [
    CFG,
    dataclasses.replace(CFG, n_mels=64, hop_length=160),
    dataclasses.replace(CFG, window_s=2.0, n_fft=1024, win_length=1024, center=True),
    dataclasses.replace(CFG, fmax_hz=4000.0),  # the recipe of `train --fmax 4000`
    # an odd FFT length, centred: librosa pads n_fft // 2 each side, one frame fewer than 1 + 48000 / 320
    dataclasses.replace(CFG, n_fft=401, win_length=401, center=True),
]
CONFIG_IDS = ["default", "64mels-hop160", "2s-nfft1024-centred", "fmax4000", "nfft401-centred"]
#: log-mel agreement, dB: float32 rounding of the power (librosa keeps complex64, numpy float64)
LOG_MEL_ATOL_DB = 1e-3


def ref_levels(x: np.ndarray, cfg: F.FeatureConfig) -> np.ndarray:
    rms = librosa.feature.rms(y=x, frame_length=cfg.level_frame_length, hop_length=cfg.level_hop_length, center=False)[0]
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def ref_preprocess(audio: np.ndarray, cfg: F.FeatureConfig) -> np.ndarray | None:
    """The recipe as written with librosa (stream-ser 0.1's implementation)."""
    x = F._conditioned(audio, cfg)
    if x.size < cfg.level_frame_length:
        return None
    loud = np.count_nonzero(ref_levels(x, cfg) >= cfg.gate_dbfs) * cfg.level_hop_length / cfg.sample_rate_hz
    if loud < cfg.gate_min_speech_s:
        return None
    x = x * np.float32(10.0 ** (cfg.peak_dbfs / 20.0) / float(np.max(np.abs(x))))
    trimmed, _ = librosa.effects.trim(
        x, top_db=-cfg.trim_dbfs, ref=1.0, frame_length=cfg.level_frame_length, hop_length=cfg.level_hop_length
    )
    out = np.zeros(cfg.window_samples, dtype=np.float32)
    n = min(trimmed.size, cfg.window_samples)
    out[:n] = trimmed[:n]
    return out


def ref_log_mel(window: np.ndarray, cfg: F.FeatureConfig) -> np.ndarray:
    spec = librosa.stft(
        window, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=cfg.window,
        center=cfg.center, pad_mode="constant",
    )
    mel = F.librosa_mel_basis(cfg) @ (np.abs(spec) ** cfg.power)
    return librosa.power_to_db(mel, ref=1.0, amin=cfg.amin, top_db=None).astype(np.float32)


def assert_same_recipe(audio: np.ndarray, cfg: F.FeatureConfig) -> bool:
    """Same gate decision, same preprocessed window, same log-mel; returns whether it was speech."""
    got, want = F.preprocess(audio, cfg), ref_preprocess(audio, cfg)
    assert (got is None) == (want is None)
    if got is None:
        return False
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(F.log_mel(got, cfg), ref_log_mel(want, cfg), atol=LOG_MEL_ATOL_DB, rtol=0)
    return True


def stream_windows(path, cfg: F.FeatureConfig) -> list[np.ndarray]:
    x = load_audio(path, cfg.sample_rate_hz)
    return [cut_window(x, e, cfg.window_samples) for e in window_ends(x.size, cfg.hop_samples)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_fixture_windows_match_librosa(cfg: F.FeatureConfig) -> None:
    speech = [assert_same_recipe(w, cfg) for clip in (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP) for w in stream_windows(clip, cfg)]
    assert sum(speech) >= 10 and not all(speech)  # both gate outcomes occur (the first windows are short)


def test_corpus_windows_match_librosa(data_dir) -> None:
    """80 random RAVDESS and TESS clips, every window the engine scores."""
    clips = sorted(data_dir.rglob("*.flac"))
    random.Random(6).shuffle(clips)
    n_speech = sum(assert_same_recipe(w, CFG) for clip in clips[:80] for w in stream_windows(clip, CFG))
    assert n_speech >= 200


def test_levels_and_trim_bounds_match_librosa() -> None:
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    np.testing.assert_allclose(F.frame_levels_dbfs(x, CFG), ref_levels(x, CFG), atol=1e-3)
    for gain in (1.0, 0.05, 0.003):
        y = x * np.float32(gain)
        _, (start, end) = librosa.effects.trim(
            y, top_db=-CFG.trim_dbfs, ref=1.0, frame_length=CFG.level_frame_length, hop_length=CFG.level_hop_length
        )
        assert F.trim_bounds(y, CFG) == (start, end)
    assert F.trim_bounds(np.zeros(16000, np.float32), CFG) == (0, 0)


def test_mel_table_is_librosas_filterbank(shipped_model) -> None:
    """Every filterbank shipped in mel_basis.npz is librosa.filters.mel's, bit for bit."""
    with np.load(F.MEL_TABLE) as table:
        # neither the default recipe nor the shipped model's (from its metadata) needs librosa
        assert {F.mel_key(CFG), F.mel_key(shipped_model.feature_config)} <= set(table.files)
        for key in table.files:
            cfg = next((c for c in [*CONFIGS, shipped_model.feature_config] if F.mel_key(c) == key), CFG)
            assert F.mel_key(cfg) == key
            assert np.array_equal(table[key], F.librosa_mel_basis(cfg))
    other = CONFIGS[1]  # not in the table: built by librosa
    assert np.array_equal(F.mel_basis(other), F.librosa_mel_basis(other))


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_mel_projection_drops_only_bins_no_band_covers(cfg: F.FeatureConfig) -> None:
    """The projection log_mel uses is librosa's filterbank cut where every later column is zero:
    the bin of the top band's upper edge (fmax) and above, and never a bin that feeds a band."""
    full, used = F.librosa_mel_basis(cfg), F.mel_projection(cfg)
    n = used.shape[1]
    assert np.array_equal(used, full[:, :n]) and not full[:, n:].any() and full[:, n - 1].any()
    top_edge_bin = cfg.fmax_hz * cfg.n_fft / cfg.sample_rate_hz  # fractional FFT bin of fmax
    assert top_edge_bin - 1 <= n <= top_edge_bin + 1


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_stft_window_is_librosas(cfg: F.FeatureConfig) -> None:
    want = librosa.util.pad_center(librosa.filters.get_window(cfg.window, cfg.win_length, fftbins=True), size=cfg.n_fft)
    np.testing.assert_allclose(F.stft_window(cfg), want, atol=1e-12)


def test_work_arrays_do_not_leak_between_calls() -> None:
    """The per-thread work arrays are reused: a result must not change when the next call runs."""
    windows = stream_windows(ANGRY_CLIP, CFG)
    first = F.window_features(windows[4], CFG)
    kept = first.copy()
    F.window_features(windows[6], CFG)
    F.preprocess(np.ones(100, np.float32), CFG)  # a short input resizes nothing it should not
    assert np.array_equal(first, kept)
    assert np.array_equal(F.window_features(windows[4], CFG), kept)


@settings(max_examples=120, deadline=None)
@given(
    x=arrays(np.float32, st.integers(0, CFG.window_samples + 2000), elements=st.floats(-1.0, 1.0, width=32)),
    gain=st.sampled_from([1e-4, 3e-3, 0.02, 0.3, 1.0]),
    dc=st.sampled_from([0.0, 0.01, -0.2]),
)
def test_fuzz_matches_librosa(x: np.ndarray, gain: float, dc: float) -> None:
    assert_same_recipe(x * np.float32(gain) + np.float32(dc), CFG)


def test_runtime_never_imports_librosa() -> None:
    """Scoring a file with the shipped model loads neither librosa nor scipy (start-up time and
    memory of the live tool)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from stream_ser.cli import main\n"
        f"code = main(['analyse', {str(ANGRY_CLIP)!r}, '-q'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'librosa', 'scipy', 'numba', 'tensorflow'})\n"
        "print('HEAVY', heavy, code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr
