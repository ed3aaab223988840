"""Per-hop cost of the runtime: feature recipe + model inference for one window, one thread.

Prints median, p99 and spread over repeated runs on real speech windows, plus the machine.

    python benchmarks/bench_hop.py [--model PATH] [--repeats 300]

Windows come from the committed fixture clips (tests/fixtures/), cut exactly as the engine cuts
them. onnxruntime runs with one intra-op thread (the runtime default).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    import librosa
    import onnxruntime

    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, librosa {librosa.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def main() -> None:
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import log_mel, preprocess
    from stream_ser.model import EmotionModel
    from stream_ser.sources import load_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    model = EmotionModel(args.model, num_threads=1)
    cfg = model.feature_config
    clips = sorted((Path(__file__).resolve().parents[1] / "tests" / "fixtures").glob("*.flac"))
    windows = []
    for clip in clips:
        x = load_audio(clip, cfg.sample_rate_hz)
        windows += [cut_window(x, e, cfg.window_samples) for e in window_ends(x.size, cfg.hop_samples)]
    speech = [w for w in windows if preprocess(w, cfg) is not None]
    feats = [log_mel(preprocess(w, cfg), cfg) for w in speech]
    for f in feats[:20]:  # warm-up
        model.predict(f)

    def timed(fn, items):
        out = []
        for i in range(args.repeats):
            item = items[i % len(items)]
            t0 = time.perf_counter()
            fn(item)
            out.append((time.perf_counter() - t0) * 1e3)
        return np.array(out)

    rows = {
        "features (gate+normalise+trim+log-mel)": timed(lambda w: log_mel(preprocess(w, cfg), cfg), speech),
        "model inference (onnxruntime, 1 thread)": timed(model.predict, feats),
        "features + inference (one hop)": timed(lambda w: model.predict(log_mel(preprocess(w, cfg), cfg)), speech),
    }
    print(f"machine: {machine()}")
    print(f"model: {model.path} ({model.path.stat().st_size / 1e6:.1f} MB), input {cfg.input_shape}")
    print(f"{len(speech)} real speech windows from {len(clips)} fixture clips, {args.repeats} runs each")
    print(f"{'stage':42s} {'p50 ms':>8s} {'p99 ms':>8s} {'IQR ms':>8s}")
    for name, t in rows.items():
        q1, q3 = np.percentile(t, [25, 75])
        print(f"{name:42s} {np.median(t):8.2f} {np.percentile(t, 99):8.2f} {q3 - q1:8.2f}")


if __name__ == "__main__":
    main()
