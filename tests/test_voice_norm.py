"""Training with the pooled embedding standardised per voice (training/voice_norm.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.voice_norm import chunked_order, voice_ids, voice_prior


def test_chunked_order_keeps_every_window_and_one_voice_per_chunk() -> None:
    rng = np.random.default_rng(0)
    voices = np.repeat([0, 1, 2], [70, 32, 5])
    order = chunked_order(voices, 32, rng)
    assert len(order) % 32 == 0 and len(order) == 32 * (3 + 1 + 1)
    chunks = order.reshape(-1, 32)
    assert all(len(set(voices[c])) == 1 for c in chunks)
    assert set(order) == set(range(len(voices)))  # every window used; short voices repeated
    assert not np.array_equal(order, chunked_order(voices, 32, rng))  # a new order each call


def test_voice_ids_are_shared_between_arrays_and_prior_averages_voices() -> None:
    a, b = voice_ids(np.array(["x", "y", "x"], object), np.array(["y", "z"], object))
    assert a[0] == a[2] != a[1] and b[0] == a[1] and b[1] not in a
    e = np.array([[0.0], [2.0], [10.0], [10.0], [10.0], [10.0]])
    mean, var = voice_prior(e, np.array([0, 0, 1, 1, 1, 1]))
    # voice means 1 and 10 (mean 5.5); mean squares 2 and 100 (mean 51): var = 51 - 30.25
    assert mean == pytest.approx([5.5]) and var == pytest.approx([20.75])


def test_fit_standardises_each_voice_chunk_and_exports_with_the_voices_prior(tmp_path) -> None:
    """One epoch of the harness's smallest pooled CNN on synthetic voices: in training each chunk
    of the batch is standardised on its own; the returned network carries the prior instead, runs
    on any batch size, and exports to ONNX with its pooled embedding intact."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    import keras

    from tests.test_training_harness import _harness_recipe, _synthetic_ravdess7
    from training.architectures import InputStats
    from training.embedding_adaptation import embedding_tensors
    from training.export import export_onnx
    from training.folds import PROTOCOLS
    from training.train import FitData, fit, window_voices
    from training.voice_norm import chunk_standardise_layer, pooled_layer

    fs = _synthetic_ravdess7(np.random.default_rng(0), 4)
    labels = PROTOCOLS["ravdess7"].labels
    y = np.array([labels.index(u.label) for u in fs.utterances], np.int32)[fs.clip_index]
    x = fs.log_mels.astype(np.float32)[..., None]
    voices = window_voices(fs)
    tr = np.flatnonzero(np.isin(voices, [f"ravdess:{a:02d}" for a in range(1, 17)]))
    va = np.flatnonzero(np.isin(voices, [f"ravdess:{a:02d}" for a in range(17, 21)]))
    v_tr, v_va = voice_ids(voices[tr], voices[va])
    recipe = dataclasses.replace(_harness_recipe("cnn_gap_small"), embedding_norm="voice", batch_size=64)
    data = FitData(x[tr], y[tr], x[va], y[va], InputStats.from_log_mels(fs.log_mels[tr]), len(labels),
                   recipe.feature_config(), voices_train=v_tr, voices_val=v_va)
    fitted = fit(recipe, data)
    model = fitted.model
    names = [layer.name for layer in model.layers]
    assert "voice_prior" in names and "voice_standardise" not in names
    probs = model.predict(x[va][:5], verbose=0)
    assert probs.shape == (5, len(labels)) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # the training layer: each chunk of a batch standardised on its own
    layer = chunk_standardise_layer(2)
    e = np.random.default_rng(1).normal(3, 2, (64, 5)).astype(np.float32)
    e[32:] += 100
    z = np.asarray(layer(e))
    for half in (z[:32], z[32:]):
        assert np.allclose(half.mean(axis=0), 0, atol=1e-4) and np.allclose(half.std(axis=0), 1, atol=1e-3)
    # exported: the runtime's embedding is the pooled one, before the fixed standardisation
    path = tmp_path / "m.onnx"
    export_onnx(model, path, labels, recipe.feature_config(), {"command": "test"}, x[va][:8, ..., 0])
    _, tensors = embedding_tensors(path)
    import onnxruntime as ort

    graph, _ = embedding_tensors(path)
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    got = sess.run([tensors["pooled"]], {sess.get_inputs()[0].name: x[va][:8]})[0]
    want = keras.Model(model.inputs, pooled_layer(model).output).predict(x[va][:8], verbose=0)
    assert np.allclose(got.reshape(8, -1), want, atol=1e-4)
    with pytest.raises(ValueError, match="voice of every"):
        fit(recipe, dataclasses.replace(data, voices_train=None))


def test_recipe_checks_the_batch_and_mixup() -> None:
    from tests.test_training_harness import _harness_recipe

    base = _harness_recipe("cnn_gap_small")
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(base, embedding_norm="voice", batch_size=48)
    with pytest.raises(ValueError, match="mixup"):
        dataclasses.replace(base, embedding_norm="voice", batch_size=64, mixup=0.2)
    with pytest.raises(ValueError, match="embedding_norm"):
        dataclasses.replace(base, embedding_norm="speaker")
