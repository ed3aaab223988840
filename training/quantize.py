"""Int8 quantisation of an exported model with onnxruntime's static quantiser.

Usage::

    python -m training.quantize --data ../shared/data --model models/stream-ser-fp32.onnx \\
        --out models/stream-ser.onnx

Method: ``onnxruntime.quantization.quantize_static`` in QDQ format, after its
``quant_pre_process`` (shape inference, graph optimisation). Conv and MatMul weights are int8
per output channel; activations are uint8 with ranges calibrated on real log-mel windows of
the **training speakers** of the committed split (never validation or test speakers), cut and
featurised exactly as the engine does: each tensor's range covers the 0.01th to 99.99th
percentile of its values over at most 3000 windows of 600 clips (:data:`CALIBRATION`; 2928
windows for the shipped model). Max-pooling, global average pooling and
ReLU run on the int8 values too, so onnxruntime chains its QLinearConv kernels (VNNI on CPUs
that have it) without converting back to float32 between blocks. LSTMs and the softmax stay
float32.

**The first convolution stays float32** (:func:`float_prefix`): every node before the first
convolution that reads two or more channels per group. onnxruntime 1.32's int8 convolution of a
one-channel input (the log-mel) took 139 us per window against 20 us in float32, and the
first block's pool and per-channel affine stay with it so no quantise/dequantise pair sits in
between (the shipped ``cnn_gap_small``: 0.18 ms per window with the float first block, 0.31 ms
with everything int8, 0.39 ms float32; ``benchmarks/bench_hop.py``).

The choice of calibration was made on the **validation** speakers (RAVDESS actors 17-20, clip
UAR with ``python -m training.evaluate --partition validation``): percentile over 2928 windows
0.567, min-max over 800 windows of 150 clips 0.551, min-max over 2928 windows 0.548, entropy
over 800 windows 0.551, against 0.565 for the float32 model (``models/README.md``).

The quantised file keeps the fp32 model's ``stream_ser`` metadata (labels, feature recipe,
provenance), so the runtime loads it like any exported model. Whether accuracy holds is measured
with ``python -m training.evaluate --model`` on both files (see ``models/README.md``); the project
accepts the int8 model only within one UAR point of the fp32 one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from stream_ser.adaptation import SpeakerNormaliser
from stream_ser.engine import cut_window, window_ends
from stream_ser.features import window_features
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio

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


#: Calibration of the activation ranges (see the module docstring): training clips drawn, windows
#: kept, and the percentile of each tensor's values that sets its range.
CALIBRATION = {"clips": 600, "windows": 3000, "percentile": 99.99}

#: Operators quantised (onnxruntime's QDQ quantiser; everything else stays float32).
QUANTISED_OPS = ["Conv", "MatMul", "MaxPool", "GlobalAveragePool", "Relu"]


def float_prefix(proto) -> list[str]:
    """Names of the nodes that stay float32: all nodes before the first ``Conv`` whose weight
    reads two or more input channels per group (so the log-mel's one-channel convolution, its
    activation, pool and per-channel affine stay float32; see the module docstring).

    Args:
        proto: An ``onnx.ModelProto`` in topological order (as exported and pre-processed).

    Returns:
        Node names, in graph order; empty if no such convolution exists.
    """
    inits = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    names: list[str] = []
    for node in proto.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is not None and len(weight) >= 2 and weight[1] >= 2:
            return names
        names.append(node.name)
    return []


def quantize(model_path: Path, out_path: Path, windows: np.ndarray, percentile: float = CALIBRATION["percentile"],
             float_first_block: bool = True, command: str | None = None) -> Path:
    """Write the int8 (QDQ) version of ``model_path`` to ``out_path``.

    Args:
        model_path: fp32 ONNX model exported by :mod:`training.export`.
        out_path: Output file.
        windows: float32 calibration windows ``(n, n_mels, n_frames)``.
        percentile: Each activation's range covers this percentile of its calibrated values
            (onnxruntime's ``CalibrationMethod.Percentile``); 100 takes the full min-max range.
        float_first_block: Keep :func:`float_prefix` in float32 (False quantises every
            supported node, for comparison).
        command: The command line, recorded with the rest of the quantisation in the
            metadata's provenance (``quantisation``; ``stream-ser info`` shows it).

    Returns:
        ``out_path``.

    Raises:
        stream_ser.model.ModelError: If either file is not a valid stream-ser model.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
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
        method = CalibrationMethod.MinMax if percentile >= 100 else CalibrationMethod.Percentile
        excluded = float_prefix(onnx.load(str(pre))) if float_first_block else []
        quantize_static(
            str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=QUANTISED_OPS,
            nodes_to_exclude=excluded, calibrate_method=method,
            extra_options={"CalibPercentile": percentile} if method == CalibrationMethod.Percentile else {},
        )
    _record_quantisation(out_path, {
        "from": model_path.name, "onnxruntime": onnxruntime.__version__, "format": "QDQ",
        "weights": "int8 per output channel", "activations": "uint8", "operators": QUANTISED_OPS,
        "float32_nodes": excluded,
        "calibration": {"windows": int(len(windows)), "percentile": percentile}, "command": command,
    })
    EmotionModel(out_path)  # loads through the runtime: metadata kept, input/output as expected
    return out_path


def _record_quantisation(path: Path, facts: dict) -> None:
    """Add ``facts`` to the provenance of the stream-ser metadata of ``path`` (in place)."""
    import onnx

    from stream_ser.metadata import METADATA_KEY, ModelMetadata

    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    meta = ModelMetadata.from_json(entry.value)
    entry.value = dataclasses.replace(meta, provenance={**meta.provenance, "quantisation": facts}).to_json()
    onnx.save(proto, str(path))


def main() -> None:
    from training.corpora import discover
    from training.split import load_split

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m training.quantize --data ../shared/data --model models/stream-ser-fp32.onnx "
        "--out models/stream-ser.onnx",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder of the corpora (ravdess/, tess/, nemo/)")
    parser.add_argument("--model", required=True, type=Path, help="fp32 ONNX model")
    parser.add_argument("--out", required=True, type=Path, help="int8 ONNX model to write")
    parser.add_argument("--clips", type=int, default=CALIBRATION["clips"],
                        help=f"training clips for calibration (default {CALIBRATION['clips']})")
    parser.add_argument("--windows", type=int, default=CALIBRATION["windows"],
                        help=f"most calibration windows (default {CALIBRATION['windows']})")
    parser.add_argument("--percentile", type=float, default=CALIBRATION["percentile"],
                        help=f"activation range percentile; 100 = min-max (default {CALIBRATION['percentile']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", type=Path, default=None,
                        help="split JSON whose training speakers calibrate (default: training/splits/si_v1.json)")
    parser.add_argument("--no-float-first-block", dest="float_first_block", action="store_false",
                        help="quantise the first convolution block too (slower; for comparison)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    split = load_split(args.split)
    train = [u.path for u in discover(args.data) if u.speaker in split.train]
    random.Random(args.seed).shuffle(train)
    windows = calibration_windows(train[: args.clips], EmotionModel(args.model), max_windows=args.windows)
    log.info("calibrating on %d windows of %d training clips", len(windows), min(args.clips, len(train)))
    quantize(args.model, args.out, windows, percentile=args.percentile, float_first_block=args.float_first_block,
             command="python -m training.quantize " + " ".join(sys.argv[1:]))
    log.info("wrote %s (%.2f MB)", args.out, args.out.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
