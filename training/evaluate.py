"""Speaker-independent evaluation of an exported ONNX model, through the runtime.

Usage::

    python -m training.evaluate --data ../shared/data            # the shipped model, test speakers
    python -m training.evaluate --data ../shared/data --model models/stream-ser.onnx --out models/
    python -m training.evaluate --data ../shared/data --gate level  # the level gate alone

Every test clip is streamed through :class:`stream_ser.engine.Engine` exactly as
``stream-ser analyse`` does (0.5 s hop, speech gate, final partial hop), so the figures describe
the shipped artifact, not a Keras model. ``--gate`` chooses the speech gate as ``analyse --gate``
does: ``vad`` (the default, the level gate and the Silero VAD) or ``level`` (the level gate alone,
the windows the model was trained on); ``docs/vad.md`` compares the two. Reported per corpus:

* **clip level**: the clip label is the argmax of the mean window probabilities over speech
  windows (a clip with no speech window counts as a miss, shown as ``(none)``);
* **window level**: each speech window's argmax against its clip's label;
* UAR (unweighted average recall: mean of per-class recalls, the headline figure), WA
  (accuracy) and macro-F1 (scikit-learn), per-class recall and a confusion matrix (PNG).

Test speakers come from the committed split (:mod:`training.split`): RAVDESS actors 21-24 and
TESS YAF; the model never saw them in training or model selection.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.adaptation import ADAPT_MODES, SpeakerNormaliser
from stream_ser.engine import Engine, summarise
from stream_ser.model import EmotionModel
from stream_ser.audio import FileSource
from stream_ser.vad import DEFAULT_GATE, GATES

from .corpora import Utterance, discover
from .split import load_split

log = logging.getLogger("training.evaluate")

#: Placeholder label for a clip in which no window passed the speech gate.
NO_SPEECH = "(none)"


@dataclass(frozen=True)
class ClipOutcome:
    """One evaluated clip.

    Attributes:
        utterance: The clip and its true label.
        predicted: Clip label (argmax of mean speech-window probabilities), or :data:`NO_SPEECH`.
        window_predictions: Argmax label of each speech window.
        n_windows: All windows scored (speech or not).
        calibration: True if every window of the clip fell in its speaker's calibration phase
            (``--calibrate``): the clip got no prediction and is left out of the scores.
    """

    utterance: Utterance
    predicted: str
    window_predictions: tuple[str, ...]
    n_windows: int
    calibration: bool = False


@dataclass(frozen=True)
class Scores:
    """Classification figures for one set of (true, predicted) labels.

    Attributes:
        n: Number of items.
        uar: Unweighted average recall over the classes present in the truth.
        wa: Accuracy (weighted average recall).
        macro_f1: Mean F1 over the classes present in the truth.
        recall: Per-class recall.
        classes: Row order of ``confusion`` (true classes).
        columns: Column order of ``confusion`` (predicted: classes, plus :data:`NO_SPEECH`).
        confusion: Counts, shape ``(len(classes), len(columns))``.
    """

    n: int
    uar: float
    wa: float
    macro_f1: float
    recall: dict[str, float]
    classes: tuple[str, ...]
    columns: tuple[str, ...]
    confusion: np.ndarray


def score(y_true: list[str], y_pred: list[str], labels: tuple[str, ...]) -> Scores:
    """UAR, WA, macro-F1, per-class recall and confusion matrix (scikit-learn metrics).

    Args:
        y_true: True labels.
        y_pred: Predicted labels (may include :data:`NO_SPEECH`, which counts as wrong).
        labels: The model's labels (defines the order of rows and columns).

    Raises:
        ValueError: If the lists are empty or of different lengths.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    if not y_true or len(y_true) != len(y_pred):
        raise ValueError("need equally long, non-empty label lists")
    present = tuple(lab for lab in labels if lab in set(y_true))
    columns = (*labels, NO_SPEECH)
    recalls = recall_score(y_true, y_pred, labels=list(present), average=None, zero_division=0)
    return Scores(
        n=len(y_true),
        uar=float(np.mean(recalls)),
        wa=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=list(present), average="macro", zero_division=0)),
        recall={lab: float(r) for lab, r in zip(present, recalls)},
        classes=present,
        columns=columns,
        confusion=confusion_matrix(y_true, y_pred, labels=list(columns))[: len(labels)][[labels.index(c) for c in present]],
    )


