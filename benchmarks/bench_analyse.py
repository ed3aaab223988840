"""File analysis throughput, memory and the openSMILE peer, on a long recording of real speech.

    python benchmarks/bench_analyse.py [--minutes 10] [--repeats 3] [--long-minutes 60] [--opensmile] [--gate level]
                                       [--model M.onnx]

Builds (once, cached in ``.cache/bench/``) a recording of ``--minutes`` minutes by concatenating
random real RAVDESS and TESS clips (``--data``, default ``../shared/data``; the fixture clips if it
is missing) with pauses of 0.5-1.5 s, written as 16-bit PCM WAV at 16 kHz. Then:

1. **Throughput**: ``stream-ser analyse FILE`` as a separate process, timed from launch to exit
   (start-up included), as a multiple of real time: one core (``taskset -c 0``, ``--jobs 1``)
   and all cores (``--jobs 2``: the model on a second thread; ``--threads-all`` instead gives
   onnxruntime as many intra-op threads as cores, as this benchmark did before ``--jobs``).
   Median, min and max over ``--repeats`` runs; also the same ratio on the process's CPU time
   (user + system), which other jobs on the machine do not inflate (on one idle core the two
   agree). ``--gate`` passes ``analyse --gate`` (default:
   analyse's own default, the VAD gate, whose Silero VAD then runs on every sample), ``--model``
   passes ``analyse --model`` (default: the shipped model).
2. **Memory**: peak RSS of each ``analyse`` process (``os.wait4`` resource usage); with
   ``--long-minutes`` also on a recording of that length, to show memory does not grow with it.
3. **Peer** (``--opensmile``, needs ``pip install opensmile``): openSMILE's eGeMAPSv02
   functionals over the same audio, in a fresh process on one core, in two ways: per 3 s window
   every 0.5 s (the unit of work stream-ser does) and once per file (the cheapest possible use).
   Reported as real-time factors and as the ratio of stream-ser's one-core throughput to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def machine() -> str:
    """One line: cores, CPU model, Python, numpy and onnxruntime versions."""
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


def build_recording(minutes: float, data: Path, out_dir: Path, seed: int = 0) -> Path:
    """A WAV of real clips separated by 0.5-1.5 s pauses, at least ``minutes`` long (cached).

    Returns:
        Path of the 16 kHz mono 16-bit WAV.
    """
    import soundfile as sf

    from stream_ser.audio import load_audio

    out = out_dir / f"speech-{minutes:g}min-seed{seed}.wav"
    if out.is_file():
        return out
    clips = sorted(data.rglob("*.flac")) if data.is_dir() else []
    if not clips:
        clips = sorted((ROOT / "tests" / "fixtures").glob("*.flac"))
    rng = random.Random(seed)
    target = int(minutes * 60 * SR)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.wav")
    written = 0
    with sf.SoundFile(tmp, "w", SR, 1, "PCM_16") as f:
        while written < target:
            x = load_audio(rng.choice(clips), SR)
            pause = np.zeros(int(rng.uniform(0.5, 1.5) * SR), np.float32)
            f.write(x)
            f.write(pause)
            written += x.size + pause.size
    tmp.rename(out)
    return out


def run_analyse(path: Path, threads: int, pin: bool, jobs: int = 1, gate: str | None = None,
                cpu: list[float] | None = None, model: Path | None = None) -> tuple[float, float]:
    """Run ``stream-ser analyse`` on ``path`` (``--threads`` onnxruntime threads, ``--jobs``
    scoring threads, ``--gate`` and ``--model`` unless None); returns (wall seconds, peak RSS in MB) and appends
    the process's CPU seconds (user + system, start-up included) to ``cpu`` if given."""
    exe = shutil.which("stream-ser")
    cmd = [exe] if exe else [sys.executable, "-m", "stream_ser"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd += ["analyse", str(path), "--threads", str(threads), "--jobs", str(jobs), "-q",
                "--csv", str(Path(tmp) / "t.csv")] + ([] if gate is None else ["--gate", gate])
        cmd += [] if model is None else ["--model", str(model)]
        if pin:
            cmd = ["taskset", "-c", "0", *cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if cpu is not None:
            cpu.append(usage.ru_utime + usage.ru_stime)
        err = proc.stderr.read().decode() if proc.stderr else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024


def opensmile_rt(path: Path) -> dict[str, float]:
    """openSMILE eGeMAPSv02 functionals over ``path`` in a fresh process pinned to CPU 0.

    Returns:
        Real-time factors: ``per_window`` (3 s windows every 0.5 s) and ``per_file``.
    """
    code = r"""
import json, sys, time
import numpy as np, opensmile, soundfile as sf
x, sr = sf.read(sys.argv[1], dtype="float32")
smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
smile.process_signal(x[: 3 * sr], sr)  # warm-up
dur = x.size / sr
t0 = time.perf_counter(); smile.process_signal(x, sr); whole = time.perf_counter() - t0
win, hop = 3 * sr, sr // 2
n = 0
t0 = time.perf_counter()
for end in range(hop, x.size + 1, hop):
    smile.process_signal(x[max(0, end - win):end], sr); n += 1
    if time.perf_counter() - t0 > 120: break
per_window = time.perf_counter() - t0
print(json.dumps({"per_file": dur / whole, "per_window": (n * hop / sr) / per_window, "windows": n}))
"""
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def stats(values: list[float]) -> str:
    v = np.asarray(values)
    return f"median {np.median(v):.1f}, min {v.min():.1f}, max {v.max():.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the recording (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=0.0,
                        help="also measure peak RSS on a recording this long (e.g. 60)")
    parser.add_argument("--opensmile", action="store_true", help="also time openSMILE eGeMAPS (benchmark extra)")
    parser.add_argument("--threads-all", action="store_true",
                        help="all cores as onnxruntime intra-op threads (--threads N --jobs 1) instead of --jobs 2")
    parser.add_argument("--gate", choices=("vad", "level"), default=None,
                        help="analyse --gate (default: analyse's default, vad)")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    rec = build_recording(args.minutes, args.data, args.cache)
    dur = os.path.getsize(rec) / 2 / SR
    print(f"recording: {rec} ({dur / 60:.1f} min of real clips with 0.5-1.5 s pauses)")
    print(f"speech gate: {args.gate or 'analyse default (vad)'}; model: {args.model or 'shipped'}")
    cores = os.cpu_count() or 1
    one: list[float] = []
    every = (f"all cores (--threads {cores} --jobs 1)", cores, False, 1) if args.threads_all else \
        ("all cores (--jobs 2)", 1, False, 2)
    for label, threads, pin, jobs in (("one core (taskset -c 0, --jobs 1)", 1, True, 1), every):
        walls, rss, cpus = [], [], []
        for _ in range(args.repeats):
            wall, peak = run_analyse(rec, threads, pin, jobs, args.gate, cpus, args.model)
            walls.append(dur / wall)
            rss.append(peak)
        if pin:
            one = walls
        print(f"analyse, {label}: x real time {stats(walls)} (launch to exit); x real time per CPU second "
              f"{stats([dur / c for c in cpus])}; peak RSS {stats(rss)} MB")
    if args.long_minutes:
        long_rec = build_recording(args.long_minutes, args.data, args.cache)
        wall, peak = run_analyse(long_rec, 1, True, 1, args.gate, model=args.model)
        long_dur = os.path.getsize(long_rec) / 2 / SR
        print(f"analyse, {long_dur / 60:.0f} min recording, one core: x real time {long_dur / wall:.1f}; "
              f"peak RSS {peak:.1f} MB")
    if args.opensmile:
        peer = opensmile_rt(rec)
        ours = float(np.median(one))
        print(f"openSMILE eGeMAPSv02 functionals, one core: per 3 s window every 0.5 s x real time "
              f"{peer['per_window']:.1f} ({peer['windows']} windows); once per file x real time {peer['per_file']:.1f}")
        print(f"stream-ser analyse (one core) / openSMILE: {ours / peer['per_window']:.1f}x the per-window "
              f"extraction, {ours / peer['per_file']:.1f}x the per-file extraction")


if __name__ == "__main__":
    main()
