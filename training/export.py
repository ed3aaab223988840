"""Export a trained Keras model to ONNX with its metadata, and check parity.

``export_onnx`` converts with tf2onnx (``tf2onnx.convert.from_function`` on a ``tf.function``
with a fixed input signature: Keras 3 models are converted through their call, not
``from_keras``), names the graph input ``log_mel`` and output ``probabilities`` (softmax is the
model's last layer, so it is inside the graph), writes labels, the full
:class:`~stream_ser.features.FeatureConfig` and provenance as one JSON metadata entry
(:mod:`stream_ser.metadata`), then loads the file back through the runtime's
:class:`~stream_ser.model.EmotionModel` and compares Keras and onnxruntime outputs on real
windows. A difference above :data:`PARITY_TOLERANCE` aborts the export. Before saving, the
graph gets the exact rewrites of :mod:`training.graph_passes` (scalar constants at full rank,
per-channel affines as blocked convolutions after the max-pool).

Usage (re-export a saved Keras model)::

    python -m training.export runs/stream-ser.keras --out models/stream-ser.onnx --data ../shared/data
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stream_ser.adaptation import OutputPrior, SpeakerNorm
from stream_ser.features import FeatureConfig
from stream_ser.metadata import METADATA_KEY, ModelMetadata

from .graph_passes import apply_all

log = logging.getLogger("training.export")

#: Largest allowed absolute difference between Keras and onnxruntime probabilities.
PARITY_TOLERANCE = 1e-4
#: ONNX opset used for export (supported by onnxruntime >= 1.17).
OPSET = 17


class ExportParityError(RuntimeError):
    """onnxruntime's outputs differ from Keras's by more than :data:`PARITY_TOLERANCE`."""


def _rename_value(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for v in list(graph.input) + list(graph.output):
        if v.name == old:
            v.name = new


def export_onnx(
    model: Any,
    path: Path,
    labels: tuple[str, ...],
    config: FeatureConfig,
    provenance: dict[str, Any],
    parity_windows: np.ndarray,
    speaker_norm: SpeakerNorm | None = None,
    output_prior: OutputPrior | None = None,
) -> float:
    """Convert, annotate, save and verify.

    Args:
        model: A Keras model mapping float32 ``(batch, n_mels, n_frames, 1)`` to softmax
            probabilities ``(batch, len(labels))``.
        path: Output ``.onnx`` file (parent folders are created).
        labels: Class names in output order.
        config: The feature recipe the model was trained on.
        provenance: Facts recorded in the metadata (data, split, versions, command).
        parity_windows: Real log-mel windows, float32 ``(n, n_mels, n_frames)``, n >= 1.
        speaker_norm: For a model trained on causally speaker-normalised log-mels
            (``training.experiments train --speaker-norm causal``), the prior written into the
            metadata, so the runtime normalises each channel the same way.
        output_prior: The model's mean log-probabilities on its training windows, written into
            the metadata so the runtime can adapt the output to each voice
            (:class:`stream_ser.adaptation.OutputAdapter`); None writes none.

    Returns:
        The largest absolute Keras-vs-onnxruntime difference observed.

    Raises:
        ExportParityError: If that difference exceeds :data:`PARITY_TOLERANCE`.
        ValueError: If no parity windows are given.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from stream_ser.model import EmotionModel

    if len(parity_windows) == 0:
        raise ValueError("parity check needs at least one real window")
    n_mels, n_frames = config.input_shape
    spec = (tf.TensorSpec((None, n_mels, n_frames, 1), tf.float32, name="log_mel"),)
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    graph = proto.graph
    if len(graph.output) != 1 or len(graph.input) != 1:
        raise RuntimeError(f"expected one input and one output, got {len(graph.input)} and {len(graph.output)}")
    _rename_value(graph, graph.output[0].name, "probabilities")
    _rename_value(graph, graph.input[0].name, "log_mel")
    for v in (graph.input[0], graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    tf_versions = {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "opset": OPSET}
    meta = ModelMetadata(labels, config, "log_mel", "probabilities", {**provenance, **tf_versions}, speaker_norm,
                         output_prior)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    proto.producer_name = "stream-ser training.export"
    apply_all(proto)  # exact rewrites for onnxruntime's fast paths (training.graph_passes)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))

    runtime = EmotionModel(path)
    x = np.asarray(parity_windows, dtype=np.float32)
    want = model.predict(x[..., None], verbose=0, batch_size=64)
    got = runtime.predict(x)
    diff = float(np.max(np.abs(want - got)))
    if not diff <= PARITY_TOLERANCE:
        path.unlink()
        raise ExportParityError(
            f"Keras and onnxruntime differ by {diff:.2e} (> {PARITY_TOLERANCE:.0e}) on {len(x)} windows; "
            f"export removed"
        )
    log.info("exported %s (%d bytes); parity on %d real windows: max |diff| = %.2e", path, path.stat().st_size, len(x), diff)
    return diff


def main(argv: list[str] | None = None) -> None:
    """Re-export a saved ``.keras`` model (parity checked on validation windows)."""
    import json

    import keras

    from .corpora import discover
    from .split import load_split
    from .windows import build_features

    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("keras_model", help="a model saved by training.train (runs/NAME.keras)")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument("--data", required=True, help="corpora folder, for real parity windows")
    parser.add_argument("--provenance", default=None, help="JSON file of provenance facts to embed")
    parser.add_argument("--recipe", default="shipped", metavar="NAME|PATH",
                        help="the recipe the model was trained with (training/recipes/ name, .toml, run JSON); its "
                        "feature recipe (mel band edge, speech gate) is written into the model (default: shipped)")
    parser.add_argument(
        "--speaker-norm", choices=("none", "causal"), default="none",
        help="the model was trained on causally speaker-normalised log-mels (training.experiments "
        "--speaker-norm causal): write the prior, computed from the split's training and validation "
        "speakers as training does, into the metadata",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .labels import EMOTIONS

    from .recipe import load_recipe

    try:
        config = load_recipe(args.recipe).feature_config()
    except ValueError as exc:
        parser.error(str(exc))
    model = keras.models.load_model(args.keras_model)
    split = load_split()
    val = [u for u in split.partition(discover(Path(args.data)))["validation"] if u.label][:40]
    fs = build_features(val, config, cache_dir=None)
    prov = json.loads(Path(args.provenance).read_text()) if args.provenance else {"source": args.keras_model}
    norm = None
    if args.speaker_norm == "causal":
        known = [u for u in discover(Path(args.data)) if u.label and u.speaker not in split.test]
        norm = SpeakerNorm.from_windows(build_features(known, config).log_mels)  # cached, as training's
        prov["speaker_norm"] = "causal (training.adaptation); prior = split train + validation speakers"
    export_onnx(model, Path(args.out), EMOTIONS, config, prov, fs.log_mels.astype(np.float32)[:64], norm)


if __name__ == "__main__":
    main()
