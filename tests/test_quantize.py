"""Int8 quantisation (training.quantize), on a tiny model and on the shipped network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, make_tiny_onnx

from stream_ser.model import EmotionModel, default_model_path

pytest.importorskip("onnxruntime.quantization")

from training.quantize import calibration_windows, quantize  # noqa: E402

def op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_quantize_keeps_metadata_and_predictions(tmp_path: Path) -> None:
    fp32 = EmotionModel(make_tiny_onnx(tmp_path / "tiny.onnx", seed=3))
    windows = calibration_windows([ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP], fp32)
    assert windows.ndim == 3 and windows.shape[1:] == fp32.feature_config.input_shape and len(windows) >= 10
    int8 = EmotionModel(quantize(fp32.path, tmp_path / "tiny-int8.onnx", windows))
    assert "QuantizeLinear" in op_types(int8.path) and "QuantizeLinear" not in op_types(fp32.path)
    assert int8.labels == fp32.labels and int8.feature_config == fp32.feature_config
    a, b = fp32.predict(windows), int8.predict(windows)
    assert np.allclose(b.sum(axis=1), 1.0, atol=1e-4)
    assert np.abs(a - b).max() < 0.05  # 8-bit ranges calibrated on these windows


def test_calibration_refuses_silence(tmp_path: Path) -> None:
    import soundfile as sf

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    with pytest.raises(ValueError, match="no speech"):
        calibration_windows([silent], EmotionModel(make_tiny_onnx(tmp_path / "tiny.onnx")))


#: The float32 model the shipped int8 file is quantised from (``python -m training.quantize``).
FP32 = Path(__file__).resolve().parents[1] / "models" / "stream-ser-fp32.onnx"


def _conv_inputs(path: Path) -> list[str]:
    """For each Conv of the graph, in order: the op type producing its data input."""
    nodes = onnx.load(str(path)).graph.node
    producer = {out: n.op_type for n in nodes for out in n.output}
    return [producer.get(n.input[0], "graph input") for n in nodes if n.op_type == "Conv"]


def test_float_prefix_is_the_first_block_of_the_shipped_network() -> None:
    """What stays float32: every node before the first convolution reading >= 2 channels per
    group (the log-mel's one-channel Conv, its ReLU, pool and BatchNorm affine)."""
    from training.quantize import float_prefix

    names = float_prefix(onnx.load(str(FP32)))
    graph = {n.name: n.op_type for n in onnx.load(str(FP32)).graph.node}
    assert [graph[n] for n in names if graph[n] in ("Conv", "Relu", "MaxPool")] == ["Conv", "Relu", "MaxPool", "Conv"]
    assert all("conv0" in n or "bn0" in n or "pool0" in n or "standardise" in n for n in names)


def without_head(meta):
    """``meta`` without its embedding head (each shipped file has its own)."""
    import dataclasses

    return dataclasses.replace(meta, embedding_adaptation=None)


def test_shipped_model_is_the_int8_quantisation_of_the_float_one() -> None:
    """The shipped file: int8 convolutions after a float32 first block, the float model's
    metadata, and its decisions on real speech of the test fixtures. Each file carries its own
    embedding head, fitted on its own embeddings after quantisation (model card)."""
    fp32, int8 = EmotionModel(FP32), EmotionModel(default_model_path())
    assert "QuantizeLinear" not in op_types(fp32.path) and "QuantizeLinear" in op_types(int8.path)
    assert without_head(int8.metadata) == without_head(fp32.metadata)
    heads = {m.path.name: m.metadata.provenance.pop("embedding_adaptation") for m in (fp32, int8)}
    for name, h in heads.items():
        assert f"--model models/{name} " in h["command"] and h["command"].endswith(f"--write-model models/{name}")
    made = int8.metadata.provenance.pop("quantisation")  # what stream-ser info shows about it
    assert int8.metadata.provenance == fp32.metadata.provenance
    assert made["from"] == FP32.name and made["command"].startswith("python -m training.quantize")
    assert any("conv0" in n for n in made["float32_nodes"]) and made["calibration"]["windows"] >= 1000
    inputs = _conv_inputs(int8.path)
    # first block float (its BatchNorm conv reads the float MaxPool), then int8 convolutions
    assert inputs[:2] == ["Reshape", "MaxPool"] and set(inputs[2:]) == {"DequantizeLinear"}
    windows = calibration_windows([ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP], fp32)
    a, b = fp32.predict(windows), int8.predict(windows)
    agree = np.mean(a.argmax(axis=1) == b.argmax(axis=1))
    assert agree >= 0.9, f"top label agrees on only {agree:.0%} of windows"
    assert np.abs(a - b).mean() < 0.03


def test_quantising_the_float_model_again_rebuilds_the_shipped_file(tmp_path: Path, data_dir) -> None:
    """``python -m training.quantize`` with its defaults rebuilds the shipped file: calibration
    clips drawn with a fixed seed from the training speakers. On the machine that built it the
    bytes are identical; elsewhere float32 kernels may round the calibration differently, so
    the check is on the outputs."""
    import sys

    from training import quantize as q

    out = tmp_path / "int8.onnx"
    argv = sys.argv
    try:
        sys.argv = ["training.quantize", "--data", str(data_dir), "--model", str(FP32), "--out", str(out)]
        q.main()
    finally:
        sys.argv = argv
    rebuilt, shipped = EmotionModel(out), EmotionModel(default_model_path())
    # the embedding head is written after quantisation (training.embedding_adaptation --write-model)
    assert without_head(rebuilt.metadata) == without_head(shipped.metadata) and op_types(out) == op_types(shipped.path)
    windows = calibration_windows([ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP], shipped)
    np.testing.assert_allclose(rebuilt.predict(windows), shipped.predict(windows), atol=0.02)
