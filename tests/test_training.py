"""Training-side pieces: windows match the runtime, export parity, and the shipped model's
speaker-independent accuracy on the held-out test speakers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, FIXTURES, TESS_CLIP

from stream_ser.engine import Engine
from stream_ser.audio import FileSource, load_audio
from stream_ser.features import FEATURE_VERSION, FeatureConfig
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


@pytest.mark.parametrize("gate", ["vad", "level"])
def test_training_windows_are_the_engines_speech_windows(shipped_model, tmp_path, gate) -> None:
    """Under either gate, the windows training keeps are exactly the ones the engine scores with
    that gate, on speech followed by music (which the level gate passes and the VAD does not)."""
    import soundfile as sf

    cfg = dataclasses.replace(shipped_model.feature_config, speech_gate=gate)
    music = load_audio(FIXTURES / "nonspeech" / "music_hyperrogue_caves.ogg")[:16000 * 4]
    x = np.concatenate([load_audio(ANGRY_CLIP), 0.5 * music / np.abs(music).max()]).astype(np.float32)
    path = tmp_path / "speech_then_music.flac"
    sf.write(path, x, 16000, subtype="PCM_24")
    x = load_audio(path)
    mels, ends, n = clip_features(x, cfg)
    preds = list(Engine(shipped_model, adapt="none", gate=gate).run(FileSource(path).chunks()))
    assert n == len(preds)
    speech = [p for p in preds if p.is_speech]
    assert [round(p.end_s, 3) for p in speech] == [round(e, 3) for e in ends]
    for m, p in zip(mels, speech):
        assert np.allclose(shipped_model.predict(m), p.probabilities, atol=1e-6)
    # the music-only windows (from 3 s after the speech ends) pass the level gate only
    music_only = [p.end_s for p in preds if p.start_s >= 4.4]
    assert music_only
    kept = [e for e in ends if any(abs(e - m) < 1e-3 for m in music_only)]
    assert (len(kept) == 0) if gate == "vad" else (len(kept) == len(music_only))


def test_feature_workers_are_spawned_once_tensorflow_is_loaded(shipped_model, monkeypatch) -> None:
    """A forked worker can abort on a lock held by one of TensorFlow's threads, so once TensorFlow
    is loaded the feature pool starts its workers with spawn, and they compute the same windows."""
    import concurrent.futures
    import sys

    from training import windows
    from training.corpora import Utterance

    contexts = []

    class Recording(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, workers, mp_context=None):
            contexts.append(None if mp_context is None else mp_context.get_start_method())
            super().__init__(workers, mp_context=mp_context)

    monkeypatch.setattr(windows, "ProcessPoolExecutor", Recording)
    cfg = shipped_model.feature_config
    utts = [Utterance(Path(ANGRY_CLIP), "ravdess", "ravdess:03", "angry", "angry"),
            Utterance(Path(TESS_CLIP), "tess", "tess:YAF", "angry", "angry")]
    _tensorflow()
    assert "tensorflow" in sys.modules
    built = windows.build_features(utts, cfg, cache_dir=None, workers=1)
    assert contexts == ["spawn"]
    for i, u in enumerate(utts):  # the spawned worker computed each clip's windows as in-process
        mels, _, _ = clip_features(load_audio(u.path), cfg)
        assert np.allclose(built.log_mels[built.clip_index == i], np.asarray(mels), rtol=1e-3, atol=1e-2)  # float16


def test_version_2_recipes_read_as_level_gated() -> None:
    """A recipe from before the VAD (version 2, no speech_gate) is the level-gated version 3."""
    old = {k: v for k, v in FeatureConfig().to_dict().items() if k != "speech_gate"}
    old["version"] = 2
    cfg = FeatureConfig.from_dict(old)
    assert cfg.version == FEATURE_VERSION and cfg.speech_gate == "level"
    assert FeatureConfig().speech_gate == "vad"
    with pytest.raises(ValueError, match="speech_gate"):
        FeatureConfig(speech_gate="loud")


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

    from training.graph_passes import fuse_channel_affine, match_scalar_ranks

    exported = onnx.load(str(path))
    # the export already applied both passes (parity above ran through the rewritten graph)
    assert match_scalar_ranks(exported) == 0 and fuse_channel_affine(exported) == 0

    # a runtime that disagrees with Keras by 1e-3 must abort the export and remove the file
    original = EmotionModel.predict
    monkeypatch.setattr(EmotionModel, "predict", lambda self, x: original(self, x) + 1e-3)
    with pytest.raises(ExportParityError):
        export_onnx(model, tmp_path / "bad.onnx", labels, cfg, {}, windows)
    assert not (tmp_path / "bad.onnx").exists()


def test_export_of_relu_then_batchnorm_blocks_keeps_parity_through_the_rewrite(tmp_path) -> None:
    """The shipped architecture's block order (Conv -> ReLU -> BatchNorm -> MaxPool), at a tiny
    width with trained-looking BatchNorm statistics: the export rewrites each BatchNorm as a
    depthwise Conv after its pool, and Keras and onnxruntime still agree on real windows."""
    _tensorflow()
    import keras
    import onnx

    from training.architectures import cnn_blstm_att
    from training.export import export_onnx

    keras.utils.set_random_seed(0)
    cfg = FeatureConfig()
    labels = ("neutral", "happy", "sad")
    model = cnn_blstm_att(cfg.input_shape, len(labels), use_lstm=False, filters=(4, 8), dense_units=8,
                          norm_mean=-60.0, norm_var=900.0, name="tiny_gap")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # not the identity of a fresh layer
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2.0, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    windows = np.stack(clip_features(load_audio(TESS_CLIP), cfg)[0] + clip_features(load_audio(ANGRY_CLIP), cfg)[0])
    assert export_onnx(model, tmp_path / "gap.onnx", labels, cfg, {}, windows) <= 1e-4
    nodes = onnx.load(str(tmp_path / "gap.onnx")).graph.node
    assert sum(n.name.endswith("__channel_affine") for n in nodes) == 2  # one per block
    assert not any(n.op_type == "BatchNormalization" for n in nodes)


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


#: The shipped network in float32, before int8 quantisation (``models/README.md``).
FP32 = Path(__file__).resolve().parents[1] / "models" / "stream-ser-fp32.onnx"


def test_scalar_rank_pass_is_exact_on_the_shipped_graph(tmp_path) -> None:
    """Undo the pass on the shipped float graph (scalars back to 0-d, as tf2onnx writes them),
    redo it, and compare outputs on real windows: bit-identical, and only the constants' shapes move."""
    import onnx
    from onnx import numpy_helper

    from stream_ser.model import EmotionModel
    from training.graph_passes import match_scalar_ranks

    float_model = EmotionModel(FP32)
    proto = onnx.load(str(FP32))
    scalars = 0
    for init in proto.graph.initializer:
        if len(init.dims) > 0 and int(np.prod(init.dims)) == 1 and init.name.endswith("__rank4"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(()), init.name))
            scalars += 1
    assert scalars >= 2  # the input standardisation's Mul and Add
    onnx.save(proto, str(tmp_path / "tf2onnx.onnx"))
    assert match_scalar_ranks(proto) == scalars
    onnx.save(proto, str(tmp_path / "rewritten.onnx"))
    windows = np.stack(clip_features(load_audio(ANGRY_CLIP), float_model.feature_config)[0])
    before = EmotionModel(tmp_path / "tf2onnx.onnx").predict(windows)
    after = EmotionModel(tmp_path / "rewritten.onnx").predict(windows)
    assert np.array_equal(before, after)
    assert np.array_equal(after, float_model.predict(windows))


