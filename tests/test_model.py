"""Model loading: metadata round-trip, and refusal of unusable models before any audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_onnx

from stream_ser.features import FEATURE_VERSION, FeatureConfig
from stream_ser.metadata import ModelMetadata, ModelMetadataError
from stream_ser.model import EmotionModel, ModelError, default_model_path


def valid_json(**overrides) -> str:
    data = json.loads(ModelMetadata(("a", "b", "c"), FeatureConfig()).to_json())
    data.update(overrides)
    return json.dumps(data)


def test_metadata_round_trip() -> None:
    meta = ModelMetadata(("neutral", "sad"), FeatureConfig(n_mels=64), provenance={"seed": 3})
    back = ModelMetadata.from_json(meta.to_json())
    assert back == meta and back.provenance == {"seed": 3}


def test_tiny_model_loads_and_predicts(tiny_model_path) -> None:
    model = EmotionModel(tiny_model_path)
    assert model.labels == ("neutral", "happy", "sad")
    assert model.feature_config == FeatureConfig()
    x = np.random.default_rng(0).standard_normal((4, *model.feature_config.input_shape)).astype(np.float32)
    p = model.predict(x)
    assert p.shape == (4, 3) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict(x[0]).shape == (3,)
    with pytest.raises(ValueError):
        model.predict(np.zeros((1, 10, 10), np.float32))


@pytest.mark.parametrize(
    "metadata,match",
    [
        (None, "no 'stream_ser' metadata"),
        ("{not json", "not valid JSON"),
        (valid_json(labels=[]), "labels"),
        (valid_json(labels=["a", "a", "b"]), "repeated"),
        (valid_json(format=99), "format"),
        (valid_json(feature_config={**FeatureConfig().to_dict(), "version": FEATURE_VERSION + 1}), "feature recipe version"),
        (valid_json(feature_config={**FeatureConfig().to_dict(), "extra": 1}), "unknown"),
        (valid_json(output_name="nope"), "output 'nope'"),
    ],
    ids=["missing", "not-json", "no-labels", "repeated-labels", "format", "feature-version", "unknown-field", "bad-output"],
)
def test_bad_metadata_is_refused(tmp_path, metadata, match) -> None:
    path = make_tiny_onnx(tmp_path / "m.onnx", metadata=metadata)
    with pytest.raises(ModelError, match=match):
        EmotionModel(path)


def test_shape_mismatches_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="input shape"):
        EmotionModel(make_tiny_onnx(tmp_path / "a.onnx", n_mels=64))
    # metadata says 3 labels, graph outputs 4
    path = make_tiny_onnx(tmp_path / "b.onnx", labels=("a", "b", "c", "d"), metadata=valid_json())
    with pytest.raises(ModelError, match="labels"):
        EmotionModel(path)


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        EmotionModel(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        EmotionModel(junk)


def test_metadata_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ModelMetadata.from_json("[]")
    assert issubclass(ModelMetadataError, ValueError)


def test_shipped_model_is_found_without_a_path(shipped_model) -> None:
    assert default_model_path().is_file()
    assert shipped_model.labels == ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
    prov = shipped_model.metadata.provenance
    assert prov["split"] == "si_v1" and "ravdess:21" in prov["test_speakers"]
