"""Calibrated confidence: temperature scaling of an exported model (Guo et al. 2017).

Usage::

    python -m training.temperature --data ../shared/data --model models/stream-ser-fp32.onnx \\
        --split training/splits/si_v1.json --out stream-ser-fp32-calibrated.onnx --report temperature.json

A network trained with cross-entropy is usually over-confident: among windows it scores at 0.9,
fewer than 90 % are right. Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks", ICML) divides the logits by one scalar ``T > 0`` before the softmax, fitted to minimise
the negative log-likelihood (NLL) on held-out data. The argmax, so every label and accuracy
figure, is unchanged; only the confidence moves (``T > 1`` softens, ``T < 1`` sharpens).

The exported graph ends in a Softmax, so the logits are not an output; but ``log p`` differs from
the logits only by a per-window constant (the log of the softmax's normaliser), which the softmax
removes, so ``softmax(log p / T) == softmax(logits / T)``. The temperature is therefore fitted on
the probabilities the runtime produces: every clip of the split's *validation* speakers is
streamed alone through :class:`stream_ser.engine.Engine` without output adaptation (as
``stream-ser analyse --adapt none`` scores it), and each speech window counts once with its clip's
label. Test speakers are scored before and after, never used for fitting. The fitted temperature
is then written into the graph (a ``Mul`` by ``1/T`` in front of the final Softmax), recorded in
the metadata's provenance, and the written model's outputs are checked against
``softmax(log p / T)`` on the validation windows. Both float32 and int8 (QDQ) models work: the
Softmax and the tensor in front of it are float in both.

Calibration is measured by the expected calibration error (ECE, equal-width confidence bins, Guo
et al. 2017), the NLL and the window accuracy (unchanged by construction).

Known limits:

* The output prior (``output_prior`` in the metadata, the centred mean log-probabilities the
  output adapter starts from) is divided by ``T``: a window's centred log-probabilities are
  divided by ``T`` by the tempering, so their mean over the training windows is too (exactly,
  as long as no probability falls below the adapter's floor).
* The temperature is fitted on unadapted outputs; with output adaptation on, the runtime's
  probabilities are those of the tempered model shifted per voice, whose calibration is not
  measured here.
* A speaker-normalised model is scored with a fresh normaliser per clip (a new voice each clip),
  not with the per-speaker sessions of ``training.evaluate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream_ser.adaptation import OutputPrior
from stream_ser.engine import Engine
from stream_ser.features import one_blas_thread
from stream_ser.metadata import METADATA_KEY, ModelMetadata
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio

from .corpora import Utterance, discover
from .split import load_split

log = logging.getLogger("training.temperature")

#: Search interval of the fitted temperature (inclusive bounds; the fit runs over ``log T``).
DEFAULT_BOUNDS: tuple[float, float] = (0.05, 20.0)
#: Number of equal-width confidence bins of the ECE (Guo et al. 2017 use 15).
DEFAULT_BINS = 15
#: Largest difference allowed between the written model's outputs and ``softmax(log p / T)``.
CHECK_ATOL = 1e-5
#: Floor of probabilities before the log: below float32's smallest subnormal (1.4e-45), so it only
#: replaces exact zeros (a softmax underflow) and leaves every representable probability as it is.
_LOG_FLOOR = 1e-300


def window_probabilities(model: EmotionModel, utts: Sequence[Utterance]) -> tuple[np.ndarray, np.ndarray]:
    """Every speech window's probabilities, as the runtime scores them, and its clip's class.

    Each clip is streamed alone through a fresh :class:`~stream_ser.engine.Engine` (the model's
    hop, its speech gate, the final partial hop) with ``adapt="none"``, so the
    probabilities are the model's own. Clips without a label (``Utterance.label`` None) or with
    a label the model has no class for are left out (logged); a clip with no speech window adds
    nothing.

    Args:
        model: The model.
        utts: Labelled clips.

    Returns:
        ``(probabilities, y)``: float64 ``(n_windows, n_classes)`` in the model's label order, rows
        summing to 1 (to float32 precision), and int64 ``(n_windows,)``, the index in
        ``model.labels`` of each window's clip label. Windows are in clip order, then time order.
    """
    index = {label: i for i, label in enumerate(model.labels)}
    usable = [u for u in utts if u.label in index]
    if len(usable) < len(utts):
        log.warning("left out %d of %d clips whose label is not one of the model's %s",
                    len(utts) - len(usable), len(utts), list(model.labels))
    probs: list[tuple[float, ...]] = []
    y: list[int] = []
    sr = model.feature_config.sample_rate_hz
    with one_blas_thread():
        for u in usable:
            engine = Engine(model, adapt="none")
            for p in engine.run([load_audio(u.path, sr)]):
                if p.is_speech and p.probabilities is not None:
                    probs.append(p.probabilities)
                    y.append(index[u.label])
    n_classes = len(model.labels)
    return (np.asarray(probs, dtype=np.float64).reshape(-1, n_classes), np.asarray(y, dtype=np.int64))


def _check(probabilities: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated float64 probabilities and int64 labels; raises ValueError (see the callers)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape (n_windows > 0, n_classes >= 2), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probabilities must be finite and non-negative")
    if y is None:
        return p, None
    labels = np.asarray(y)
    if labels.shape != (p.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected {p.shape[0]} integer class indices, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= p.shape[1]:
        raise ValueError(f"class indices must be in [0, {p.shape[1]}), got [{labels.min()}, {labels.max()}]")
    return p, labels.astype(np.int64)


def _tempered_log(p: np.ndarray, temperature: float) -> np.ndarray:
    """``log softmax(log p / T)`` of validated probabilities, float64."""
    from scipy.special import log_softmax

    return log_softmax(np.log(np.maximum(p, _LOG_FLOOR)) / temperature, axis=1)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return t


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of the same model with its logits divided by ``temperature``.

    ``softmax(log p / T)``, equal to ``softmax(logits / T)`` because ``log p`` differs from the
    logits by a per-row constant. A probability of exactly 0 (a float32 softmax underflow) is
    treated as ``1e-300``.

    Args:
        probabilities: ``(n, n_classes)`` softmax outputs (any float dtype).
        temperature: ``T > 0``; 1 returns the input (to float64 rounding).

    Returns:
        float64 ``(n, n_classes)``, rows summing to 1.

    Raises:
        ValueError: If the array is not ``(n > 0, n_classes >= 2)``, holds a negative or
            non-finite value, or ``temperature`` is not positive and finite.
    """
    p, _ = _check(probabilities)
    return np.exp(_tempered_log(p, _check_temperature(temperature)))