def _affine_pool_graph(scale: np.ndarray, shift: np.ndarray):
    """ONNX graph ``x -> Relu -> Mul(scale) -> Add(shift) -> MaxPool 2x2``, as tf2onnx writes a
    Conv -> ReLU -> BatchNorm -> MaxPool block (per-channel ``(1, C, 1, 1)`` constants)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = scale.size
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "scale"], ["m"], name="bn/mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="bn/add"),
        helper.make_node("MaxPool", ["a"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = [numpy_helper.from_array(scale.reshape(1, c, 1, 1).astype(np.float32), "scale"),
             numpy_helper.from_array(shift.reshape(1, c, 1, 1).astype(np.float32), "shift")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, 10, 37])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, c, 5, 18])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("negative", [False, True])
def test_channel_affine_pass_is_exact_and_moves_the_pool_only_for_positive_scales(tmp_path, negative) -> None:
    """The BatchNorm-after-ReLU rewrite (training.graph_passes.fuse_channel_affine): one
    depthwise Conv instead of Mul + Add, after the MaxPool when every scale is positive, and
    the same outputs bit for bit; a negative scale (max-pooling does not commute with it) keeps
    the pool after the affine."""
    import onnx
    import onnxruntime as ort

    from training.graph_passes import fuse_channel_affine

    rng = np.random.default_rng(1)
    scale = rng.uniform(0.05, 3.0, 32)
    if negative:
        scale[5] = -0.7
    proto = _affine_pool_graph(scale, rng.normal(0.0, 2.0, 32))
    x = (rng.normal(0.0, 3.0, (4, 32, 10, 37))).astype(np.float32)

    def run(model) -> np.ndarray:
        onnx.save(model, str(tmp_path / "m.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(tmp_path / "m.onnx"), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run(proto)
    assert fuse_channel_affine(proto) == 1
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == (["Relu", "Conv", "MaxPool"] if negative else ["Relu", "MaxPool", "Conv"])
    conv = proto.graph.node[ops.index("Conv")]
    assert {a.name: a.i for a in conv.attribute}["group"] == 32
    assert {i.name for i in proto.graph.initializer} == {conv.input[1], conv.input[2]}  # old constants gone
    np.testing.assert_array_equal(run(proto), before)
    assert fuse_channel_affine(proto) == 0  # nothing left to rewrite


def test_channel_affine_pass_is_done_on_the_shipped_float_graph() -> None:
    """The shipped float32 graph carries the rewrite: its four BatchNorms are depthwise Convs
    after their pools, and nothing is left to rewrite."""
    import onnx

    from training.graph_passes import fuse_channel_affine

    proto = onnx.load(str(FP32))
    assert fuse_channel_affine(proto) == 0
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MaxPool") == 4 and all(ops[i + 1] == "Conv" for i, op in enumerate(ops) if op == "MaxPool")
