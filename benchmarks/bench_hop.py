"""Per-hop cost of the runtime: feature recipe + model inference for one window, one thread.

Prints median, p99 and spread over repeated runs on real speech windows, plus the machine.

    python benchmarks/bench_hop.py [--model PATH ...] [--repeats 300]

Windows come from the committed fixture clips (tests/fixtures/), cut exactly as the engine cuts
them. onnxruntime runs with one intra-op thread (the runtime default). Without ``--model`` it
measures the shipped model; give ``--model`` several times to compare models in one run.
``--profile`` adds each model's slowest operators from onnxruntime's own profiler (microseconds
per window, averaged over the runs): where inference time goes, node by node.
numpy's BLAS (the mel projection) is held to one thread, as ``stream-ser analyse`` and ``listen``
hold it (:func:`stream_ser.features.one_blas_thread`). Each model's features are computed with
that model's own recipe (its metadata). Pin it to one core for clean figures: ``taskset -c 0
python benchmarks/bench_hop.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """One line: cores, CPU model, Python, numpy and onnxruntime versions."""
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    return (
        f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def main() -> None:
    from stream_ser.adaptation import EmbeddingAdapter
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import log_mel, one_blas_thread, preprocess, window_features
    from stream_ser.model import EmotionModel
    from stream_ser.audio import load_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None, help="ONNX model (repeatable)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--batch", type=int, nargs="*", default=[], metavar="N",
                        help="also time inference on batches of N windows, reported per window "
                        "(would batching in `analyse` pay?)")
    parser.add_argument("--profile", type=int, nargs="?", const=12, default=0, metavar="TOP",
                        help="also print each model's TOP slowest onnxruntime nodes (default 12)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    paths = args.model or [None]
    models = [EmotionModel(p, num_threads=1) for p in paths]
    clips = sorted((root / "tests" / "fixtures").glob("*.flac"))

    def speech_windows(cfg):
        windows = []
        for clip in clips:
            x = load_audio(clip, cfg.sample_rate_hz)
            windows += [cut_window(x, e, cfg.window_samples) for e in window_ends(x.size, cfg.hop_samples)]
        return [w for w in windows if preprocess(w, cfg) is not None]

    def timed(fn, items):
        for item in items[:20]:  # warm-up
            fn(item)
        out = []
        for i in range(args.repeats):
            item = items[i % len(items)]
            t0 = time.perf_counter()
            fn(item)
            out.append((time.perf_counter() - t0) * 1e3)
        return np.array(out)

    rows = {}
    recipes = {m.feature_config for m in models}
    with one_blas_thread():
        for model in models:
            cfg = model.feature_config
            speech = speech_windows(cfg)
            feats = [log_mel(preprocess(w, cfg), cfg) for w in speech]
            if len(recipes) > 1 or not rows:
                which = f", recipe of {model.path.name}" if len(recipes) > 1 else ""
                rows[f"features (gate+normalise+trim+log-mel){which}"] = timed(lambda w, c=cfg: window_features(w, c), speech)
            rows[f"inference, {model.path.name} (1 thread)"] = timed(model.predict, feats)
            rows[f"features + inference, {model.path.name}"] = timed(
                lambda w, m=model, c=cfg: m.predict(window_features(w, c)), speech
            )
            head = model.metadata.embedding_adaptation
            if head is not None:  # what the runtime's default (--adapt auto) runs for such a model
                adapter = EmbeddingAdapter(head)
                rows[f"features + inference + embedding adaptation, {model.path.name}"] = timed(
                    lambda w, m=model, c=cfg, a=adapter: a(m.predict_with_embedding(window_features(w, c))[1].reshape(-1)),
                    speech)
            for n in args.batch:
                batches = [np.stack([feats[(i + j) % len(feats)] for j in range(n)]) for i in range(len(feats))]
                rows[f"inference per window, batch {n}, {model.path.name}"] = timed(model.predict, batches) / n
    print(f"machine: {machine()}")
    for model in models:
        print(f"model: {model.path} ({model.path.stat().st_size / 1e6:.1f} MB), input {model.feature_config.input_shape}, "
              f"mel bands {model.feature_config.fmin_hz:g}-{model.feature_config.fmax_hz:g} Hz")
    print(f"{len(speech)} real speech windows from {len(clips)} fixture clips, {args.repeats} runs each")
    width = max(52, *map(len, rows))
    print(f"{'stage':{width}s} {'p50 ms':>8s} {'p99 ms':>8s} {'IQR ms':>8s}")
    for name, t in rows.items():
        q1, q3 = np.percentile(t, [25, 75])
        print(f"{name:{width}s} {np.median(t):8.2f} {np.percentile(t, 99):8.2f} {q3 - q1:8.2f}")
    if args.profile:
        for model in models:
            cfg = model.feature_config
            feats = [log_mel(preprocess(w, cfg), cfg) for w in speech_windows(cfg)]
            print(f"\nonnxruntime profile, {model.path.name}: us per window (node, operator), {args.repeats} runs")
            for (node, op), us in profile_nodes(model.path, feats, args.repeats)[: args.profile]:
                print(f"{us:8.1f}  {node} ({op})")


def profile_nodes(path: Path, feats: list[np.ndarray], runs: int) -> list[tuple[tuple[str, str], float]]:
    """Mean microseconds per window of each node of ``path`` after onnxruntime's graph
    optimisations (one thread, batch 1), from its profiler (``SessionOptions.enable_profiling``),
    slowest first."""
    import json
    import tempfile
    from collections import Counter

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for i in range(runs):
            session.run(None, {name: feats[i % len(feats)][None, :, :, None]})
        events = json.loads(Path(session.end_profiling()).read_text())
    total: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            total[(e["name"][: -len("_kernel_time")], e.get("args", {}).get("op_name", "?"))] += e["dur"]
    return [(key, us / runs) for key, us in total.most_common()]


if __name__ == "__main__":
    main()
