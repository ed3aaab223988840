"""Write the output prior (what a model says on average about its training voices) into a model.

Usage::

    python -m training.output_prior --data ../shared/data --model models/stream-ser.onnx \\
        --split training/splits/si_v1.json

Output adaptation (:class:`stream_ser.adaptation.OutputAdapter`, on by default in ``listen`` and
``analyse``) needs, per class, the mean log-probability the model gives the voices it was trained
on. ``python -m training.train`` writes it into every model it exports, from the Keras model's
outputs on its training windows. This command computes it for a model that has none (or
recomputes it, e.g. after quantisation): every clip of the split's training speakers is streamed
alone through :class:`stream_ser.engine.Engine` without adaptation, as ``analyse`` would, and the
speech windows' probabilities are averaged in the log domain. The model file is rewritten in
place (or to ``--out``) with everything else in its metadata kept; its provenance records how the
prior was made.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from stream_ser.adaptation import OutputPrior
from stream_ser.engine import Engine
from stream_ser.features import one_blas_thread
from stream_ser.metadata import METADATA_KEY, ModelMetadata
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio

from .corpora import discover
from .split import Split, load_split

log = logging.getLogger("training.output_prior")

#: Weight of the prior in windows: 40 windows = 20 s of speech at the 0.5 s hop, the best of
#: 5-80 windows on the validation speakers' streams (model card, "Adapting to the voice").
DEFAULT_PRIOR_WINDOWS = 40.0


def training_prior(model: EmotionModel, data: Path, split: Split,
                   prior_windows: float = DEFAULT_PRIOR_WINDOWS) -> OutputPrior:
    """The model's mean log-probabilities over the speech windows of ``split``'s training speakers.

    Args:
        model: The model (its own output prior, if any, is not used: engines run unadapted).
        data: Folder of the corpora.
        split: Its ``train`` speakers are read.
        prior_windows: Weight of the prior in windows.

    Raises:
        ValueError: If no training clip of the split is under ``data`` or none holds speech.
    """
    utts = [u for u in discover(Path(data)) if u.speaker in split.train and u.label]
    if not utts:
        raise ValueError(f"no clip of the training speakers of {split.name} under {data}")
    probs = []
    with one_blas_thread():
        for u in utts:
            engine = Engine(model, adapt="none")
            samples = load_audio(u.path, model.feature_config.sample_rate_hz)
            probs.extend(p.probabilities for p in engine.run([samples]) if p.is_speech)
    if not probs:
        raise ValueError(f"no speech window in the {len(utts)} training clips of {split.name}")
    log.info("prior from %d speech windows of %d clips", len(probs), len(utts))
    return OutputPrior.from_probabilities(np.asarray(probs), prior_windows)


def write_prior(path: Path, prior: OutputPrior, facts: dict, out: Path | None = None) -> Path:
    """Store ``prior`` as the ``output_prior`` of the model at ``path`` (written to ``out`` or in
    place), adding ``facts`` to its provenance under ``output_prior``; returns the file written.

    Raises:
        ModelMetadataError: If the model's metadata is invalid or the prior's class count differs.
    """
    import onnx

    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    meta = ModelMetadata.from_json(entry.value)
    meta = dataclasses.replace(meta, output_prior=prior, provenance={**meta.provenance, "output_prior": facts})
    entry.value = ModelMetadata.from_json(meta.to_json()).to_json()  # validated as the runtime will read it
    target = Path(out or path)
    onnx.save(proto, str(target))
    EmotionModel(target)
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m training.output_prior", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of the corpora (ravdess/, tess/, nemo/)")
    p.add_argument("--model", required=True, type=Path, help="ONNX model to give an output prior")
    p.add_argument("--split", type=Path, default=None,
                   help="split JSON whose training speakers the model was trained on (default: si_v1)")
    p.add_argument("--prior-windows", type=float, default=DEFAULT_PRIOR_WINDOWS,
                   help=f"weight of the prior in windows (default {DEFAULT_PRIOR_WINDOWS:g}: 20 s of speech)")
    p.add_argument("--out", type=Path, default=None, help="write here instead of rewriting --model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    split = load_split(args.split)
    model = EmotionModel(args.model)
    prior = training_prior(model, args.data, split, args.prior_windows)
    command = "python -m training.output_prior " + " ".join(sys.argv[1:] if argv is None else argv)
    written = write_prior(args.model, prior, {"split": split.name, "speakers": "train", "command": command}, args.out)
    print(f"{written}: output prior {', '.join(f'{lab} {v:+.2f}' for lab, v in zip(model.labels, prior.mean_log_prob))} "
          f"(weight {prior.prior_windows:g} windows)")


if __name__ == "__main__":
    main()