def negative_log_likelihood(probabilities: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per window) of the true classes, after ``temperature``.

    Args:
        probabilities: float ``(n, n_classes)`` softmax outputs.
        y: int ``(n,)`` true class indices.
        temperature: ``T > 0`` applied first (:func:`tempered`); 1: the probabilities as they are.

    Raises:
        ValueError: As :func:`tempered`, or if ``y`` has the wrong shape, is not integer or
            holds an index outside ``[0, n_classes)``.
    """
    p, labels = _check(probabilities, y)
    log_q = _tempered_log(p, _check_temperature(temperature))
    return float(-log_q[np.arange(len(labels)), labels].mean())


def fit_temperature(probabilities: np.ndarray, y: np.ndarray,
                    bounds: tuple[float, float] = DEFAULT_BOUNDS) -> float:
    """The temperature minimising the NLL of ``softmax(log p / T)`` (Guo et al. 2017).

    The NLL is convex in ``1/T`` (a log-sum-exp of functions linear in ``1/T``, minus one of
    them), hence unimodal in ``log T``; it is minimised over ``log T`` within ``bounds`` by
    bounded Brent search (``scipy.optimize.minimize_scalar(method="bounded")``, to about 1e-6
    relative in ``T``). A minimum at a bound means the data ask for a temperature outside it.

    Args:
        probabilities: float ``(n, n_classes)`` softmax outputs of held-out windows.
        y: int ``(n,)`` their true class indices.
        bounds: ``(low, high)``, ``0 < low < high``: the temperatures searched.

    Returns:
        The fitted temperature ``T`` (> 1: the model was over-confident).

    Raises:
        ValueError: As :func:`negative_log_likelihood`, or if ``bounds`` is not ``0 < low < high``
            (finite).
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    p, labels = _check(probabilities, y)
    low, high = (float(b) for b in bounds)
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds!r}")
    log_p = np.log(np.maximum(p, _LOG_FLOOR))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(log_p / math.exp(log_t), axis=1)[rows, labels].mean())

    res = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded",
                          options={"xatol": 1e-6})
    t = float(min(max(math.exp(res.x), low), high))
    if t <= low * (1 + 1e-3) or t >= high * (1 - 1e-3):
        log.warning("fitted temperature %.4g is at the bound of [%g, %g]", t, low, high)
    return t


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, list]:
    """Reliability diagram data: per equal-width confidence bin, count, accuracy and confidence.

    The confidence of a window is its largest probability, its prediction the argmax; bin ``m``
    (0-based) holds the confidences in ``(m/bins, (m+1)/bins]`` (a confidence of 0 goes to bin 0),
    as in Guo et al. 2017.

    Args:
        probabilities: float ``(n, n_classes)`` softmax outputs.
        y: int ``(n,)`` true class indices.
        bins: Number of bins (>= 1).

    Returns:
        ``{"upper": [...], "count": [...], "accuracy": [...], "confidence": [...]}``, one entry
        per bin; upper edges as floats, counts as ints, and for an empty bin accuracy and
        confidence None.

    Raises:
        ValueError: As :func:`negative_log_likelihood`, or if ``bins`` < 1.
    """
    p, labels = _check(probabilities, y)
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bins = int(bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc = np.bincount(which, weights=correct, minlength=bins)
    cnf = np.bincount(which, weights=conf, minlength=bins)
    return {
        "upper": [(m + 1) / bins for m in range(bins)],
        "count": [int(c) for c in count],
        "accuracy": [float(a / c) if c else None for a, c in zip(acc, count)],
        "confidence": [float(s / c) if c else None for s, c in zip(cnf, count)],
    }


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_m |B_m| / n * |accuracy(B_m) - confidence(B_m)|`` over the bins of
    :func:`reliability`: 0 for a perfectly calibrated model, at most 1.

    Args:
        probabilities: float ``(n, n_classes)`` softmax outputs.
        y: int ``(n,)`` true class indices.
        bins: Number of bins (>= 1; 15 as in Guo et al.).

    Returns:
        The ECE as a fraction (0.05 = 5 percentage points).

    Raises:
        ValueError: As :func:`reliability`.
    """
    r = reliability(probabilities, y, bins)
    n = sum(r["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"]) if c))


def calibration_figures(probabilities: np.ndarray, y: np.ndarray, temperature: float = 1.0,
                        bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """ECE, NLL, window accuracy and mean confidence after ``temperature``, as one JSON-able dict.

    Args:
        probabilities: float ``(n, n_classes)`` softmax outputs.
        y: int ``(n,)`` true class indices.
        temperature: ``T > 0`` applied first (1: as they are).
        bins: ECE bins.

    Returns:
        ``{"windows", "ece", "nll", "accuracy", "mean_confidence", "reliability"}`` (NLL in nats
        per window, the others fractions; ``reliability`` as :func:`reliability`).

    Raises:
        ValueError: As :func:`tempered` and :func:`reliability`.
    """
    q = tempered(probabilities, temperature)
    _, labels = _check(q, y)
    return {
        "windows": int(len(labels)),
        "ece": expected_calibration_error(q, labels, bins),
        "nll": negative_log_likelihood(probabilities, labels, temperature),
        "accuracy": float((q.argmax(axis=1) == labels).mean()),
        "mean_confidence": float(q.max(axis=1).mean()),
        "reliability": reliability(q, labels, bins),
    }


def apply_temperature(in_path: str | Path, out_path: str | Path, temperature: float, *,
                      fitted_on: Any = None, ece_before: float | None = None, ece_after: float | None = None,
                      command: str | None = None) -> Path:
    """Write a copy of a model whose final Softmax sees its input divided by ``temperature``.

    A ``Mul`` by the float32 constant ``1/T`` is inserted in front of the Softmax node that
    produces the graph output named in the metadata (``probabilities``); nothing else in the
    graph changes (in an int8 QDQ model the Softmax and its input are float, so the Mul is too).
    The metadata entry is rewritten with every field kept (labels, feature recipe, speaker norm,
    the rest of the provenance), the output prior divided by ``T``, and ``provenance["temperature"]`` set to
    ``{"value": T, "fitted_on": ..., "ece_before": ..., "ece_after": ..., "command": ...}``; a
    temperature recorded there before (a model tempered twice, whose effective temperature is
    the product) is kept under that record's ``"previous"``. The result passes
    ``onnx.checker.check_model`` and is loaded back through :class:`~stream_ser.model.EmotionModel`.

    Args:
        in_path: The model to temper (not modified unless ``out_path`` is the same file).
        out_path: Where to write the tempered model.
        temperature: ``T > 0``; 1 gives a model with the same outputs.
        fitted_on: What the temperature was fitted on (JSON-serialisable), recorded as is.
        ece_before: ECE of the input model on that data, recorded as is.
        ece_after: ECE after the temperature, recorded as is.
        command: The command that fitted it, recorded as is.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``temperature`` is not positive and finite, or the graph output is not
            produced by a Softmax node.
        stream_ser.metadata.ModelMetadataError: If the model's metadata is missing or invalid.
        onnx.checker.ValidationError: If the rewritten graph is not valid ONNX.
        stream_ser.model.ModelError: If the runtime cannot load the written model.
    """
    import onnx
    from onnx import helper, numpy_helper

    t = _check_temperature(temperature)
    proto = onnx.load(str(in_path))
    entries = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    if not entries:
        from stream_ser.metadata import ModelMetadataError

        raise ModelMetadataError(f"{in_path}: no '{METADATA_KEY}' metadata")
    meta = ModelMetadata.from_json(entries[0].value)
    graph = proto.graph
    producers = [i for i, n in enumerate(graph.node) if meta.output_name in n.output]
    if len(producers) != 1 or graph.node[producers[0]].op_type != "Softmax":
        ops = [graph.node[i].op_type for i in producers]
        raise ValueError(f"{in_path}: graph output '{meta.output_name}' is made by {ops or 'no node'}, not one Softmax")
    at = producers[0]
    softmax = graph.node[at]
    taken = {v for n in graph.node for v in (*n.input, *n.output, n.name)} | {i.name for i in graph.initializer}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    scale_name = fresh("temperature/inverse_temperature")
    scaled_name = fresh("temperature/scaled_logits")
    # at the rank of the (batch, classes) logits: onnxruntime's fast elementwise path, and
    # nothing for training.graph_passes.match_scalar_ranks to rewrite
    graph.initializer.append(numpy_helper.from_array(np.full((1, 1), 1.0 / t, dtype=np.float32), scale_name))
    mul = helper.make_node("Mul", [softmax.input[0], scale_name], [scaled_name], name=fresh("temperature/Mul"))
    softmax.input[0] = scaled_name
    graph.node.insert(at, mul)

    record: dict[str, Any] = {"value": t, "fitted_on": fitted_on, "ece_before": ece_before,
                              "ece_after": ece_after, "command": command}
    if "temperature" in meta.provenance:
        record["previous"] = meta.provenance["temperature"]
    prior = meta.output_prior
    if prior is not None:  # the centred log-probabilities of every window are divided by T
        prior = OutputPrior(tuple(v / t for v in prior.mean_log_prob), prior.prior_windows)
    meta = dataclasses.replace(meta, output_prior=prior, provenance={**meta.provenance, "temperature": record})
    entries[0].value = ModelMetadata.from_json(meta.to_json()).to_json()  # validated as the runtime reads it
    onnx.checker.check_model(proto)
    target = Path(out_path)
    onnx.save(proto, str(target))
    EmotionModel(target)
    return target


def check_tempered(old_probabilities: np.ndarray, new_probabilities: np.ndarray, temperature: float,
                   atol: float = CHECK_ATOL) -> float:
    """Check that a tempered model's outputs are ``softmax(log p_old / T)`` on the same windows.

    Args:
        old_probabilities: ``(n, n_classes)`` outputs of the original model.
        new_probabilities: ``(n, n_classes)`` outputs of the tempered model on the same windows.
        temperature: The temperature written into the tempered model.
        atol: Largest absolute difference allowed.

    Returns:
        The largest absolute difference found.

    Raises:
        ValueError: If the shapes differ, or (as :func:`tempered`) the inputs are invalid, or the
            difference exceeds ``atol``.
    """
    want = tempered(old_probabilities, temperature)
    got, _ = _check(new_probabilities)
    if got.shape != want.shape:
        raise ValueError(f"tempered model gave {got.shape} probabilities, the original {want.shape}")
    worst = float(np.abs(got - want).max())
    if worst > atol:
        raise ValueError(f"tempered model differs from softmax(log p / T) by up to {worst:.3g} (> {atol:g})")
    return worst


def _line(name: str, figures: dict[str, Any]) -> str:
    return (f"  {name:<6} ECE {figures['ece']:.4f}  NLL {figures['nll']:.4f}  "
            f"accuracy {figures['accuracy']:.4f}  mean confidence {figures['mean_confidence']:.4f}")


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m training.temperature", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of the corpora (ravdess/, tess/, nemo/)")
    p.add_argument("--model", required=True, type=Path, help="ONNX model to calibrate (float32 or int8)")
    p.add_argument("--split", type=Path, default=None,
                   help="split JSON; the temperature is fitted on its validation speakers (default: si_v1)")
    p.add_argument("--out", required=True, type=Path, help="where to write the tempered model")
    p.add_argument("--report", type=Path, default=None, help="write the figures here as JSON")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS, help=f"ECE bins (default {DEFAULT_BINS})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.out.resolve() == args.model.resolve():
        p.error("--out must differ from --model (the original is needed to check the tempered one)")
    split = load_split(args.split)
    parts = split.partition(discover(args.data))
    if not parts["validation"]:
        p.error(f"no clip of the validation speakers of {split.name} under {args.data}")
    model = EmotionModel(args.model)
    command = "python -m training.temperature " + " ".join(sys.argv[1:] if argv is None else argv)

    val_p, val_y = window_probabilities(model, parts["validation"])
    if not len(val_y):
        p.error(f"no speech window in the {len(parts['validation'])} validation clips")
    t = fit_temperature(val_p, val_y)
    figures: dict[str, dict[str, Any]] = {"validation": {}, "test": {}}
    figures["validation"]["all"] = {"before": calibration_figures(val_p, val_y, 1.0, args.bins),
                                    "after": calibration_figures(val_p, val_y, t, args.bins)}
    test_by_corpus: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for corpus in sorted({u.corpus for u in parts["test"]}):
        tp, ty = window_probabilities(model, [u for u in parts["test"] if u.corpus == corpus])
        if len(ty):
            test_by_corpus[corpus] = (tp, ty)
    if test_by_corpus:
        groups = dict(test_by_corpus)
        if len(groups) > 1:
            groups = {"all": (np.concatenate([v[0] for v in groups.values()]),
                              np.concatenate([v[1] for v in groups.values()])), **groups}
        for name, (tp, ty) in groups.items():
            figures["test"][name] = {"before": calibration_figures(tp, ty, 1.0, args.bins),
                                     "after": calibration_figures(tp, ty, t, args.bins)}

    fitted_on = {"split": split.name, "speakers": "validation", "clips": len(parts["validation"]),
                 "windows": int(len(val_y))}
    written = apply_temperature(args.model, args.out, t, fitted_on=fitted_on,
                                ece_before=figures["validation"]["all"]["before"]["ece"],
                                ece_after=figures["validation"]["all"]["after"]["ece"], command=command)
    new_p, _ = window_probabilities(EmotionModel(written), parts["validation"])
    try:
        worst = check_tempered(val_p, new_p, t)
    except ValueError:
        written.unlink()
        raise
    log.info("tempered model matches softmax(log p / T) on %d validation windows (max |diff| %.2g)",
             len(val_y), worst)

    print(f"{args.model}: temperature T = {t:.4f}, fitted on {len(val_y)} speech windows of "
          f"{len(parts['validation'])} clips of the {split.name} validation speakers")
    for part, groups_ in figures.items():
        for name, ba in groups_.items():
            print(f"{part} ({name}, {ba['before']['windows']} windows):")
            print(_line("before", ba["before"]))
            print(_line("after", ba["after"]))
    print(f"wrote {written} (outputs checked against softmax(log p / T), max |diff| {worst:.2g})")
    if args.report is not None:
        report = {"model": str(args.model), "out": str(written), "split": split.name, "temperature": t,
                  "bounds": list(DEFAULT_BOUNDS), "bins": args.bins, "fitted_on": fitted_on,
                  "check_max_abs_diff": worst, "command": command, **figures}
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
