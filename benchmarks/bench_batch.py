"""Archive throughput: ``stream-ser batch`` on Ray Data against ``stream-ser analyse``, same files.

    python benchmarks/bench_batch.py [--recordings 8] [--minutes 4] [--workers 1 2] [--jobs 1 2]

Builds (once, cached in ``.cache/bench/``) ``--recordings`` recordings of ``--minutes`` minutes
each by concatenating random real RAVDESS and TESS clips with 0.5-1.5 s pauses
(``bench_analyse.build_recording``, one seed per recording). Then, on those files:

1. ``stream-ser analyse FILES --jobs J -q --csv OUT`` as its own process, for each ``--jobs``:
   wall time from launch to exit and the process's CPU time (user + system).
2. A batch with W workers on a new local Ray, for each ``--workers``, each in a fresh driver
   process (``run_batch``, what ``stream-ser batch FILES --out DIR --workers W`` runs): wall time
   from launch to exit, and separately Ray's start-up (``ray.init``; tried twice if the node does
   not start within Ray's 30 s, which happens on an overloaded machine), the time to the first
   committed recording (an actor's start: a process, imports, the model, plus one recording),
   the scoring phase (first task to last row), and the actors' own time inside the recordings
   (wall and CPU, from the summary rows' ``wall_s`` and ``cpu_s``). What the scoring phase adds
   to the actors' busy time per worker is Ray's scheduling and the actors' start.
3. A capacity model from the actors' CPU time per hop: hours of audio one core scores per hour,
   and what N nodes of C cores give, with Ray's fixed costs beside it.

Per-CPU-second figures (audio seconds scored per CPU second) depend much less on other work on
the machine than wall times; the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_analyse import ROOT, SR, build_recording, machine

DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
from stream_ser.batch import BatchOptions, read_inputs, run_batch
imports_s = time.perf_counter() - t0
recs = read_inputs(sys.argv[3:])
import ray
t1 = time.perf_counter()
for attempt in (1, 2):  # Ray gives its node 30 s to start, which an overloaded machine can exceed
    try:
        ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        break
    except Exception as exc:
        if attempt == 2 or "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
ray_init_s = time.perf_counter() - t1
report = run_batch(recs, sys.argv[1], BatchOptions(), workers=int(sys.argv[2]), redo=True)
ray.shutdown()
rows = report.rows
print(json.dumps({
    "imports_s": imports_s, "ray_attempts": attempt,
    "ray_init_s": ray_init_s, "first_row_s": report.first_row_s, "run_s": report.run_s,
    "total_s": report.total_s, "workers": report.workers, "failed": report.failed,
    "audio_s": sum(r["duration_s"] or 0 for r in rows), "windows": sum(r["n_windows"] or 0 for r in rows),
    "actor_wall_s": sum(r["wall_s"] for r in rows), "actor_cpu_s": sum(r["cpu_s"] for r in rows),
    "first_recording_s": min((r["wall_s"] for r in rows), default=0.0),
}))
"""


def run_analyse(files: list[Path], jobs: int) -> tuple[float, float]:
    """``stream-ser analyse FILES --jobs J``: (wall s launch to exit, CPU s of the process)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "stream_ser", "analyse", *map(str, files), "--jobs", str(jobs), "-q",
               "--csv", str(Path(tmp) / "t.csv")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"analyse failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def run_batch_process(files: list[Path], workers: int) -> dict:
    """A fresh driver process running ``run_batch`` on a new local Ray; its figures plus the wall
    time from launch to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", DRIVER, str(Path(tmp) / "out"), str(workers), *map(str, files)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"batch driver failed: {proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["wall_s"] = wall
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=8, help="how many recordings (default 8)")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each (default 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="batch workers to time (default 1 2)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="analyse --jobs to time (default 1 2)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    import ray

    print(f"ray {ray.__version__}; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    files = [build_recording(args.minutes, args.data, args.cache, seed=i) for i in range(args.recordings)]
    audio_s = sum(os.path.getsize(f) / 2 / SR for f in files)
    print(f"recordings: {len(files)} x {args.minutes:g} min of real clips with pauses ({audio_s / 60:.1f} min in all)")
    print()
    print("| run | wall s (launch to exit) | x real time (wall) | CPU s | x real time per CPU s |")
    print("| --- | --- | --- | --- | --- |")
    for jobs in args.jobs:
        wall, cpu = run_analyse(files, jobs)
        print(f"| `analyse --jobs {jobs}` | {wall:.1f} | {audio_s / wall:.0f} | {cpu:.1f} (the process) | "
              f"{audio_s / cpu:.0f} |")
    results = {}
    for workers in args.workers:
        f = run_batch_process(files, workers)
        results[workers] = f
        assert f["failed"] == 0 and abs(f["audio_s"] - audio_s) < 1.0, f
        print(f"| `batch --workers {workers}` | {f['wall_s']:.1f} | {audio_s / f['wall_s']:.0f} | "
              f"{f['actor_cpu_s']:.1f} (the actors, inside recordings) | {audio_s / f['actor_cpu_s']:.0f} |")
    print()
    print("| batch | Python and stream-ser imports s | Ray start (`ray.init`) s | first recording committed s "
          "| scoring phase s | actors busy s (wall, per worker) | scheduling and actor start s | "
          "x real time in the scoring phase |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for workers, f in results.items():
        busy = f["actor_wall_s"] / f["workers"]
        tries = "" if f["ray_attempts"] == 1 else f" ({f['ray_attempts']} tries)"
        print(f"| {f['workers']} worker(s) | {f['imports_s']:.1f} | {f['ray_init_s']:.1f}{tries} | {f['first_row_s']:.1f} | "
              f"{f['run_s']:.1f} | {busy:.1f} | {f['run_s'] - busy:.1f} | {audio_s / f['run_s']:.0f} |")
    best = min(results.values(), key=lambda f: f["actor_cpu_s"] / f["audio_s"])
    per_hop_ms = 1000 * best["actor_cpu_s"] / best["windows"]
    per_core = best["audio_s"] / best["actor_cpu_s"]  # audio s per CPU s = audio hours per core-hour
    fixed = best["ray_init_s"] + best["first_row_s"]
    print()
    print(f"capacity: {per_hop_ms:.2f} ms of CPU per hop (one 3 s window every 0.5 s, per channel, decoding and "
          f"Parquet included) -> one core scores {per_core:.0f} hours of audio per hour ({0.5e3 / per_hop_ms:.0f}x "
          f"real time); N nodes of C cores: N x C x {per_core:.0f} hours per hour, after a fixed {fixed:.0f} s "
          f"(Ray start and the first actor, this machine)")
    for nodes, cores in ((1, 2), (4, 16), (16, 32)):
        print(f"  {nodes} node(s) x {cores} cores: {nodes * cores * per_core:,.0f} hours of audio per hour "
              f"(a 100,000-hour archive in {100_000 / (nodes * cores * per_core):.1f} h)")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
