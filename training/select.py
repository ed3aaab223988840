"""Choose the model to ship on the validation speakers, never the test speakers.

Usage::

    python -m training.select --data ../shared/data \\
        --models runs/small/crnn_small-s*.onnx runs/att/cnn_gap_small-s*.onnx \\
        --out training/results/selection.json

Every candidate (an ONNX file exported by ``python -m training.train``) is streamed through the
runtime engine on the *validation* speakers of the committed split (RAVDESS actors 17-20), as
:mod:`training.evaluate` does, and scored by clip-level UAR. Candidates are grouped by their
*recipe*: the architecture, the learning-rate schedule, the feature recipe's highest mel band
edge and the VTLP warp (``training.train --vtlp``) recorded in their metadata (one group = several seeds of one recipe; models exported before
the schedule was recorded used the plateau schedule). The rule:

1. with ``--max-ms``, only candidates whose inference costs at most that many ms per window
   (onnxruntime, one thread, median of 200 runs on real windows, measured here) are eligible;
   the others are scored and listed, not chosen;
2. the eligible recipe with the highest **mean** validation clip UAR over its seeds wins
   (one lucky seed does not make a recipe; on this split two seeds of ``crnn_small`` differ by
   5.5 UAR points);
3. within it, the seed with the highest validation clip UAR is the one to ship.

``--previous`` adds the candidates of an earlier selection JSON, as it scored them, without
their files (exported models are not kept in the repository): a new recipe can then be compared
with the seeds of an old one. Scoring is deterministic (the same file gives the same figures), a
candidate scored again in this run replaces its earlier record, and an earlier record can be
compared but not chosen unless its file is still there.

The test speakers are not read here. A candidate whose metadata shows it was trained on another
split, or with a validation speaker in its training set, is refused: its validation figure would
not be a held-out figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.features import FeatureConfig
from stream_ser.model import EmotionModel

from .corpora import discover
from .evaluate import corpus_scores, evaluate_clips
from .split import Split, load_split

log = logging.getLogger("training.select")


def recipe_name(architecture: str, schedule: str | None = "plateau", fmax_hz: float | None = None,
                vtlp: float | None = None) -> str:
    """Name of a training recipe: the architecture, plus the learning-rate schedule unless it is
    the default plateau one, plus the highest mel band edge unless it is the runtime recipe's,
    plus the VTLP warp if any (``"cnn_gap_small"``, ``"cnn_gap_small+cosine"``,
    ``"cnn_gap_small+cosine+fmax4000"``, ``"cnn_gap_small+cosine+fmax4000+vtlp0.1"``).
    None = plateau, the default edge (:class:`stream_ser.features.FeatureConfig`, 8000 Hz) and no VTLP."""
    name = architecture if schedule in (None, "plateau") else f"{architecture}+{schedule}"
    if fmax_hz is not None and fmax_hz != FeatureConfig().fmax_hz:
        name += f"+fmax{fmax_hz:g}"
    if vtlp:
        name += f"+vtlp{vtlp:g}"
    return name


class CandidateError(ValueError):
    """A candidate model cannot be compared fairly on the validation speakers."""


@dataclass(frozen=True)
class Candidate:
    """One exported model and its validation scores.

    Attributes:
        path: The ONNX file.
        architecture: ``provenance["architecture"]`` from its metadata.
        seed: ``provenance["seed"]`` (None if not recorded).
        uar: Clip-level UAR on the validation speakers (mean over corpora if several).
        wa: Clip-level accuracy, same averaging.
        macro_f1: Clip-level macro-F1, same averaging.
        window_uar: Window-level UAR, same averaging.
        ms_per_window: Median onnxruntime inference time per window (one thread, batch 1), ms,
            measured in this run: a guide for the budget, not a benchmark (see ``benchmarks/``).
        eligible: Within the ``--max-ms`` budget (always True without one).
        schedule: ``provenance["schedule"]``, the learning-rate schedule of ``training.train``
            (``"plateau"`` when not recorded: models exported before ``--schedule`` existed).
        scored: None if scored in this run, else the ``created`` time of the earlier selection
            JSON whose record this is (``--previous``).
        fmax_hz: Highest mel band edge (Hz) of the model's feature recipe, from its metadata
            (None in records from before it was kept: the runtime recipe's 8000 Hz).
        vtlp: ``provenance["vtlp"]``, the VTLP warp of ``training.train --vtlp`` (0.0 = none,
            also for models and records from before the option existed).
    """

    path: str
    architecture: str
    seed: int | None
    uar: float
    wa: float
    macro_f1: float
    window_uar: float
    ms_per_window: float
    eligible: bool = True
    schedule: str = "plateau"
    scored: str | None = None
    fmax_hz: float | None = None
    vtlp: float = 0.0

    @property
    def recipe(self) -> str:
        """The group this candidate is ranked in (:func:`recipe_name`)."""
        return recipe_name(self.architecture, self.schedule, self.fmax_hz, self.vtlp)


def check_provenance(provenance: dict, split: Split, path: str) -> None:
    """Refuse a model whose validation figure would not be held out.

    Raises:
        CandidateError: The provenance has no architecture, or was trained on another split
            (different validation speakers), or lists a validation speaker among its training
            speakers.
    """
    if not provenance.get("architecture"):
        raise CandidateError(f"{path}: no architecture in its metadata (not exported by training.train?)")
    val = set(provenance.get("validation_speakers") or ())
    if val != set(split.validation):
        raise CandidateError(f"{path}: validated on {sorted(val) or 'unknown speakers'}, not on this split's "
                             f"{sorted(split.validation)}")
    leaked = set(provenance.get("train_speakers") or ()) & set(split.validation)
    if leaked:
        raise CandidateError(f"{path}: trained on validation speakers {sorted(leaked)}")


def rank(candidates: list[Candidate]) -> dict:
    """Group candidates by recipe (:attr:`Candidate.recipe`) and apply the selection rule
    (module docstring).

    Args:
        candidates: At least one scored candidate, and at least one eligible.

    Returns:
        ``{"architectures": [{"recipe", "architecture", "schedule", "fmax_hz", "vtlp", "seeds", "uar_mean", "uar_sd",
        "uar_min", "uar_max", "ms_per_window", "eligible"}, ...] best first (one entry per
        recipe), "chosen_recipe", "chosen_architecture", "chosen": path}``. ``uar_sd`` is the
        sample standard deviation (0.0 for one seed);
        ``ms_per_window`` the median over seeds; a recipe is eligible only if every seed is
        within the budget.

    Raises:
        ValueError: No candidates, or none eligible.
    """
    if not candidates:
        raise ValueError("no candidates")
    if not any(c.eligible for c in candidates):
        raise ValueError("no candidate is within the cost budget")
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.recipe, []).append(c)
    table = []
    for recipe, items in groups.items():
        uars = [c.uar for c in items]
        table.append({
            "recipe": recipe,
            "architecture": items[0].architecture,
            "schedule": items[0].schedule,
            "fmax_hz": items[0].fmax_hz,
            "vtlp": items[0].vtlp,
            "seeds": len(items),
            "uar_mean": statistics.fmean(uars),
            "uar_sd": statistics.stdev(uars) if len(uars) > 1 else 0.0,
            "uar_min": min(uars),
            "uar_max": max(uars),
            "ms_per_window": statistics.median(c.ms_per_window for c in items),
            "eligible": all(c.eligible for c in items),
        })
    table.sort(key=lambda r: (-r["uar_mean"], r["recipe"]))
    best = next(r["recipe"] for r in table if r["eligible"])
    chosen = max((c for c in groups[best] if c.eligible), key=lambda c: (c.uar, c.macro_f1, -len(c.path)))
    return {"architectures": table, "chosen_recipe": best, "chosen_architecture": chosen.architecture,
            "chosen": chosen.path}


def previous_candidates(record: dict, split: Split, clips: int, max_ms: float | None = None) -> list[Candidate]:
    """The candidates of an earlier selection JSON (written by :func:`main`), as it scored them.

    Args:
        record: The parsed JSON.
        split: This run's split; the record must have scored the same validation speakers.
        clips: This run's number of validation clips; the record must have scored as many.
        max_ms: This run's budget: ``eligible`` is set again from each entry's recorded
            ``ms_per_window``.

    Returns:
        One :class:`Candidate` per record entry, ``scored`` set to the record's ``created`` time
        (entries without a schedule get ``"plateau"``).

    Raises:
        CandidateError: The record scored other speakers or another number of clips.
    """
    if sorted(record.get("validation_speakers", ())) != sorted(split.validation) or record.get("clips") != clips:
        raise CandidateError(f"the earlier selection scored {record.get('clips')} clips of "
                             f"{record.get('validation_speakers')}, not {clips} clips of {sorted(split.validation)}")
    fields = {f for f in Candidate.__dataclass_fields__} - {"scored", "eligible"}
    return [Candidate(**{k: v for k, v in c.items() if k in fields}, scored=c.get("scored") or record["created"],
                      eligible=max_ms is None or c["ms_per_window"] <= max_ms)
            for c in record["candidates"]]


def merge_previous(fresh: list[Candidate], earlier: list[Candidate]) -> list[Candidate]:
    """``fresh`` plus every earlier candidate whose (recipe, seed) and file ``fresh`` does not
    have (a model scored again replaces its earlier record)."""
    have = {(c.recipe, c.seed) for c in fresh} | {c.path for c in fresh}
    return fresh + [c for c in earlier if (c.recipe, c.seed) not in have and c.path not in have]


def inference_ms(model: EmotionModel, windows: np.ndarray, runs: int = 200) -> float:
    """Median ms of ``model.predict`` on one window (batch 1), cycling through ``windows``
    (float32 ``(n, n_mels, n_frames)`` log-mels), after 20 warm-up runs."""
    for i in range(20):
        model.predict(windows[i % len(windows)][None])
    times = []
    for i in range(runs):
        t = time.perf_counter()
        model.predict(windows[i % len(windows)][None])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def score_candidate(path: Path, utts, split: Split, max_ms: float | None = None) -> Candidate:
    """Stream the validation clips through ``path``, score them and time the model (see
    :class:`Candidate`); ``max_ms`` sets :attr:`Candidate.eligible`.

    Raises:
        CandidateError: See :func:`check_provenance`.
        stream_ser.model.ModelError: The file is not a stream-ser model.
    """
    model = EmotionModel(path)
    prov = model.metadata.provenance or {}
    check_provenance(prov, split, str(path))
    outcomes = evaluate_clips(model, utts)
    ms = inference_ms(model, _real_windows(utts, model))
    per_corpus = {k: v for k, v in corpus_scores(outcomes, model.labels).items() if k != "all"}

    def mean(level: str, attr: str) -> float:
        return statistics.fmean(getattr(r[level], attr) for r in per_corpus.values())

    return Candidate(str(path), str(prov["architecture"]), prov.get("seed"), mean("clip", "uar"), mean("clip", "wa"),
                     mean("clip", "macro_f1"), mean("window", "uar"), ms, max_ms is None or ms <= max_ms,
                     str(prov.get("schedule") or "plateau"), fmax_hz=model.feature_config.fmax_hz,
                     vtlp=float(prov.get("vtlp") or 0.0))


def _real_windows(utts, model: EmotionModel, n: int = 16) -> np.ndarray:
    """Log-mels of up to ``n`` speech windows from the first clips of ``utts``, for timing,
    cut as the engine cuts them; float32 ``(n, n_mels, n_frames)``."""
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import window_features
    from stream_ser.audio import load_audio

    cfg = model.feature_config
    out: list[np.ndarray] = []
    for u in utts:
        x = load_audio(u.path, cfg.sample_rate_hz)
        for end in window_ends(x.size, cfg.hop_samples):
            f = window_features(cut_window(x, end, cfg.window_samples), cfg)
            if f is not None:
                out.append(f)
        if len(out) >= n:
            break
    return np.stack(out[:n]).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.select",
        description="Rank exported models on the validation speakers (clip UAR): best recipe (architecture, "
        "learning-rate schedule, highest mel band edge, VTLP) by its mean over seeds, then its best seed. The test speakers are not used.",
        epilog="Example: python -m training.select --data ../shared/data --models runs/*/*.onnx "
        "--out training/results/selection.json",
    )
    parser.add_argument("--data", required=True, help="folder with ravdess/ and tess/ (e.g. ../shared/data)")
    parser.add_argument("--models", nargs="+", required=True, help="ONNX files exported by python -m training.train")
    parser.add_argument("--out", default=None, help="JSON file for the table and the choice")
    parser.add_argument("--max-ms", type=float, default=None, metavar="MS",
                        help="only models whose inference takes at most MS ms per window (one thread, measured "
                        "here) may be chosen; the others are listed")
    parser.add_argument("--note", default=None, help="a sentence stored with the result (why this budget, ...)")
    parser.add_argument("--previous", default=None, metavar="JSON",
                        help="an earlier --out file: its candidates join the ranking as they were scored (their "
                        "files need not exist; a model given in --models replaces its earlier record)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    split = load_split()
    utts = [u for u in split.partition(discover(Path(args.data)))["validation"] if u.label is not None]
    if not utts:
        parser.error(f"no labelled validation clips under {args.data}")
    candidates = []
    for p in args.models:
        try:
            c = score_candidate(Path(p), utts, split, args.max_ms)
        except CandidateError as e:
            parser.error(str(e))
        log.info("%s (%s, seed %s): validation clip UAR %.3f", p, c.recipe, c.seed, c.uar)
        candidates.append(c)
    if args.previous:
        try:
            earlier = previous_candidates(json.loads(Path(args.previous).read_text()), split, len(utts), args.max_ms)
        except (OSError, ValueError, KeyError, TypeError) as e:
            parser.error(f"--previous {args.previous}: {e}")
        candidates = merge_previous(candidates, earlier)
    try:
        result = rank(candidates)
    except ValueError as e:
        parser.error(f"{e} (--max-ms {args.max_ms:g}; the fastest candidate takes "
                     f"{min(c.ms_per_window for c in candidates):.2f} ms per window)")
    chosen = next(c for c in candidates if c.path == result["chosen"])
    if chosen.scored is not None and not Path(chosen.path).is_file():
        parser.error(f"the rule chooses {chosen.path} ({chosen.recipe}, seed {chosen.seed}; scored {chosen.scored}), "
                     "which is no longer on disk: export it again (python -m training.train ... --seed "
                     f"{chosen.seed}) and pass it with --models")
    print(f"validation speakers: {', '.join(sorted(split.validation))} ({len(utts)} clips); clip-level figures")
    print(f"{'model':48s} {'recipe':30s} {'seed':>4s} {'UAR':>6s} {'WA':>6s} {'F1':>6s} {'win UAR':>8s} {'ms':>6s}")
    for c in sorted(candidates, key=lambda c: (c.recipe, c.seed if c.seed is not None else -1)):
        print(f"{c.path:48s} {c.recipe:30s} {c.seed!s:>4s} {c.uar:6.3f} {c.wa:6.3f} {c.macro_f1:6.3f} "
              f"{c.window_uar:8.3f} {c.ms_per_window:6.2f}{'' if c.eligible else '  over --max-ms'}"
              f"{'' if c.scored is None else '  (scored ' + c.scored + ')'}")
    print()
    for r in result["architectures"]:
        print(f"{r['recipe']:30s} {r['seeds']} seeds  UAR {r['uar_mean']:.3f} +- {r['uar_sd']:.3f} "
              f"({r['uar_min']:.3f}-{r['uar_max']:.3f})  {r['ms_per_window']:.2f} ms/window"
              f"{'' if r['eligible'] else '  (over the budget)'}")
    print(f"chosen: {result['chosen']} ({result['chosen_recipe']})")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "python -m training.select " + shlex.join(sys.argv[1:] if argv is None else argv),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "partition": "validation",
            "validation_speakers": sorted(split.validation),
            "clips": len(utts),
            "max_ms": args.max_ms,
            "note": args.note,
            "previous": args.previous,
            "candidates": [c.__dict__ for c in candidates],
            **result,
        }
        out.write_text(json.dumps(record, indent=1))
        log.info("wrote %s", out)


if __name__ == "__main__":
    main()
