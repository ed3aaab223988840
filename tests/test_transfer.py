"""The pretrained encoder on its own band grid (training.transfer): the runtime's feature recipe
for it, and the in-graph map from the runtime's dB log-mel to EfficientAT's input scale.

Real audio: the RAVDESS fixture clips; the reference is EfficientAT's own front end
(:func:`training.transfer.efficientat_log_mel`: 32 kHz, pre-emphasis, 128 mel bands to 15 kHz,
``(ln(mel + 1e-5) + 4.5) / 5``; shared/pretrained/README.md).
"""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, load_fixture_16k

from stream_ser.features import log_mel, mel_basis, preprocess
from training.recipe import Recipe, load_recipe
from training.transfer import (
    EAT_N_MELS,
    efficientat_feature_config,
    efficientat_grid_edges,
    efficientat_input,
    efficientat_log_mel,
    mn04_native,
)


@pytest.mark.parametrize("fmax_hz, n_bands", [(8000.0, 103), (4000.0, 77)])
def test_feature_recipe_takes_the_lowest_bands_of_efficientats_grid(fmax_hz: float, n_bands: int) -> None:
    """Every band of the runtime recipe is the band of the 128-band 0-15 kHz grid at the same row
    (same edges), and the bands kept are exactly those whose top edge fits under ``fmax_hz``."""
    config = efficientat_feature_config(fmax_hz, "vad")
    grid = efficientat_grid_edges()
    assert config.n_mels == n_bands and config.input_shape[0] == n_bands
    assert grid[n_bands + 1] <= fmax_hz < grid[n_bands + 2]
    ours = librosa.mel_frequencies(config.n_mels + 2, fmin=config.fmin_hz, fmax=config.fmax_hz, htk=config.mel_htk)
    np.testing.assert_allclose(ours, grid[: n_bands + 2], rtol=1e-9, atol=1e-6)
    # 10 ms frames, 31.25 Hz bins: EfficientAT's frame times and bin spacing at half its sample rate
    assert config.hop_length / config.sample_rate_hz == 0.01 and config.sample_rate_hz / config.n_fft == 31.25
    # the triangles peak where the grid's do (unnormalised, so each peaks near 1)
    basis = mel_basis(config)
    peaks = np.argmax(basis, axis=1) * config.sample_rate_hz / config.n_fft
    assert np.all(np.abs(peaks - grid[1: n_bands + 1]) <= 31.25)


def test_recipe_rejects_the_grid_that_the_encoder_was_not_built_for() -> None:
    recipe = load_recipe("mn04-native")
    assert recipe.feature_config() == efficientat_feature_config(recipe.fmax_hz, recipe.speech_gate)
    with pytest.raises(ValueError, match="front_end = 'runtime': must be 'efficientat' for arch mn04_native"):
        dataclasses.replace(recipe, front_end="runtime")
    with pytest.raises(ValueError, match="front_end = 'mel': must be"):
        dataclasses.replace(recipe, front_end="mel")
    assert Recipe.from_dict({k: v for k, v in load_recipe("shipped").to_dict().items()}).front_end == "runtime"
    with pytest.raises(ValueError, match="mn04_native takes the EfficientAT front end's"):
        mn04_native((40, 149), 7)


@pytest.mark.parametrize("clip", [ANGRY_CLIP, HAPPY_CLIP], ids=["angry", "happy"])
def test_graph_input_is_efficientats_own_front_end_on_real_speech(clip) -> None:
    """The runtime's log-mel of a real window, mapped in the graph, is EfficientAT's front end of
    the same window: the per-band offsets carry the pre-emphasis (about -29 dB at 100 Hz) and the
    two STFTs' gains, so a wrong offset shows as a band-level bias of a unit or more."""
    import keras

    config = efficientat_feature_config(8000.0, "vad")
    window = preprocess(load_fixture_16k(clip)[: config.window_samples], config)
    assert window is not None
    inp = keras.Input((*config.input_shape, 1))
    mapped = keras.Model(inp, efficientat_input(inp, config))
    ours = np.asarray(mapped(log_mel(window, config)[None, :, :, None]))[0, :, :, 0]
    ref = efficientat_log_mel(window, config.sample_rate_hz)
    assert ref.shape[0] == EAT_N_MELS
    # our frame j is centred at 200 + 160 j samples, the reference's frame i at 160 i: compare j with j + 1
    n = min(ours.shape[1], ref.shape[1] - 1)
    diff = ours[:, :n] - ref[: config.n_mels, 1: n + 1]
    spread = float(ref[: config.n_mels].std())
    assert 0.5 < spread < 2.0  # a realistic input on that scale
    assert float(np.abs(diff).mean()) < 0.15 * spread  # frames 2.5 ms apart, windows of different shape
    assert float(np.abs(diff.mean(axis=1)).max()) < 0.15  # no band off by more than 0.75 nepers
