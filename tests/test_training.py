"""Training-side pieces: windows match the runtime, export parity, and the shipped model's
speaker-independent accuracy on the held-out test speakers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import ANGRY_CLIP, TESS_CLIP

from stream_ser.engine import Engine
from stream_ser.features import FeatureConfig
from stream_ser.sources import FileSource, load_audio
from training.evaluate import NO_SPEECH, corpus_scores, evaluate_clips, score
from training.windows import clip_features


def _tensorflow():
    """TensorFlow, or skip (fail when STREAM_SER_REQUIRE_TRAIN is set, as in CI)."""
    try:
        import tensorflow as tf  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        if os.environ.get("STREAM_SER_REQUIRE_TRAIN", "") not in ("", "0"):
            pytest.fail(f"training extra not installed ({exc}) but STREAM_SER_REQUIRE_TRAIN is set")
        pytest.skip(f"training extra not installed: {exc}")
    return tf


def test_training_windows_are_the_engines_speech_windows(shipped_model) -> None:
    cfg = shipped_model.feature_config
    x = load_audio(ANGRY_CLIP)
    mels, ends, n = clip_features(x, cfg)
    preds = list(Engine(shipped_model).run(FileSource(ANGRY_CLIP).chunks()))
    assert n == len(preds)
    speech = [p for p in preds if p.is_speech]
    assert [round(p.end_s, 3) for p in speech] == [round(e, 3) for e in ends]
    for m, p in zip(mels, speech):
        assert np.allclose(shipped_model.predict(m), p.probabilities, atol=1e-6)


def test_score_definitions() -> None:
    labels = ("a", "b", "c")
    y_true = ["a", "a", "a", "a", "b", "c"]
    y_pred = ["a", "a", "a", "b", "b", NO_SPEECH]
    s = score(y_true, y_pred, labels)
    assert s.uar == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert s.wa == pytest.approx(4 / 6)
    assert s.confusion.shape == (3, 4) and s.confusion[2, 3] == 1  # no-speech column


def test_export_parity_and_metadata(tmp_path, monkeypatch) -> None:
    _tensorflow()
    import keras

    from stream_ser.model import EmotionModel
    from training.architectures import crnn_attention
    from training.export import ExportParityError, export_onnx

    keras.utils.set_random_seed(0)
    cfg = FeatureConfig()
    labels = ("neutral", "happy", "sad")
    model = crnn_attention(cfg.input_shape, len(labels), filters=(4, 8), rnn_units=4, norm_mean=-60.0, norm_var=900.0)
    windows = np.stack(clip_features(load_audio(TESS_CLIP), cfg)[0] + clip_features(load_audio(ANGRY_CLIP), cfg)[0])
    path = tmp_path / "m.onnx"
    diff = export_onnx(model, path, labels, cfg, {"note": "test"}, windows)
    assert diff <= 1e-4
    runtime = EmotionModel(path)
    assert runtime.labels == labels and runtime.feature_config == cfg
    assert runtime.metadata.provenance["note"] == "test" and "tf2onnx" in runtime.metadata.provenance
    probs = runtime.predict(windows)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax is inside the graph
    import onnx

    from training.graph_passes import match_scalar_ranks

    assert match_scalar_ranks(onnx.load(str(path))) == 0  # the export already applied the pass

    # a runtime that disagrees with Keras by 1e-3 must abort the export and remove the file
    original = EmotionModel.predict
    monkeypatch.setattr(EmotionModel, "predict", lambda self, x: original(self, x) + 1e-3)
    with pytest.raises(ExportParityError):
        export_onnx(model, tmp_path / "bad.onnx", labels, cfg, {}, windows)
    assert not (tmp_path / "bad.onnx").exists()


def test_shipped_model_beats_twice_chance_on_unseen_speakers(shipped_model, data_dir) -> None:
    """Clip-level UAR on the held-out test speakers (RAVDESS 21-24, TESS YAF) >= 2x chance."""
    from training.corpora import discover
    from training.split import load_split

    test = [u for u in load_split().partition(discover(data_dir))["test"] if u.label is not None]
    assert {u.speaker for u in test} == {"ravdess:21", "ravdess:22", "ravdess:23", "ravdess:24", "tess:YAF"}
    results = corpus_scores(evaluate_clips(shipped_model, test), shipped_model.labels)
    chance = 1 / len(shipped_model.labels)
    for name, r in results.items():
        print(f"{name}: clip UAR {r['clip'].uar:.3f}  WA {r['clip'].wa:.3f}  macro-F1 {r['clip'].macro_f1:.3f}")
    assert results["all"]["clip"].uar >= 2 * chance
    assert results["ravdess"]["clip"].uar >= 2 * chance


def test_scalar_rank_pass_is_exact_on_the_shipped_graph(tmp_path, shipped_model) -> None:
    """Undo the pass on the shipped graph (scalars back to 0-d, as tf2onnx writes them), redo
    it, and compare outputs on real windows: bit-identical, and only the constants' shapes move."""
    import onnx
    from onnx import numpy_helper

    from stream_ser.model import EmotionModel
    from training.graph_passes import match_scalar_ranks

    proto = onnx.load(str(shipped_model.path))
    scalars = 0
    for init in proto.graph.initializer:
        if len(init.dims) > 0 and int(np.prod(init.dims)) == 1 and init.name.endswith("__rank4"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(()), init.name))
            scalars += 1
    assert scalars >= 2  # the input standardisation's Mul and Add
    onnx.save(proto, str(tmp_path / "tf2onnx.onnx"))
    assert match_scalar_ranks(proto) == scalars
    onnx.save(proto, str(tmp_path / "rewritten.onnx"))
    windows = np.stack(clip_features(load_audio(ANGRY_CLIP), shipped_model.feature_config)[0])
    before = EmotionModel(tmp_path / "tf2onnx.onnx").predict(windows)
    after = EmotionModel(tmp_path / "rewritten.onnx").predict(windows)
    assert np.array_equal(before, after)
    assert np.array_equal(after, shipped_model.predict(windows))