def evaluate_clips(
    model: EmotionModel, utts: list[Utterance], hop_s: float | None = None, seed: int = 0,
    calibration_windows: int = 0, adapt: str = "auto", gate: str = DEFAULT_GATE,
) -> list[ClipOutcome]:
    """Stream every clip through the runtime engine and collect its predictions.

    For a model with causal speaker normalisation (``model.metadata.speaker_norm``) each
    speaker's clips are streamed one after the other through one
    :class:`~stream_ser.adaptation.SpeakerNormaliser`, as one long session of that voice would
    be: in a random order (``seed``; speakers in sorted order draw from one generator, as
    ``training.adaptation`` orders them), each clip normalised with the statistics of that
    speaker's earlier clips and its own windows so far, never later ones.

    Args:
        model: The exported model.
        utts: Labelled clips.
        hop_s: Engine hop (default: the model's).
        seed: Clip order within a speaker (speaker-normalised models only).
        calibration_windows: Speaker-normalised models only: the first this many speech
            windows of each speaker only feed its statistics (``listen --calibrate``, see
            :class:`stream_ser.engine.Engine`); clips entirely inside that phase are marked
            :attr:`ClipOutcome.calibration`, partly inside ones are labelled from the rest.
        adapt: Adaptation to the voice as ``stream-ser analyse --adapt`` (one of
            :data:`stream_ser.adaptation.ADAPT_MODES`; default ``auto``, the best the model
            carries), one fresh voice per clip.
        gate: The engine's speech gate, ``"vad"`` (default, as ``stream-ser analyse``) or
            ``"level"``.

    Returns:
        One :class:`ClipOutcome` per clip, in the order of ``utts``.
    """
    sr = model.feature_config.sample_rate_hz
    order = list(range(len(utts)))
    normalisers: dict[str, SpeakerNormaliser | None] = {u.speaker: None for u in utts}
    if model.metadata.speaker_norm is not None:
        rng = np.random.default_rng(seed)
        order = []
        for speaker in sorted(normalisers):
            idx = [i for i, u in enumerate(utts) if u.speaker == speaker]
            order += [idx[j] for j in rng.permutation(len(idx))]
            normalisers[speaker] = SpeakerNormaliser(model.metadata.speaker_norm)
    out: dict[int, ClipOutcome] = {}
    t0 = time.monotonic()
    for n, i in enumerate(order):
        u = utts[i]
        source = FileSource(u.path, sr)
        engine = Engine(model, hop_s=hop_s, source=source.name, normaliser=normalisers[u.speaker],
                        calibration_windows=calibration_windows, adapt=adapt, gate=gate)
        was_calibrating = engine.calibrating
        preds = list(engine.run(source.chunks()))
        clip = summarise(preds, source.name, engine.samples_seen / sr, model.labels)
        out[i] = ClipOutcome(
            u,
            clip.label or NO_SPEECH,
            tuple(p.label for p in preds if p.is_speech and p.label),
            len(preds),
            was_calibrating and not preds,
        )
        if (n + 1) % 250 == 0:
            log.info("evaluated %d/%d clips (%.0f s)", n + 1, len(utts), time.monotonic() - t0)
    return [out[i] for i in range(len(utts))]


