"""Int8 quantisation of an exported model with onnxruntime's static quantiser (issue #6).

Usage::

    python -m training.quantize --data ../shared/data --model models/stream-ser-fp32.onnx \\
        --out models/stream-ser.onnx

Method: ``onnxruntime.quantization.quantize_static`` in QDQ format, after its
``quant_pre_process`` (shape inference, graph optimisation). Conv and MatMul weights are int8
per output channel, activations uint8 with ranges calibrated (MinMax) on real log-mel windows of
the **training speakers** of the committed split (never validation or test speakers), cut and
featurised exactly as the engine does. The LSTM and the softmax stay float32. onnxruntime fuses
the QDQ pairs into QLinearConv / QLinearMatMul kernels (VNNI on CPUs that have it).

The quantised file keeps the fp32 model's ``stream_ser`` metadata (labels, feature recipe,
provenance), so the runtime loads it like any exported model. Whether accuracy holds is measured
with ``python -m training.evaluate --model`` on both files (see ``models/README.md``); the issue
allows the int8 model only within one UAR point of the fp32 one.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
from pathlib import Path

import numpy as np

from stream_ser.adaptation import SpeakerNormaliser
from stream_ser.engine import cut_window, window_ends
from stream_ser.features import window_features
from stream_ser.model import EmotionModel
from stream_ser.sources import load_audio

log = logging.getLogger("training.quantize")


def calibration_windows(paths: list[Path], model: EmotionModel, max_windows: int = 800) -> np.ndarray:
    """Model inputs of the clips at ``paths``, as the engine cuts and featurises them.

    For a speaker-normalised model (``model.metadata.speaker_norm``) the windows are normalised
    as the engine does, with a fresh :class:`~stream_ser.adaptation.SpeakerNormaliser` per clip.

    Args:
        paths: Audio files (training speakers only).
        model: Gives the feature recipe and hop.
        max_windows: Stop after this many speech windows.

    Returns:
        float32 ``(n, n_mels, n_frames)``, ``n <= max_windows``.

    Raises:
        ValueError: If no clip yields a speech window.
    """
    cfg = model.feature_config
    out: list[np.ndarray] = []
    norm = model.metadata.speaker_norm
    for path in paths:
        x = load_audio(path, cfg.sample_rate_hz)
        normaliser = SpeakerNormaliser(norm) if norm is not None else None
        for end in window_ends(x.size, cfg.hop_samples):
            feats = window_features(cut_window(x, end, cfg.window_samples), cfg)
            if feats is not None:
                out.append(normaliser(feats) if normaliser is not None else feats)
        if len(out) >= max_windows:
            break
    if not out:
        raise ValueError("no speech window in the calibration clips")
    return np.stack(out[:max_windows])


def quantize(model_path: Path, out_path: Path, windows: np.ndarray) -> Path:
    """Write the int8 (QDQ) version of ``model_path`` to ``out_path``.

    Args:
        model_path: fp32 ONNX model exported by :mod:`training.export`.
        out_path: Output file.
        windows: float32 calibration windows ``(n, n_mels, n_frames)``.

    Returns:
        ``out_path``.

    Raises:
        stream_ser.model.ModelError: If either file is not a valid stream-ser model.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = EmotionModel(model_path)
    input_name = fp32.metadata.input_name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(windows)

        def get_next(self):
            w = next(self._it, None)
            return None if w is None else {input_name: w[None, :, :, None].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model_path), str(pre))
        quantize_static(
            str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul"],
        )
    EmotionModel(out_path)  # loads through the runtime: metadata kept, input/output as expected
    return out_path


def main() -> None:
    from training.corpora import discover
    from training.split import load_split

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m training.quantize --data ../shared/data --model models/stream-ser-fp32.onnx "
        "--out models/stream-ser.onnx",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder with ravdess/ and tess/")
    parser.add_argument("--model", required=True, type=Path, help="fp32 ONNX model")
    parser.add_argument("--out", required=True, type=Path, help="int8 ONNX model to write")
    parser.add_argument("--clips", type=int, default=150, help="training clips for calibration (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    split = load_split()
    train = [u.path for u in discover(args.data) if u.speaker in split.train]
    random.Random(args.seed).shuffle(train)
    windows = calibration_windows(train[: args.clips], EmotionModel(args.model))
    log.info("calibrating on %d windows of %d training clips", len(windows), min(args.clips, len(train)))
    quantize(args.model, args.out, windows)
    log.info("wrote %s (%.2f MB)", args.out, args.out.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
