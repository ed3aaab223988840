"""Average several trained networks into one ONNX model: the mean of their logits, one softmax.

Usage::

    python -m training.ensemble --data ../shared/data --out runs/ensemble.onnx \\
        runs/roomvad/NAME-s0.keras runs/roomvad/NAME-s1.keras

Networks trained from different seeds make partly independent errors, and the mean of their
logits (equivalently, the normalised geometric mean of their probabilities) is more accurate and
better calibrated than any one of them (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and
scalable predictive uncertainty estimation using deep ensembles", NeurIPS). The members must be
Keras models saved by ``python -m training.train`` whose last layer is the ``Dense`` softmax layer
named ``probabilities``, trained on the same feature recipe (each member's ``.onnx`` beside its
``.keras`` file carries it). The ensemble is one Keras graph -- every member's network up to its
logits, a mean, a softmax -- exported through :func:`training.export.export_onnx` as any trained
model, so the runtime needs nothing new: it runs one ONNX model whose cost is the sum of its
members' (``python -m training.experiments cost`` measures it the same way).

The exported file has no output prior; write one with ``python -m training.output_prior`` as for
any model, then a temperature (``training.temperature``) and int8 (``training.quantize``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata
from stream_ser.model import EmotionModel

from .labels import EMOTIONS

log = logging.getLogger("training.ensemble")

#: Name of each member's final softmax layer (``training.architectures``).
OUTPUT_LAYER = "probabilities"


def member_metadata(keras_path: Path) -> ModelMetadata:
    """The metadata of the ONNX model exported beside a ``.keras`` member (same stem).

    Raises:
        FileNotFoundError: If there is no ``.onnx`` file beside it.
        stream_ser.metadata.ModelMetadataError: If its metadata is missing or invalid.
    """
    onnx_path = Path(keras_path).with_suffix(".onnx")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{keras_path}: no exported model {onnx_path.name} beside it (its feature recipe)")
    return EmotionModel(onnx_path).metadata


def build_ensemble(members: Sequence[Any], n_mels: int, n_frames: int) -> Any:
    """One Keras model: every member up to its logits, their mean, a softmax.

    Args:
        members: Keras models mapping float32 ``(batch, n_mels, n_frames, 1)`` to softmax
            probabilities through a last ``Dense`` layer named ``probabilities``.
        n_mels: Mel bands of the input window.
        n_frames: Frames of the input window.

    Returns:
        A Keras model from ``(batch, n_mels, n_frames, 1)`` float32 to ``(batch, n_classes)``
        probabilities, ``softmax(mean_i logits_i)``; its weights are the members' (copied).

    Raises:
        ValueError: If there are fewer than two members, a member has no ``Dense`` softmax layer
            named ``probabilities``, or the members' numbers of classes differ.
    """
    import keras
    from keras import layers

    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    x = keras.Input((n_mels, n_frames, 1), name="log_mel")
    logits, n_classes = [], set()
    for i, member in enumerate(members):
        try:
            head = member.get_layer(OUTPUT_LAYER)
        except ValueError:
            raise ValueError(f"member {i} has no layer named {OUTPUT_LAYER!r}") from None
        if not isinstance(head, layers.Dense) or head.activation is not keras.activations.softmax:
            raise ValueError(f"member {i}: layer {OUTPUT_LAYER!r} is not a Dense softmax layer")
        body = keras.Model(member.inputs, head.input, name=f"member{i}")
        kernel, bias = head.get_weights()
        n_classes.add(kernel.shape[1])
        dense = layers.Dense(kernel.shape[1], name=f"member{i}_logits")
        z = dense(body(x))
        dense.set_weights([kernel, bias])
        logits.append(z)
    if len(n_classes) != 1:
        raise ValueError(f"members disagree on the number of classes: {sorted(n_classes)}")
    mean = layers.Average(name="mean_logits")(logits)
    out = layers.Activation("softmax", name=OUTPUT_LAYER)(mean)
    return keras.Model(x, out, name="ensemble")


def main(argv: list[str] | None = None) -> None:
    """Command line: build, export with parity check, and log where the model went."""
    import keras

    from .corpora import discover
    from .export import export_onnx
    from .split import load_split
    from .windows import build_features

    parser = argparse.ArgumentParser(
        prog="python -m training.ensemble", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m training.ensemble --data ../shared/data --out runs/ens.onnx "
        "runs/roomvad/A-s0.keras runs/roomvad/A-s1.keras")
    parser.add_argument("members", nargs="+", help="two or more .keras models saved by training.train, "
                        "each with its exported .onnx beside it")
    parser.add_argument("--data", required=True, help="corpora folder, for real parity windows (validation speakers)")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument("--split", default=None, help="split JSON whose validation speakers give the parity windows "
                        "(default: training/splits/si_v1.json)")
    parser.add_argument("--cache", default=".cache", help="feature cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if len(args.members) < 2:
        parser.error("give at least two members")
    try:
        metas = [member_metadata(Path(m)) for m in args.members]
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    config: FeatureConfig = metas[0].feature_config
    for path, meta in zip(args.members[1:], metas[1:]):
        if meta.feature_config != config:
            parser.error(f"{path}: trained on another feature recipe than {args.members[0]}")
        if tuple(meta.labels) != tuple(metas[0].labels):
            parser.error(f"{path}: its labels differ from {args.members[0]}'s")
    members = [keras.models.load_model(m) for m in args.members]
    model = build_ensemble(members, *config.input_shape)
    split = load_split(Path(args.split) if args.split else None)
    val = [u for u in split.partition(discover(Path(args.data)))["validation"] if u.label][:40]
    windows = build_features(val, config, Path(args.cache)).log_mels.astype(np.float32)[:64]
    provenance = {
        "architecture": "ensemble of %d: %s" % (len(members), ", ".join(
            str(m.provenance.get("architecture", "?")) for m in metas)),
        "parameters": int(model.count_params()),
        "ensemble": [{"file": Path(p).name, **{k: m.provenance[k] for k in
                      ("architecture", "seed", "split", "epochs_run", "best_epoch", "schedule", "room_copies",
                       "train_windows", "command") if k in m.provenance}}
                     for p, m in zip(args.members, metas)],
        "data": sorted({d for m in metas for d in m.provenance.get("data", [])}),
        "split": metas[0].provenance.get("split"),
        "train_speakers": sorted({s for m in metas for s in m.provenance.get("train_speakers", [])}),
        "validation_speakers": sorted({s for m in metas for s in m.provenance.get("validation_speakers", [])}),
        "test_speakers": sorted({s for m in metas for s in m.provenance.get("test_speakers", [])}),
        "command": "python -m training.ensemble " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    export_onnx(model, Path(args.out), tuple(metas[0].labels) or EMOTIONS, config, provenance, windows)
    log.info("ensemble of %d members written to %s", len(members), args.out)


if __name__ == "__main__":
    main()
