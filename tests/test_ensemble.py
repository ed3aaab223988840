"""training.ensemble: the mean of several networks' logits, exported as one ONNX model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import ANGRY_CLIP, TESS_CLIP

from stream_ser.audio import load_audio
from stream_ser.features import FeatureConfig
from training.windows import clip_features

if os.environ.get("STREAM_SER_REQUIRE_TRAIN", "") in ("", "0"):  # CI sets it: there a missing extra fails
    pytest.importorskip("tensorflow")

LABELS = ("neutral", "happy", "sad")


def _member(seed: int):
    """A tiny network of the shipped architecture's shape (its last layer the Dense softmax)."""
    import keras

    from training.architectures import cnn_blstm_att

    keras.utils.set_random_seed(seed)
    return cnn_blstm_att(FeatureConfig().input_shape, len(LABELS), use_lstm=False, filters=(4, 8), dense_units=8,
                         norm_mean=-60.0, norm_var=900.0, name=f"tiny{seed}")


def _windows(cfg: FeatureConfig) -> np.ndarray:
    return np.stack(clip_features(load_audio(TESS_CLIP), cfg)[0] + clip_features(load_audio(ANGRY_CLIP), cfg)[0])


def _logits(member, x: np.ndarray) -> np.ndarray:
    import keras

    head = member.get_layer("probabilities")
    features = keras.Model(member.inputs, head.input).predict(x, verbose=0)
    kernel, bias = head.get_weights()
    return features @ kernel + bias


def test_ensemble_is_the_softmax_of_the_mean_logits_in_keras_and_onnx(tmp_path) -> None:
    from stream_ser.model import EmotionModel
    from training.ensemble import build_ensemble
    from training.export import export_onnx

    cfg = FeatureConfig()
    members = [_member(0), _member(1), _member(2)]
    x = _windows(cfg)[..., None].astype(np.float32)
    z = np.mean([_logits(m, x) for m in members], axis=0)
    want = np.exp(z - z.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    ensemble = build_ensemble(members, *cfg.input_shape)
    assert np.allclose(ensemble.predict(x, verbose=0), want, atol=1e-5)
    # not any one member's answer (the members differ on real windows)
    assert not np.allclose(members[0].predict(x, verbose=0), want, atol=1e-3)

    path = tmp_path / "ensemble.onnx"
    assert export_onnx(ensemble, path, LABELS, cfg, {"note": "ensemble"}, x[..., 0]) <= 1e-4
    assert np.allclose(EmotionModel(path).predict(x[..., 0]), want, atol=1e-4)


def test_ensemble_refuses_one_member_and_a_member_without_a_softmax_head() -> None:
    import keras

    from training.ensemble import build_ensemble

    cfg = FeatureConfig()
    with pytest.raises(ValueError, match="at least two"):
        build_ensemble([_member(0)], *cfg.input_shape)
    inputs = keras.Input((*cfg.input_shape, 1))
    flat = keras.layers.Flatten()(inputs)
    linear = keras.Model(inputs, keras.layers.Dense(len(LABELS), name="probabilities")(flat))
    with pytest.raises(ValueError, match="not a Dense softmax"):
        build_ensemble([_member(0), linear], *cfg.input_shape)
