"""Would a per-class bias on the model's output raise UAR? Measured on validation speakers only.

Usage::

    python -m training.class_bias --data ../shared/data [--model models/stream-ser.onnx] [--out FILE.json]

The shipped model almost never says "happy" (test recall 0.03 on RAVDESS). A common remedy is a
per-class log-bias ``b`` on the output: each window's probabilities become ``p * exp(b)``,
renormalised, before the clip mean (prior correction, tuned to maximise UAR). Tuning ``b`` on
the test speakers would be selecting on the test set, so this measures it on the validation
speakers of the committed split (RAVDESS actors 17-20) by **leave-one-actor-out**: tune ``b`` on
three actors (coordinate ascent over a grid of log-biases, the first class fixed at 0), score
the fourth with and without it, for each actor in turn. The mean held-out change estimates what
the bias would do for an unseen speaker; it decides whether a bias is worth shipping.

Clips are streamed through the runtime engine exactly as ``training.evaluate`` does (speech
windows, clip label = argmax of the mean window probabilities; a clip without speech is a miss).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from stream_ser.engine import Engine
from stream_ser.model import EmotionModel
from stream_ser.audio import FileSource

from .corpora import discover
from .evaluate import NO_SPEECH, score
from .split import load_split

log = logging.getLogger("training.class_bias")

#: Log-bias values tried per class in each pass of the coordinate ascent.
GRID = np.arange(-2.0, 2.001, 0.25)


def clip_window_probs(model: EmotionModel, paths: list[Path]) -> list[np.ndarray]:
    """Speech-window probabilities of each clip, float ``(n_windows, n_classes)`` (maybe 0 rows).

    Each clip is a fresh engine (for a speaker-normalised model, a fresh voice per clip).
    """
    out = []
    for path in paths:
        preds = Engine(model).run(FileSource(path, model.feature_config.sample_rate_hz).chunks())
        out.append(np.array([p.probabilities for p in preds if p.is_speech]).reshape(-1, len(model.labels)))
    return out


def biased_labels(probs: list[np.ndarray], bias: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    """Clip labels after the bias: argmax of the mean of the renormalised ``p * exp(bias)``."""
    out = []
    for p in probs:
        if len(p) == 0:
            out.append(NO_SPEECH)
            continue
        q = p * np.exp(bias)
        out.append(labels[int(np.argmax((q / q.sum(axis=1, keepdims=True)).mean(axis=0)))])
    return out


def tune_bias(probs: list[np.ndarray], truth: list[str], labels: tuple[str, ...], passes: int = 3) -> np.ndarray:
    """Log-bias ``(n_classes,)`` maximising clip UAR on the given clips (coordinate ascent over
    :data:`GRID`, class 0 fixed at 0, a change kept only if it raises UAR)."""
    bias = np.zeros(len(labels))
    best = score(truth, biased_labels(probs, bias, labels), labels).uar
    for _ in range(passes):
        for k in range(1, len(labels)):
            for v in GRID:
                trial = bias.copy()
                trial[k] = v
                s = score(truth, biased_labels(probs, trial, labels), labels).uar
                if s > best + 1e-9:
                    best, bias = s, trial
    return bias


def main(argv: list[str] | None = None) -> None:
    """Leave-one-actor-out on the validation speakers; prints a JSON report."""
    parser = argparse.ArgumentParser(prog="python -m training.class_bias", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="corpora folder")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    model = EmotionModel(args.model)
    labels = model.labels
    utts = [u for u in load_split().partition(discover(args.data))["validation"] if u.label]
    probs = clip_window_probs(model, [u.path for u in utts])
    truth = [u.label for u in utts]
    speakers = sorted({u.speaker for u in utts})
    folds = []
    for held in speakers:
        tune = [i for i, u in enumerate(utts) if u.speaker != held]
        test = [i for i, u in enumerate(utts) if u.speaker == held]
        bias = tune_bias([probs[i] for i in tune], [truth[i] for i in tune], labels)
        t_probs, t_truth = [probs[i] for i in test], [truth[i] for i in test]
        before = score(t_truth, biased_labels(t_probs, np.zeros(len(labels)), labels), labels).uar
        after = score(t_truth, biased_labels(t_probs, bias, labels), labels).uar
        folds.append({"held_out": held, "uar_without": round(before, 4), "uar_with": round(after, 4),
                      "bias": [round(float(b), 2) for b in bias]})
        log.info("%s: held-out clip UAR %.3f -> %.3f with bias %s", held, before, after, np.round(bias, 2))
    gain = float(np.mean([f["uar_with"] - f["uar_without"] for f in folds]))
    report = {"model": str(model.path), "labels": labels, "validation_clips": len(utts), "folds": folds,
              "mean_held_out_gain": round(gain, 4),
              "command": "python -m training.class_bias --data ../shared/data --out training/results/class_bias.json"}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