def corpus_scores(outcomes: list[ClipOutcome], labels: tuple[str, ...]) -> dict[str, dict[str, Scores]]:
    """Clip- and window-level :class:`Scores` per corpus (and ``all`` when several corpora).

    Returns:
        ``{corpus: {"clip": Scores, "window": Scores}}``.
    """
    groups: dict[str, list[ClipOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.utterance.corpus, []).append(o)
    if len(groups) > 1:
        groups["all"] = list(outcomes)
    result = {}
    for name, items in groups.items():
        clip = score([o.utterance.label for o in items], [o.predicted for o in items], labels)
        wt = [o.utterance.label for o in items for _ in o.window_predictions]
        wp = [w for o in items for w in o.window_predictions]
        result[name] = {"clip": clip, "window": score(wt, wp, labels)}
    return result


def clip_predictions(
    probs: np.ndarray, clip_index: np.ndarray, n_clips: int, labels: tuple[str, ...]
) -> list[str]:
    """Clip labels from window probabilities, exactly as :func:`stream_ser.engine.summarise`.

    The clip label is the argmax of the mean probabilities over the clip's speech windows (the
    cached windows of :mod:`training.windows` are exactly the engine's speech windows); a clip
    without any speech window gets :data:`NO_SPEECH` (counted as a miss).

    Args:
        probs: float ``(n_windows, len(labels))`` window probabilities.
        clip_index: int ``(n_windows,)``: clip of each window, in ``0..n_clips-1``.
        n_clips: Number of clips.
        labels: Class names in column order.

    Returns:
        One label per clip.
    """
    probs = np.asarray(probs, dtype=np.float64)
    sums = np.zeros((n_clips, probs.shape[1]))
    np.add.at(sums, np.asarray(clip_index), probs)
    counts = np.bincount(np.asarray(clip_index), minlength=n_clips)
    return [labels[int(np.argmax(s))] if c else NO_SPEECH for s, c in zip(sums, counts)]


@dataclass(frozen=True)
class FoldSummary:
    """Scores of one protocol over its folds, for one corpus and level.

    Attributes:
        pooled: :class:`Scores` of all folds' predictions together.
        per_fold: One :class:`Scores` per fold (folds without items of this corpus are left out).
        uar_mean: Mean of the per-fold UARs.
        uar_std: Their population standard deviation (0 for one fold).
    """

    pooled: Scores
    per_fold: tuple[Scores, ...]
    uar_mean: float
    uar_std: float


def summarise_folds(folds: list[tuple[list[str], list[str]]], labels: tuple[str, ...]) -> FoldSummary:
    """Pooled and per-fold scores of a cross-validation.

    Args:
        folds: ``(y_true, y_pred)`` per fold; empty folds are skipped.
        labels: Class names.

    Raises:
        ValueError: If every fold is empty.
    """
    per = tuple(score(t, p, labels) for t, p in folds if t)
    if not per:
        raise ValueError("no fold has items")
    all_t = [y for t, _ in folds for y in t]
    all_p = [y for _, p in folds for y in p]
    uars = np.array([s.uar for s in per])
    return FoldSummary(score(all_t, all_p, labels), per, float(uars.mean()), float(uars.std()))


def scores_to_dict(s: Scores) -> dict:
    """JSON-ready dict of a :class:`Scores`."""
    return {"n": s.n, "uar": s.uar, "wa": s.wa, "macro_f1": s.macro_f1, "recall": s.recall,
            "classes": list(s.classes), "columns": list(s.columns), "confusion": s.confusion.tolist()}


def scores_from_dict(d: dict) -> Scores:
    """Inverse of :func:`scores_to_dict`."""
    return Scores(d["n"], d["uar"], d["wa"], d["macro_f1"], d["recall"], tuple(d["classes"]), tuple(d["columns"]),
                  np.asarray(d["confusion"]))


def plot_confusion(s: Scores, title: str, path: Path) -> None:
    """Save a row-normalised confusion matrix as PNG (matplotlib, ``train`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = s.confusion.astype(float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(s.columns)), s.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(s.classes)), s.classes)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            if counts[i, j]:
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _markdown(results: dict[str, dict[str, Scores]], model: EmotionModel, command: str, counts: dict[str, tuple[int, int]],
              gate: str = DEFAULT_GATE) -> str:
    lines = [
        "# Evaluation of the shipped model (generated)",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}; do not edit by hand.",
        "",
        "Speaker-independent: the test speakers (RAVDESS actors 21-24, TESS YAF) were never used for training or",
        "model selection. Clip level = argmax of the mean window probabilities over speech windows, exactly as",
        f"`stream-ser analyse` reports a file, with the speech gate `{gate}` (`--gate`, docs/vad.md). Chance UAR",
        "for 7 classes is 0.143.",
        "",
        "| corpus | level | items | UAR | WA | macro-F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for level in ("clip", "window"):
            s = r[level]
            lines.append(f"| {name} | {level} | {s.n} | {s.uar:.3f} | {s.wa:.3f} | {s.macro_f1:.3f} |")
    lines += ["", "Per-class recall (clip level):", "", "| corpus | " + " | ".join(model.labels) + " |",
              "| --- |" + " ---: |" * len(model.labels)]
    for name, r in results.items():
        rec = r["clip"].recall
        lines.append(f"| {name} | " + " | ".join(f"{rec[lab]:.2f}" if lab in rec else "-" for lab in model.labels) + " |")
    lines += ["", "Clips and speakers evaluated: " + ", ".join(f"{c}: {n} clips, {k} speakers" for c, (n, k) in counts.items()), ""]
    for name in results:
        lines.append(f"![clip-level confusion matrix, {name}](confusion-{name}.png)")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Speaker-independent evaluation of an ONNX model on the test speakers of the committed split.",
        epilog="Example: python -m training.evaluate --data ../shared/data --out models/",
    )
    parser.add_argument("--data", required=True, help="folder of the corpora (ravdess/, tess/, nemo/)")
    parser.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    parser.add_argument("--partition", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--split", default=None, help="split JSON (default: training/splits/si_v1.json)")
    parser.add_argument("--adapt", choices=ADAPT_MODES, default="auto",
                        help="adaptation to the voice, one fresh voice per clip, as `stream-ser analyse --adapt` "
                        "(default: auto, the best the model carries: embedding, else output, else none)")
    parser.add_argument("--gate", choices=GATES, default=DEFAULT_GATE,
                        help="speech gate, as `stream-ser analyse --gate`: vad (default: the level gate and the Silero "
                        "VAD) or level (the level gate alone, the windows the model was trained on); docs/vad.md")
    parser.add_argument("--out", default=None, help="folder for EVALUATION.md, metrics.json and confusion PNGs")
    parser.add_argument("--calibrate", type=float, default=0.0, metavar="S",
                        help="speaker-normalised models: withhold the predictions of each test speaker's first S s of "
                        "speech, as `stream-ser listen --calibrate S` does; clips entirely inside it are left out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = EmotionModel(args.model)
    split = load_split(Path(args.split) if args.split else None)
    utts = [u for u in split.partition(discover(Path(args.data)))[args.partition] if u.label is not None]
    t0 = time.monotonic()
    windows = 0
    if args.calibrate > 0:
        if model.metadata.speaker_norm is None:
            parser.error(f"--calibrate: {model.name} does not normalise speakers")
        windows = int(np.ceil(args.calibrate / model.feature_config.hop_s - 1e-9))
    outcomes = evaluate_clips(model, utts, calibration_windows=windows, adapt=args.adapt,
                              gate=args.gate)
    log.info("evaluated %d clips in %.0f s", len(outcomes), time.monotonic() - t0)
    print(f"speech gate: {args.gate}; clips without a speech window ({NO_SPEECH}, counted as misses): "
          f"{sum(o.predicted == NO_SPEECH for o in outcomes)} of {len(outcomes)}")
    if windows:
        left_out = [o for o in outcomes if o.calibration]
        outcomes = [o for o in outcomes if not o.calibration]
        print(f"calibration: the first {windows} speech windows ({args.calibrate:g} s) of each speaker withheld; "
              f"{len(left_out)} clips entirely inside it left out, {len(outcomes)} scored")
    results = corpus_scores(outcomes, model.labels)
    for name, r in results.items():
        for level in ("clip", "window"):
            s = r[level]
            print(f"{name:8s} {level:6s} n={s.n:5d}  UAR {s.uar:.3f}  WA {s.wa:.3f}  macro-F1 {s.macro_f1:.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = "python -m training.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
        counts = {}
        for o in outcomes:
            c = o.utterance.corpus
            n, spk = counts.get(c, (0, set()))
            counts[c] = (n + 1, spk | {o.utterance.speaker})
        counts_n = {c: (n, len(s)) for c, (n, s) in counts.items()}
        for name, r in results.items():
            plot_confusion(r["clip"], f"{model.name}: {name}, clip level, {args.partition} speakers", out / f"confusion-{name}.png")
        (out / "EVALUATION.md").write_text(_markdown(results, model, command, counts_n, args.gate))
        metrics = {
            name: {
                level: {"n": s.n, "uar": s.uar, "wa": s.wa, "macro_f1": s.macro_f1, "recall": s.recall,
                        "classes": s.classes, "columns": s.columns, "confusion": s.confusion.tolist()}
                for level, s in r.items()
            }
            for name, r in results.items()
        }
        (out / "metrics.json").write_text(json.dumps({"model": model.name, "partition": args.partition, "gate": args.gate,
                                                      "metrics": metrics}, indent=1))
        log.info("wrote %s", out / "EVALUATION.md")


if __name__ == "__main__":
    main()
