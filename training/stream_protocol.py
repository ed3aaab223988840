"""The stream protocol: each test speaker as one long recording, scored as ``listen`` would.

Usage::

    # the shipped model on the committed split's test speakers, and on nEMO (never trained on)
    python -m training.stream_protocol --data ../shared/data --speakers test nemo
    # a model trained on si_v2, on its validation speakers
    python -m training.stream_protocol --data ../shared/data --split training/splits/si_v2.json \
        --speakers validation --model runs/v2/NAME.onnx

At a desk or on a call one voice talks for minutes, and a tool may use that: it can adapt to
the voice. Clip-by-clip evaluation (:mod:`training.evaluate`) cannot show it, because every clip
is a fresh stream. Here each speaker's clips are shuffled with a fixed seed and joined into one
recording with 1 s of silence between them; :class:`stream_ser.engine.Engine` scores it exactly
as ``listen`` or ``analyse`` would (0.5 s hop, 3 s window, speech gate, final partial hop). Each
window belongs to the clip it overlaps most; a clip's label is the argmax of the mean
probabilities over its speech windows (a clip with none is a miss, as in clip evaluation).

Adaptation modes compared on the same windows (the model's raw probabilities are computed once):

``none``
    the model's probabilities as they are;
``output``
    causal output adaptation, :class:`stream_ser.adaptation.OutputAdapter`, the runtime's own
    class, run over the stream's speech windows in time order, with the model's
    ``output_prior`` (or, for a model without one, a prior computed here from the committed
    split's training speakers);
``output-transductive``
    the upper bound of ``output``: the shift measured on all of the speaker's speech windows
    at once (future ones included), which no live tool can know;
``embedding``
    for a model that carries an ``embedding_adaptation`` entry: the runtime's embedding
    adaptation (:class:`stream_ser.adaptation.EmbeddingAdapter`, the default of ``listen`` and
    ``analyse`` for such a model), the engine run a second time over the same stream with it.

A model trained on speaker-normalised log-mels (``speaker_norm`` in its metadata) normalises
inside the engine, causally, in every mode: compare such a model with ``none`` of another.

Scores are per corpus: UAR, WA and macro-F1 over the clips of all the speakers asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.adaptation import PROBABILITY_FLOOR, OutputAdapter, OutputPrior
from stream_ser.engine import Engine
from stream_ser.features import one_blas_thread
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio

from .corpora import Utterance, discover
from .evaluate import NO_SPEECH, Scores, score, scores_to_dict
from .output_prior import DEFAULT_PRIOR_WINDOWS, training_prior
from .split import Split, load_split
from .temperature import expected_calibration_error

log = logging.getLogger("training.stream_protocol")

#: Silence between two clips of a stream (s).
PAUSE_S = 1.0
#: Adaptation modes, in report order.
MODES: tuple[str, ...] = ("none", "output", "output-transductive")


@dataclass(frozen=True)
class SpeakerStream:
    """One speaker's clips joined into one recording.

    Attributes:
        speaker: Speaker id, e.g. ``"ravdess:21"``.
        utterances: The clips in stream order.
        bounds_s: float64 ``(n_clips, 2)``: each clip's start and end on the stream clock (s).
        samples: float32 ``(n_samples,)`` mono audio at the model's rate.
    """

    speaker: str
    utterances: tuple[Utterance, ...]
    bounds_s: np.ndarray
    samples: np.ndarray


def build_stream(utts: list[Utterance], sample_rate_hz: int, seed: int = 0, pause_s: float = PAUSE_S) -> SpeakerStream:
    """Shuffle one speaker's clips with ``seed`` and join them with ``pause_s`` of digital silence.

    Raises:
        ValueError: If the clips are not all of one speaker, or there are none.
    """
    speakers = {u.speaker for u in utts}
    if len(speakers) != 1:
        raise ValueError(f"a stream holds one speaker's clips, got {sorted(speakers)}")
    order = np.random.default_rng(seed).permutation(len(utts))
    pause = np.zeros(int(round(pause_s * sample_rate_hz)), dtype=np.float32)
    parts, bounds, pos = [], [], 0
    for i in order:
        x = load_audio(utts[i].path, sample_rate_hz)
        if parts:
            parts.append(pause)
            pos += pause.size
        parts.append(x)
        bounds.append((pos / sample_rate_hz, (pos + x.size) / sample_rate_hz))
        pos += x.size
    return SpeakerStream(speakers.pop(), tuple(utts[i] for i in order), np.asarray(bounds, dtype=np.float64),
                         np.concatenate(parts))


def window_clips(starts_s: np.ndarray, ends_s: np.ndarray, bounds_s: np.ndarray) -> np.ndarray:
    """The clip each window overlaps most (-1: none).

    Args:
        starts_s: ``(n_windows,)`` window starts (s).
        ends_s: ``(n_windows,)`` window ends (s).
        bounds_s: ``(n_clips, 2)`` clip starts and ends (s), in time order, not overlapping.

    Returns:
        int64 ``(n_windows,)`` clip indices; ties go to the earlier clip.
    """
    out = np.full(len(starts_s), -1, dtype=np.int64)
    for w, (a, b) in enumerate(zip(starts_s, ends_s)):
        lo = int(np.searchsorted(bounds_s[:, 1], a, side="right"))
        hi = int(np.searchsorted(bounds_s[:, 0], b, side="left"))
        if hi <= lo:
            continue
        overlap = np.minimum(bounds_s[lo:hi, 1], b) - np.maximum(bounds_s[lo:hi, 0], a)
        if overlap.max() > 0:
            out[w] = lo + int(np.argmax(overlap))
    return out


@dataclass(frozen=True)
class ScoredStream:
    """The model's speech windows over one :class:`SpeakerStream`.

    Attributes:
        stream: The stream.
        clip: int64 ``(n_speech,)``: the clip each speech window overlaps most (-1: none).
        probabilities: float64 ``(n_speech, n_classes)``: the model's raw probabilities, in time
            order.
    """

    stream: SpeakerStream
    clip: np.ndarray
    probabilities: np.ndarray


def score_stream(model: EmotionModel, stream: SpeakerStream, adapt: str = "none") -> ScoredStream:
    """Run the engine over the stream, as ``analyse`` does for a mono file.

    Args:
        adapt: The engine's adaptation (``"none"``: the model's raw probabilities, which the
            ``output`` modes of :func:`adapt` adapt afterwards; ``"embedding"``: the runtime's
            embedding adaptation, as ``analyse`` runs it by default on a model that carries it).
    """
    engine = Engine(model, source=stream.speaker, adapt=adapt)
    with one_blas_thread():
        preds = [p for p in engine.run([stream.samples]) if p.is_speech]
    starts = np.array([p.start_s for p in preds])
    ends = np.array([p.end_s for p in preds])
    probs = np.array([p.probabilities for p in preds], dtype=np.float64).reshape(len(preds), len(model.labels))
    return ScoredStream(stream, window_clips(starts, ends, stream.bounds_s), probs)


def adapt(probabilities: np.ndarray, mode: str, prior: OutputPrior) -> np.ndarray:
    """The probabilities of one stream's speech windows after adaptation ``mode``.

    Args:
        probabilities: ``(n, n_classes)`` raw probabilities in time order.
        mode: One of :data:`MODES`, or ``output-wN``: ``output`` with the prior weighted as
            ``N`` windows.
        prior: The output prior (for ``output``, and the training mean for the transductive bound).

    Raises:
        ValueError: For an unknown mode.
    """
    if mode == "none" or len(probabilities) == 0:
        return probabilities
    if mode == "output" or mode.startswith("output-w"):
        if mode != "output":  # output-wN: the same prior mean weighted as N windows
            prior = OutputPrior(prior.mean_log_prob, float(mode.removeprefix("output-w")))
        adapter = OutputAdapter(prior)
        return np.array([adapter(p) for p in probabilities], dtype=np.float64)
    if mode == "output-transductive":
        log_p = np.log(np.maximum(probabilities, PROBABILITY_FLOOR))
        centred = log_p - log_p.mean(axis=1, keepdims=True)
        mean0 = np.asarray(prior.mean_log_prob) - np.mean(prior.mean_log_prob)
        z = log_p - (centred.mean(axis=0) - mean0)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown adaptation mode {mode!r}; one of {MODES}")


def clip_labels(scored: ScoredStream, probabilities: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    """Each clip's label: argmax of the mean probabilities of its speech windows (:data:`NO_SPEECH`
    without any)."""
    n = len(scored.stream.utterances)
    out = [NO_SPEECH] * n
    for c in range(n):
        rows = scored.clip == c
        if rows.any():
            out[c] = labels[int(np.argmax(probabilities[rows].mean(axis=0)))]
    return out


def select_speakers(utts: list[Utterance], names: list[str], split: Split) -> list[str]:
    """Speaker ids for ``names``: ``test`` / ``validation`` / ``train`` (``split``'s
    partitions), a corpus name (every speaker of it), or a speaker id such as ``nemo:EB0``."""
    corpora = {u.corpus for u in utts}
    out: list[str] = []
    for name in names:
        if name in ("train", "validation", "test"):
            picked = sorted(getattr(split, name))
        elif name in corpora:
            picked = sorted({u.speaker for u in utts if u.corpus == name})
        else:
            picked = [name]
        out.extend(s for s in picked if s not in out)
    known = {u.speaker for u in utts}
    unknown = [s for s in out if s not in known]
    if unknown:
        raise ValueError(f"no clips of speakers {unknown} (is the corpus under --data?)")
    return out


def degraded(stream: SpeakerStream, condition: str, sample_rate_hz: int, seed: int = 0) -> SpeakerStream:
    """The stream heard through one condition of :data:`training.experiments.ROBUSTNESS_CONDITIONS`
    (white noise, a telephone band, a room; pauses included, as on a call), the same length.

    Raises:
        ValueError: For an unknown condition, or babble (it needs other talkers' clips).
    """
    from .experiments import ROBUSTNESS_CONDITIONS, corrupt

    if condition == "clean":
        return stream
    known = {name: (kind, value) for name, kind, value in ROBUSTNESS_CONDITIONS}
    if condition not in known or known[condition][0] == "babble":
        raise ValueError(f"condition {condition!r}: one of "
                         + ", ".join(n for n, (k, _) in known.items() if k != "babble"))
    kind, value = known[condition]
    x = corrupt(stream.samples, kind, value, [], seed, sample_rate_hz)
    return dataclasses.replace(stream, samples=np.asarray(x, dtype=np.float32)[: stream.samples.size])


def run(model: EmotionModel, utts: list[Utterance], speakers: list[str], prior: OutputPrior, seed: int = 0,
        weights: tuple[float, ...] = (), condition: str = "clean") -> dict:
    """Score every speaker's stream in every mode (and ``output-wN`` for each of ``weights``),
    each stream heard through ``condition`` (:func:`degraded`); per corpus and per speaker figures."""
    labels = model.labels
    embedding = model.metadata.embedding_adaptation is not None
    modes = (*MODES, *(f"output-w{w:g}" for w in weights), *(("embedding",) if embedding else ()))
    truth: dict[str, list[str]] = {}
    predicted: dict[tuple[str, str], list[str]] = {}
    windows: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    per_speaker: dict[str, dict] = {}
    for spk in speakers:
        t0 = time.monotonic()
        mine = [u for u in utts if u.speaker == spk and u.label is not None]
        sr = model.feature_config.sample_rate_hz
        scored = score_stream(model, degraded(build_stream(mine, sr, seed), condition, sr, seed))
        corpus = mine[0].corpus
        y = [u.label for u in scored.stream.utterances]
        truth.setdefault(corpus, []).extend(y)
        per_speaker[spk] = {"clips": len(y), "speech_windows": int(len(scored.clip)),
                            "stream_s": round(scored.stream.samples.size / model.feature_config.sample_rate_hz, 1)}
        adapted = score_stream(model, scored.stream, "embedding") if embedding else None
        if adapted is not None and not np.array_equal(adapted.clip, scored.clip):
            raise RuntimeError(f"{spk}: the embedding-adapted run scored other windows than the raw one")
        for mode in modes:
            probs = adapted.probabilities if mode == "embedding" else adapt(scored.probabilities, mode, prior)
            pred = clip_labels(scored, probs, labels)
            predicted.setdefault((corpus, mode), []).extend(pred)
            kept = scored.clip >= 0  # each speech window with the label of the clip it overlaps most
            truth_w = np.array([labels.index(y[c]) for c in scored.clip[kept]], dtype=np.int64)
            windows.setdefault((corpus, mode), []).append((probs[kept], truth_w))
            per_speaker[spk][mode] = round(score(y, pred, labels).uar, 4)
        log.info("%s: %d clips, %.0f s of stream, UAR %s (%.1f s)", spk, len(y), per_speaker[spk]["stream_s"],
                 " / ".join(f"{m} {per_speaker[spk][m]:.3f}" for m in modes), time.monotonic() - t0)
    corpora: dict[str, dict[str, dict]] = {}
    for (corpus, mode), pred in predicted.items():
        s: Scores = score(truth[corpus], pred, labels)
        corpora.setdefault(corpus, {})[mode] = scores_to_dict(s)
        p = np.concatenate([w[0] for w in windows[(corpus, mode)]])
        t = np.concatenate([w[1] for w in windows[(corpus, mode)]])
        if len(t):  # the probabilities as calibrated confidence: ECE over speech windows (15 bins)
            corpora[corpus][mode]["window_ece"] = round(expected_calibration_error(p, t), 4)
            corpora[corpus][mode]["windows"] = int(len(t))
    return {"modes": list(modes), "corpora": corpora, "speakers": per_speaker}


def markdown(result: dict) -> str:
    """The per-corpus table of :func:`run`'s result (WA and macro-F1 without adaptation, with the
    output adaptation and, when it ran, with the embedding adaptation)."""
    shown = [m for m in ("none", "output", "embedding") if m in result["modes"]]
    lines = ["| corpus | clips | " + " | ".join(f"UAR {m}" for m in result["modes"]) + f" | WA {' / '.join(shown)} | "
             f"macro-F1 {' / '.join(shown)} |",
             "| --- | ---: | " + " | ".join("---:" for _ in result["modes"]) + " | ---: | ---: |"]
    for corpus, by_mode in result["corpora"].items():
        lines.append(f"| {corpus} | {by_mode['none']['n']} | " + " | ".join(f"{by_mode[m]['uar']:.3f}" for m in result["modes"])
                     + " | " + " / ".join(f"{by_mode[m]['wa']:.3f}" for m in shown)
                     + " | " + " / ".join(f"{by_mode[m]['macro_f1']:.3f}" for m in shown) + " |")
    lines += ["", f"| corpus | speech windows | ECE {' / '.join(shown)} |", "| --- | ---: | ---: |"]
    for corpus, by_mode in result["corpora"].items():
        if "window_ece" in by_mode["none"]:
            lines.append(f"| {corpus} | {by_mode['none']['windows']} | "
                         + " / ".join(f"{by_mode[m]['window_ece']:.3f}" for m in shown) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m training.stream_protocol", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder of the corpora (ravdess/, tess/, nemo/)")
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--speakers", nargs="+", default=["test"],
                   help="'test', 'validation', 'train' (partitions of --split), a corpus name, or speaker ids")
    p.add_argument("--split", type=Path, default=None, help="split JSON (default: training/splits/si_v1.json)")
    p.add_argument("--seed", type=int, default=0, help="clip order within each stream")
    p.add_argument("--prior-windows", type=float, default=None,
                   help="weight of the output prior in windows (default: the model's, else 40)")
    p.add_argument("--compare-weights", type=float, nargs="+", default=(), metavar="N",
                   help="also score output adaptation with the prior weighted as N windows (mode output-wN), "
                   "to choose the weight on validation speakers")
    p.add_argument("--condition", default="clean",
                   help="hear every stream through a condition of `training.experiments robustness` (white-10dB, "
                   "telephone-8k, reverb-0.6s, ...; not babble), as on a noisy line or in a room (default: clean)")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = EmotionModel(args.model)
    utts = [u for u in discover(args.data) if u.label is not None]
    split = load_split(args.split)
    speakers = select_speakers(utts, args.speakers, split)
    prior = model.metadata.output_prior
    source = "model metadata"
    if prior is None:
        prior = training_prior(model, args.data, split, args.prior_windows or DEFAULT_PRIOR_WINDOWS)
        source = f"computed from the training speakers of {split.name}"
    elif args.prior_windows is not None:
        prior = OutputPrior(prior.mean_log_prob, args.prior_windows)
    try:
        result = run(model, utts, speakers, prior, args.seed, tuple(args.compare_weights), args.condition)
    except ValueError as exc:
        p.error(str(exc))
    result.update({"model": str(args.model or "shipped"), "seed": args.seed, "pause_s": PAUSE_S,
                   "condition": args.condition,
                   "prior": {**prior.to_dict(), "source": source},
                   "command": "python -m training.stream_protocol " + " ".join(argv if argv is not None else __import__("sys").argv[1:])})
    print(markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
