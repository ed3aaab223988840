"""What a user installs and is told about a model: librosa as an optional extra, and the
model's licence in ``stream-ser info``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_tiny_onnx

from stream_ser.cli import main
from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata
from stream_ser.model import EmotionModel

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")


def test_a_recipe_that_is_not_built_in_needs_librosa(tmp_path: Path, monkeypatch) -> None:
    """librosa is an optional extra of the runtime: the shipped recipe never needs it, and a
    model whose filterbank is not built in is refused at load time, with the install hint, when
    librosa is absent."""
    import dataclasses
    import importlib.util

    from stream_ser.features import needs_librosa
    from stream_ser.model import ModelError

    assert not needs_librosa(EmotionModel().feature_config)
    odd = dataclasses.replace(CFG, n_mels=32)
    assert needs_librosa(odd) and needs_librosa(dataclasses.replace(CFG, window="hamming"))
    meta = ModelMetadata(LABELS, odd, provenance={"made_by": "tests"}).to_json()
    path = make_tiny_onnx(tmp_path / "odd.onnx", LABELS, metadata=meta, n_mels=32)
    EmotionModel(path)  # librosa is installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "librosa" else real(name, *a))
    with pytest.raises(ModelError, match=r"needs librosa: pip install 'stream-ser\[librosa\]'"):
        EmotionModel(path)
    EmotionModel()  # the shipped model loads without librosa


def test_info_states_the_model_licence(capsys) -> None:
    """The shipped model was trained on non-commercial corpora; `stream-ser info` says so."""
    from stream_ser.cli import model_licence

    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("licence:"))
    assert "CC BY-NC-SA 4.0" in line and "CC BY-NC-ND 4.0" in line and "non-commercial use only" in line
    assert "not recorded" in model_licence({})
    assert "inherits" in model_licence({"data": ["crema-d"]})
