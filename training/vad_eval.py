"""Evaluation of speech detectors per 3 s window: the level gate, WebRTC VAD and Silero VAD.

Measures, for the engine's windows (3 s, hop 0.5 s, cut as :func:`stream_ser.engine.window_ends`
and :func:`stream_ser.engine.cut_window` cut them):

- **false-positive rate per window on non-speech**, per class of sound (:mod:`training.vad_sounds`:
  music, game effects, desktop sounds, ambient recordings, and synthetic noises, hum, clicks,
  tones, square waves, DC offset), each file or synthetic stream analysed as a stream of its own;
- **speech recall per window** on RAVDESS, TESS and nEMO clips (each clip a stream of its own,
  as ``stream-ser analyse`` runs a file): the reference set is the windows the level gate calls
  speech on the clean clip, and a detector's recall is the share of those it calls speech, on the
  clean clip and with the clip mixed over music or over noise at 10 dB SNR.

The level gate is the runtime's own :func:`stream_ser.features.is_speech`; the VADs are
:mod:`stream_ser.vad` (frames scored once over the whole stream, then counted per window by
:func:`stream_ser.vad.window_speech_s`, the same count :class:`stream_ser.vad.VoiceActivity`
makes live). A VAD's window rule is "at least X s of speech frames in the window" (for Silero,
frames whose probability is at least a threshold T); the pair (T, X) or (WebRTC mode, X) is
chosen on the **development** part (other files, other speakers) and reported on the **test**
part. Each VAD is reported alone and combined with the level gate (``gate+VAD``: both must say
speech, which is how the engine will use it).

Rule choice on the development part: among the rules whose recall on clean speech is at least
``--min-recall`` (default 0.98: a margin over the 0.97 target) on every corpus, the one with the
smallest worst ratio of false-positive rate to its target (5 % music, 2 % the rest) over the
classes; ties go to the smaller mean of those ratios, then to the higher mean recall over corpora
and conditions.

    python -m training.vad_eval [--data ../shared/data] [--debs /tmp/stream-ser-debs]
        [--silero-model PATH] [--clips-dev 100] [--clips-test 300] [--seed 0]
        [--out training/results/vad-eval.json]

Needs the corpora, ``apt-get`` (the packages are downloaded on the first run) and the scorers'
packages (``webrtcvad-wheels``; a Silero ONNX, see :func:`stream_ser.vad.find_silero_model`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_ser.engine import cut_window, window_ends
from stream_ser.features import FeatureConfig, is_speech
from stream_ser.vad import SileroScorer, WebRtcScorer, frame_scores, window_speech_s
from training import vad_sounds as vs

CFG = FeatureConfig()
W = CFG.window_samples
HOP = int(round(CFG.hop_s * CFG.sample_rate_hz))
SR = CFG.sample_rate_hz

CORPORA = ("ravdess", "tess", "nemo")
CONDITIONS = ("clean", "music10", "noise10")
SNR_DB = 10.0
FLOOR_DBFS = -80.0  # white-noise floor under the real-recording streams (their gaps are digital zero)

#: Speaker-disjoint development speakers (RAVDESS: actors 01-06, three male, three female; nEMO:
#: one female, one male); TESS has two speakers, so its parts split by target word instead.
DEV_SPEAKERS = {"ravdess": {f"ravdess:{i:02d}" for i in range(1, 7)}, "nemo": {"nemo:EB0", "nemo:KS0"}}

SILERO_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SILERO_MIN_S = tuple(round(0.032 * k, 3) for k in range(1, 17))  # 1-16 frames
WEBRTC_MODES = (0, 1, 2, 3)
WEBRTC_MIN_S = tuple(round(0.03 * k, 3) for k in range(1, 34))  # 1-33 frames (0.03-0.99 s)


@dataclass
class Item:
    """One analysed stream: the gate's decision per window and each scorer's frame scores."""

    group: str  # non-speech class, or corpus
    name: str
    ends: np.ndarray
    gate: np.ndarray  # bool per window (on this signal)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # scorer name -> frame scores
    ref: np.ndarray | None = None  # speech: bool per window, gate on the clean clip
    segments: list = field(default_factory=list)  # non-speech: (start, end, source file) pieces


def _hash_part(key: str) -> str:
    return "dev" if int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 3 == 0 else "test"


def speech_part(utt) -> str:
    """``"dev"`` or ``"test"`` for a corpus utterance (see :data:`DEV_SPEAKERS`)."""
    if utt.corpus == "tess":
        word = utt.path.stem.split("_")[1].lower()
        return _hash_part(f"tess-word:{word}")
    return "dev" if utt.speaker in DEV_SPEAKERS[utt.corpus] else "test"


def analyse(x: np.ndarray, scorers: dict, group: str, name: str, ref: np.ndarray | None = None) -> Item:
    """Gate per window and frame scores of every scorer for one stream."""
    ends = np.array(window_ends(x.size, HOP), dtype=np.int64)
    gate = np.array([is_speech(cut_window(x, int(e), W), CFG) for e in ends], dtype=bool)
    it = Item(group, name, ends, gate, ref=ref)
    for key, sc in scorers.items():
        it.scores[key] = frame_scores(x, sc)
    return it


# --------------------------------------------------------------------------------------------
# the sets


def nonspeech_streams(files: list, part: str, rng: np.random.Generator, level_dbfs: float | None = None,
                      classes: tuple[str, ...] | None = None) -> list[tuple[str, str, np.ndarray, list]]:
    """(class, name, audio, pieces) of every non-speech stream of one part (see the module
    docstring of :mod:`training.vad_sounds` for the classes); pieces are ``(start, end, file)``
    sample ranges of the joined streams. Each recording's active level is drawn from -40 to
    -20 dBFS, or is ``level_dbfs``; ``classes`` limits the real-recording classes made (None: all,
    and the synthetic ones)."""
    def level() -> float:
        drawn = rng.uniform(-40, -20)
        return drawn if level_dbfs is None else level_dbfs

    scale = 1.0 if part == "test" else 0.5  # synthetic streams; the joined real-recording streams are as long in both parts
    out = []
    floor = lambda n: (rng.standard_normal(n) * 10 ** (FLOOR_DBFS / 20)).astype(np.float32)  # noqa: E731
    for f in [f for f in files if f.cls == "music" and f.part == part and (classes is None or "music" in classes)]:
        import soundfile as sf

        dur = sf.info(str(f.path)).duration
        length = min(20.0, dur)
        start = float(rng.uniform(0, max(0.0, dur - length)))
        x = vs.set_level(vs.load_16k(f.path, start, length), level())
        out.append(("music", f"{f.package}/{f.rel}@{start:.1f}s", x + floor(x.size), []))
    for cls, target_s in (("effects", 240.0), ("ui", 120.0), ("ambient", 120.0)):
        if classes is not None and cls not in classes:
            continue
        items = [f for f in files if f.cls == cls and f.part == part]
        pieces, total, order, segs, pos = [], 0.0, [], [], 0
        while total < target_s:
            if not order:
                order = list(rng.permutation(len(items)))
            f = items[order.pop()]
            y = vs.load_16k(f.path)
            if y.size > 8 * SR:
                s = int(rng.integers(0, y.size - 8 * SR))
                y = y[s : s + 8 * SR]
            y = vs.set_level(y, level())
            gap = np.zeros(int(rng.uniform(0.1, 0.8) * SR), dtype=np.float32)
            pieces += [y, gap]
            segs.append((pos, pos + y.size, f"{f.package}/{f.rel}"))
            pos += y.size + gap.size
            total += (y.size + gap.size) / SR
        x = np.concatenate(pieces)
        out.append((cls, f"{cls}-{part}-stream", x + floor(x.size), segs))
    for i, cls in enumerate(vs.SYNTHETIC_CLASSES if classes is None else ()):
        seed = (1000 if part == "test" else 2000) + i
        out.append((cls, f"{cls}-seed{seed}", vs.synthetic(cls, 60.0 * scale, seed), []))
    return out


def speech_clips(data_dir: Path, part: str, n_per_corpus: int, seed: int) -> list:
    """A seeded sample of ``n_per_corpus`` utterances of each corpus in one part."""
    from training.corpora import discover

    utts = discover(data_dir, CORPORA)
    out = []
    for c in CORPORA:
        pool = sorted((u for u in utts if u.corpus == c and speech_part(u) == part), key=lambda u: str(u.path))
        rng = np.random.default_rng([seed, CORPORA.index(c), part == "test"])
        idx = rng.choice(len(pool), size=min(n_per_corpus, len(pool)), replace=False)
        out += [pool[i] for i in sorted(idx)]
    return out


def mix(speech: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``speech`` over a random segment of ``pool`` at :data:`SNR_DB` (active levels, see
    :func:`training.vad_sounds.active_rms`)."""
    s = int(rng.integers(0, pool.size - speech.size))
    noise = pool[s : s + speech.size].astype(np.float64)
    rs, rn = vs.active_rms(speech), vs.active_rms(noise.astype(np.float32))
    if rn <= 0 or rs <= 0:
        return speech
    noise *= rs / rn * 10 ** (-SNR_DB / 20)
    return np.clip(speech + noise, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# metrics


def decisions(it: Item, detector: str, rule: tuple | None) -> np.ndarray:
    """Window decisions of a detector: ``"gate"``, ``"silero"``/``"webrtc-M"`` with a rule
    ``(threshold, min_s)``; ``"+gate"`` suffix: AND with the gate."""
    with_gate = detector.endswith("+gate")
    base = detector.removesuffix("+gate")
    if base == "gate":
        return it.gate
    thr, min_s = rule
    sc = it.scores[base]
    frame = SileroScorer.frame_samples if base == "silero" else WebRtcScorer.frame_samples
    d = window_speech_s(sc >= thr, it.ends, W, frame) >= min_s - 1e-9
    return d & it.gate if with_gate else d


def summarise(ns: list[Item], sp: dict[str, list[Item]], detector: str, rule) -> dict:
    """FP per class and recall per corpus x condition of one detector and rule."""
    fp: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for it in ns:
        d = decisions(it, detector, rule)
        fp[it.group][0] += int(d.sum())
        fp[it.group][1] += d.size
    rec: dict[str, dict[str, list[int]]] = {}
    for cond, items in sp.items():
        for it in items:
            d = decisions(it, detector, rule)
            r = rec.setdefault(it.group, {}).setdefault(cond, [0, 0])
            r[0] += int((d & it.ref).sum())
            r[1] += int(it.ref.sum())
    return {
        "fp": {c: {"windows": n, "speech": k, "rate": k / n if n else None} for c, (k, n) in fp.items()},
        "recall": {c: {cond: {"reference": n, "hit": k, "rate": k / n if n else None} for cond, (k, n) in v.items()}
                   for c, v in rec.items()},
    }


def offenders(ns: list[Item], detector: str, rule, top: int = 15) -> list[dict]:
    """The sources with the most false-positive windows: a music excerpt, or the piece of a joined
    stream that covers most of the window."""
    count: dict[tuple[str, str], int] = defaultdict(int)
    for it in ns:
        d = decisions(it, detector, rule)
        for e in it.ends[d]:
            if not it.segments:
                count[(it.group, it.name)] += 1
                continue
            lo = max(0, int(e) - W)
            best = max(it.segments, key=lambda s: min(s[1], int(e)) - max(s[0], lo))
            count[(it.group, best[2])] += 1
    ranked = sorted(count.items(), key=lambda kv: -kv[1])[:top]
    return [{"class": c, "source": n, "fp_windows": k} for (c, n), k in ranked]


def worst_fp_ratio(s: dict) -> float:
    return max(v["rate"] / vs.TARGET_FP[c] for c, v in s["fp"].items())


def choose(ns: list[Item], sp: dict[str, list[Item]], detector: str, grid: list[tuple], min_recall: float) -> tuple:
    """The rule of the grid chosen on the development part (see the module docstring)."""
    best, best_key, table = None, None, []
    for rule in grid:
        s = summarise(ns, sp, detector, rule)
        clean = [s["recall"][c]["clean"]["rate"] for c in CORPORA]
        allrec = [v["rate"] for c in CORPORA for v in s["recall"][c].values()]
        ok = min(clean) >= min_recall
        ratio = worst_fp_ratio(s)
        table.append({"rule": list(rule), "min_clean_recall": min(clean), "worst_fp_over_target": ratio,
                      "mean_recall": float(np.mean(allrec)), "eligible": ok})
        mean_ratio = float(np.mean([v["rate"] / vs.TARGET_FP[c] for c, v in s["fp"].items()]))
        table[-1]["mean_fp_over_target"] = mean_ratio
        key = (not ok, round(ratio, 6), round(mean_ratio, 6), -float(np.mean(allrec)))
        if best_key is None or key < best_key:
            best, best_key = rule, key
    return best, table


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    vs.fetch_debs(args.debs)
    files = vs.catalogue(args.debs)
    silero = SileroScorer(args.silero_model)
    scorers = {"silero": silero, **{f"webrtc-{m}": WebRtcScorer(m) for m in WEBRTC_MODES}}
    parts: dict[str, dict] = {}
    for part, n_clips in (("dev", args.clips_dev), ("test", args.clips_test)):
        rng = np.random.default_rng([args.seed, part == "test"])
        streams = nonspeech_streams(files, part, rng)
        print(f"[{part}] {len(streams)} non-speech streams, {sum(s[2].size for s in streams) / SR / 60:.1f} min",
              file=sys.stderr, flush=True)
        ns = []
        for cls, name, x, segs in streams:
            ns.append(analyse(x, scorers, cls, name))
            ns[-1].segments = segs
        music_pool = np.concatenate([x for cls, _, x, _ in streams if cls == "music"])
        noise_pool = np.concatenate([x for cls, _, x, _ in streams
                                     if cls in ("white_noise", "pink_noise", "brown_noise", "hum", "ambient")])
        clips = speech_clips(args.data, part, n_clips, args.seed)
        print(f"[{part}] {len(clips)} speech clips", file=sys.stderr, flush=True)
        sp: dict[str, list[Item]] = {c: [] for c in CONDITIONS}
        import soundfile as sf

        for u in clips:
            x, sr = sf.read(str(u.path), dtype="float32")
            assert sr == SR and x.ndim == 1, (u.path, sr, x.shape)
            clean = analyse(x, scorers, u.corpus, u.path.name)
            clean.ref = clean.gate
            sp["clean"].append(clean)
            sp["music10"].append(analyse(mix(x, music_pool, rng), scorers, u.corpus, u.path.name, ref=clean.gate))
            sp["noise10"].append(analyse(mix(x, noise_pool, rng), scorers, u.corpus, u.path.name, ref=clean.gate))
        parts[part] = {
            "ns": ns, "sp": sp,
            "set": {
                "nonspeech": {c: {"streams": sum(1 for it in ns if it.group == c),
                                  "windows": int(sum(it.ends.size for it in ns if it.group == c)),
                                  "seconds": round(sum(float(it.ends[-1]) for it in ns if it.group == c) / SR, 1)}
                              for c in dict.fromkeys(it.group for it in ns)},
                "speech": {c: {"clips": sum(1 for it in sp["clean"] if it.group == c),
                               "reference_windows": int(sum(it.ref.sum() for it in sp["clean"] if it.group == c)),
                               "all_windows": int(sum(it.ends.size for it in sp["clean"] if it.group == c)),
                               "speakers": sorted({u.speaker for u in clips if u.corpus == c})}
                           for c in CORPORA},
                "files": {c: sorted(f"{f.package}/{f.rel}" for f in files if f.cls == c and f.part == part)
                          for c in vs.REAL_CLASSES},
            },
        }
    print(f"analysed in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

    dev, test = parts["dev"], parts["test"]
    grids = {
        "silero": [(t, m) for t in SILERO_THRESHOLDS for m in SILERO_MIN_S],
        **{f"webrtc-{m}": [(0.5, s) for s in WEBRTC_MIN_S] for m in WEBRTC_MODES},
    }
    chosen, dev_tables = {}, {}
    for det, grid in grids.items():
        rule, table = choose(dev["ns"], dev["sp"], det + "+gate", grid, args.min_recall)
        chosen[det] = rule
        dev_tables[det] = sorted(table, key=lambda r: (not r["eligible"], r["worst_fp_over_target"],
                                                        r["mean_fp_over_target"]))[:10]
    # the best WebRTC mode on the development part, by the same key
    def key(det):
        s = summarise(dev["ns"], dev["sp"], det + "+gate", chosen[det])
        ok = min(s["recall"][c]["clean"]["rate"] for c in CORPORA) >= args.min_recall
        return (not ok, worst_fp_ratio(s))
    best_webrtc = min((f"webrtc-{m}" for m in WEBRTC_MODES), key=key)

    results: dict = {"dev": {}, "test": {}}
    for part, p in (("dev", dev), ("test", test)):
        results[part]["level_gate"] = summarise(p["ns"], p["sp"], "gate", None)
        for det in grids:
            results[part][det] = summarise(p["ns"], p["sp"], det, chosen[det])
            results[part][det + "+gate"] = summarise(p["ns"], p["sp"], det + "+gate", chosen[det])
    # Silero at its stock rule (threshold 0.5) for a sense of the trade-off on the test part
    results["test"]["silero(0.5, 0.256 s)+gate"] = summarise(test["ns"], test["sp"], "silero+gate", (0.5, 0.256))

    # the chosen Silero rule on the test part's music and effects played at fixed levels
    sweep = {}
    for lvl in args.level_sweep:
        rng = np.random.default_rng([args.seed, True])  # the test part's draws, as in the main run
        streams = nonspeech_streams(files, "test", rng, level_dbfs=lvl, classes=("music", "effects", "ui"))
        items = [analyse(x, {"silero": silero}, cls, name) for cls, name, x, _ in streams]
        s = summarise(items, {}, "silero+gate", chosen["silero"])
        g = summarise(items, {}, "gate", None)
        sweep[f"{lvl:g}"] = {"silero+gate": s["fp"], "level_gate": g["fp"]}
        print(f"level sweep {lvl:g} dBFS, FP gate / Silero+gate: "
              + ", ".join(f"{c} {100 * g['fp'][c]['rate']:.1f} / {100 * v['rate']:.1f} %" for c, v in s["fp"].items()),
              file=sys.stderr, flush=True)

    import onnxruntime

    try:
        import importlib.metadata as md

        webrtc_version = md.version("webrtcvad-wheels")
    except Exception:  # noqa: BLE001
        webrtc_version = None
    return {
        "command": "python -m training.vad_eval " + " ".join(sys.argv[1:]),
        "window": {"window_s": CFG.window_s, "hop_s": CFG.hop_s, "sample_rate_hz": SR,
                   "level_gate": {"gate_dbfs": CFG.gate_dbfs, "gate_min_speech_s": CFG.gate_min_speech_s}},
        "protocol": {
            "seed": args.seed, "snr_db": SNR_DB, "floor_dbfs": FLOOR_DBFS, "min_recall_dev": args.min_recall,
            "targets": {"fp": vs.TARGET_FP, "recall_vs_gate": 0.97},
            "dev_speakers": {k: sorted(v) for k, v in DEV_SPEAKERS.items()} | {"tess": "target words with sha1 % 3 == 0"},
            "rule_grid": {"silero_thresholds": SILERO_THRESHOLDS, "silero_min_s": SILERO_MIN_S,
                          "webrtc_modes": WEBRTC_MODES, "webrtc_min_s": WEBRTC_MIN_S},
        },
        "software": {"python": platform.python_version(), "numpy": np.__version__,
                     "onnxruntime": onnxruntime.__version__, "webrtcvad-wheels": webrtc_version,
                     "silero_model": str(silero.model_path), "silero_sequence_model": silero.sequence,
                     "silero_model_sha256": hashlib.sha256(Path(silero.model_path).read_bytes()).hexdigest()},
        "debs": [{"package": d.package, "version": d.version, "sha256": d.sha256, "licence": d.licence} for d in vs.DEBS],
        "set": {part: parts[part]["set"] for part in parts},
        "chosen_rules": {det: {"threshold_or_mode": (rule[0] if det == "silero" else int(det[-1])),
                               "min_speech_s": rule[1]} for det, rule in chosen.items()},
        "best_webrtc_mode": best_webrtc,
        "dev_rule_search": dev_tables,
        "results": results,
        "silero_gate_level_sweep_test": sweep,
        "silero_gate_offenders_test": offenders(test["ns"], "silero+gate", chosen["silero"]),
        "silero_gate_offenders_dev": offenders(dev["ns"], "silero+gate", chosen["silero"]),
        "elapsed_s": round(time.monotonic() - t0, 1),
    }


def table(res: dict, part: str = "test", detectors: tuple | None = None) -> str:
    """Markdown table of one part's results (FP % per class, recall % per corpus x condition)."""
    r = res["results"][part]
    detectors = detectors or tuple(r)
    classes = list(next(iter(r.values()))["fp"])
    head = ["detector"] + [f"FP {c}" for c in classes] + [f"rec {c} {k}" for c in CORPORA for k in CONDITIONS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for det in detectors:
        s = r[det]
        row = [det] + [f"{100 * s['fp'][c]['rate']:.1f}" for c in classes]
        row += [f"{100 * s['recall'][c][k]['rate']:.1f}" for c in CORPORA for k in CONDITIONS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 %) of a proportion ``k / n`` (windows overlap by 5/6, so the
    windows are not independent and the interval is optimistic)."""
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (c - h) / d), (c + h) / d


def report(res: dict, part: str = "test") -> str:
    """The tables of ``docs/vad.md`` (percent; Silero with its 95 % Wilson interval)."""
    dets = [("level gate", "level_gate"), ("WebRTC mode 0", "webrtc-0+gate"), ("WebRTC mode 3", "webrtc-3+gate"),
            ("Silero", "silero+gate")]
    r = res["results"][part]
    out = ["| non-speech class (windows) | target | " + " | ".join(d for d, _ in dets) + " |",
           "|---|---|" + "---|" * len(dets)]
    for c, v in r["level_gate"]["fp"].items():
        cells = []
        for _, k in dets:
            f = r[k]["fp"][c]
            cell = f"{100 * f['rate']:.1f}"
            if k.startswith("silero"):
                lo, hi = wilson(f["speech"], f["windows"])
                cell = f"**{cell}** ({100 * lo:.1f}-{100 * hi:.1f})"
            cells.append(cell)
        out.append(f"| {c.replace('_', ' ')} ({v['windows']}) | <= {100 * vs.TARGET_FP[c]:.0f} | " + " | ".join(cells) + " |")
    out += ["", "| speech: corpus, condition (reference windows) | target | " + " | ".join(d for d, _ in dets) + " |",
            "|---|---|" + "---|" * len(dets)]
    names = {"clean": "clean", "music10": "over music, 10 dB SNR", "noise10": "over noise, 10 dB SNR"}
    for c in CORPORA:
        for cond in CONDITIONS:
            ref = r["level_gate"]["recall"][c][cond]["reference"]
            cells = []
            for _, k in dets:
                f = r[k]["recall"][c][cond]
                cell = f"{100 * f['rate']:.1f}"
                if k.startswith("silero"):
                    lo, hi = wilson(f["hit"], f["reference"])
                    cell = f"**{cell}** ({100 * lo:.1f}-{100 * hi:.1f})"
                cells.append(cell)
            corpus = {"ravdess": "RAVDESS", "tess": "TESS", "nemo": "nEMO"}[c]
            out.append(f"| {corpus}, {names[cond]} ({ref}) | >= 97 | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.vad_eval", description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--debs", type=Path, default=vs.DEFAULT_DEB_DIR)
    ap.add_argument("--silero-model", type=Path, default=None, help="Silero ONNX (default: stream_ser.vad.find_silero_model)")
    ap.add_argument("--clips-dev", type=int, default=100, help="speech clips per corpus, development part")
    ap.add_argument("--clips-test", type=int, default=300, help="speech clips per corpus, test part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-recall", type=float, default=0.98)
    ap.add_argument("--out", type=Path, default=root / "training" / "results" / "vad-eval.json")
    ap.add_argument("--level-sweep", type=float, nargs="*", default=[-50.0, -30.0, -10.0], metavar="DBFS",
                    help="also play the test music, effects and desktop sounds at each of these active levels "
                    "and report the chosen Silero rule's FP (default %(default)s)")
    ap.add_argument("--report", type=Path, default=None, metavar="JSON",
                    help="only print the docs/vad.md tables of an existing result file")
    args = ap.parse_args(argv)
    if args.report:
        res = json.loads(args.report.read_text())
        for part in ("test", "dev"):
            print(f"{part} part:\n\n{report(res, part)}\n")
        return 0
    res = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    print(f"chosen rules (dev): {json.dumps(res['chosen_rules'])}; best WebRTC mode: {res['best_webrtc_mode']}")
    for part in ("dev", "test"):
        print(f"\n{part}:\n" + table(res, part))
    return 0


if __name__ == "__main__":
    sys.exit(main())
