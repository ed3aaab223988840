"""Regenerate tests/fixtures/golden_logmel.npy (only when the feature recipe deliberately changes)."""

from pathlib import Path

import numpy as np

from stream_ser.engine import cut_window
from stream_ser.features import FeatureConfig, window_features
from stream_ser.audio import load_audio

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_CLIP = FIXTURES / "03-01-05-02-01-01-21.flac"
GOLDEN_END_S = 3.0


def golden_input() -> tuple[np.ndarray, FeatureConfig]:
    """The window of the golden clip ending at 3.0 s, and the default config."""
    cfg = FeatureConfig()
    x = load_audio(GOLDEN_CLIP, cfg.sample_rate_hz)
    return cut_window(x, int(GOLDEN_END_S * cfg.sample_rate_hz), cfg.window_samples), cfg


if __name__ == "__main__":
    window, cfg = golden_input()
    feats = window_features(window, cfg)
    np.save(FIXTURES / "golden_logmel.npy", feats)
    print("wrote", FIXTURES / "golden_logmel.npy", feats.shape, feats.dtype)
