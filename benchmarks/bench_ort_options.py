"""onnxruntime levers for the shipped model, one thread: batch size, spinning, graph optimisation.

    taskset -c 0 python benchmarks/bench_ort_options.py [--model PATH] [--repeats 200]

Prints the median ms per window for batches of 1, 4, 16 and 64 windows (does batching in
``analyse`` pay?), with intra-op spinning off, and with basic instead of full graph
optimisation. Input: real log-mel windows of the fixture clips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream_ser.model import default_model_path

ROOT = Path(__file__).resolve().parents[1]


def windows(n: int) -> np.ndarray:
    """``n`` real log-mel windows ``(n, 40, 149, 1)`` from the fixture clips (repeated as needed)."""
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import FeatureConfig, window_features
    from stream_ser.audio import load_audio

    cfg = FeatureConfig()
    out = []
    for clip in sorted((ROOT / "tests" / "fixtures").glob("*.flac")):
        x = load_audio(clip, cfg.sample_rate_hz)
        out += [f for f in (window_features(cut_window(x, e, cfg.window_samples), cfg)
                            for e in window_ends(x.size, cfg.hop_samples)) if f is not None]
    return np.stack([out[i % len(out)] for i in range(n)])[..., None]


def ms_per_window(path: str, options: ort.SessionOptions, x: np.ndarray, repeats: int) -> float:
    """Median ms per window of ``repeats`` runs of the batch ``x``."""
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(10):
        s.run(None, {name: x})
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1e3 / len(x)


def options(**settings) -> ort.SessionOptions:
    """One intra-op and one inter-op thread (the runtime's default), plus ``settings``."""
    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    for key, value in settings.items():
        setattr(o, key, value)
    return o


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None, help="ONNX model (repeatable)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    paths = args.model or [str(default_model_path())]
    print(f"onnxruntime {ort.__version__}; median ms per window, one intra-op thread")
    for path in paths:
        print(f"model {Path(path).name}")
        for batch in (1, 4, 16, 64):
            reps = max(5, args.repeats // max(1, batch // 4))
            print(f"  batch {batch:2d}: {ms_per_window(path, options(), windows(batch), reps):.3f}")
        no_spin = options()
        no_spin.add_session_config_entry("session.intra_op.allow_spinning", "0")
        print(f"  spinning off: {ms_per_window(path, no_spin, windows(1), args.repeats):.3f}")
        basic = options(graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        print(f"  basic graph optimisation: {ms_per_window(path, basic, windows(1), args.repeats):.3f}")


if __name__ == "__main__":
    main()
