"""Startup time of ``stream-ser listen``: launch -> ready, and launch -> first prediction.

Target (benchmarks/README.md): ready <= 1.5 s after launch, where "ready" means the input stream is
open and the model loaded. This script prints the figures; it asserts nothing.

    taskset -c 0 python benchmarks/bench_startup.py [--runs 10] [--data ../shared/data]

The virtual microphone (``tests/virtual_mic.sh``) is started, or reused if one answers, and a WAV
of random real clips with 0.5-1.5 s pauses (see ``bench_live.py``) plays into it in a loop for the
whole benchmark. Each run launches

    stream-ser listen --no-tui --format jsonl --duration 3

(the interpreter's own console script, not a pyenv shim) with ``subprocess.Popen`` and
``PULSE_SERVER`` set; ``t0`` is taken just before ``Popen``. A thread reads stderr and stamps the
first line containing ``stream-ser: listening to``: the CLI prints it from its ``SessionStarted``
handler, which the session emits after the model was loaded, the feature recipe warmed up and
the input stream opened (``MicrophoneSource`` constructed), just before the stream is started.
Another thread reads stdout and stamps the first JSON line with ``"type": "prediction"``; the
first prediction needs one hop (0.5 s) of captured audio after the stream started, plus however
long the audio stack takes to deliver its first block. The exit time is stamped too.

One untimed warm-up run comes first (page cache, PulseAudio client setup). For reference each
run also times ``python -c "import stream_ser.cli"`` and ``python -c pass`` (the interpreter
alone). Figures: median, IQR, min and max over the runs.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import (  # noqa: E402  (shared helpers of the live benchmarks)
    DEFAULT_DATA,
    machine,
    speech_on_virtual_mic,
    stream_ser_command,
)

READY_TEXT = "stream-ser: listening to"


@dataclass
class Launch:
    """Times of one ``listen`` launch, in seconds after ``t0`` (None: never seen).

    Attributes:
        ready_s: First stderr line containing ``stream-ser: listening to``.
        first_prediction_s: First stdout JSON line with ``"type": "prediction"``.
        exit_s: Process exit.
        exit_status: Its exit status (None if it had to be killed).
        predictions: Prediction lines on stdout.
        stderr: Everything it printed on stderr.
    """

    ready_s: float | None = None
    first_prediction_s: float | None = None
    exit_s: float | None = None
    exit_status: int | None = None
    predictions: int = 0
    stderr: str = ""


_running: list[subprocess.Popen] = []  # launched children, killed on exit or Ctrl-C


def launch_listen(env: dict[str, str], duration_s: float, cwd: Path, timeout_s: float = 60.0) -> Launch:
    """Launch ``stream-ser listen --no-tui --format jsonl --duration S`` once and stamp its
    ready line, first prediction and exit (see the module docstring)."""
    cmd = stream_ser_command() + ["listen", "--no-tui", "--format", "jsonl", "--duration", f"{duration_s:g}"]
    result = Launch()
    err: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _running.append(proc)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if result.ready_s is None and READY_TEXT in line:
                result.ready_s = time.monotonic() - t0
            err.append(line)

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("type") == "prediction":
                if result.first_prediction_s is None:
                    result.first_prediction_s = time.monotonic() - t0
                result.predictions += 1

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stderr, read_stdout)]
    for r in readers:
        r.start()
    try:
        result.exit_status = proc.wait(timeout_s)
        result.exit_s = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        err.append(f"[killed after {timeout_s:g} s]\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _running.remove(proc)
    for r in readers:
        r.join(5)
    result.stderr = "".join(err)
    return result


def time_command(args: list[str], cwd: Path) -> float:
    """Wall time (s) of running ``args`` to completion (output discarded)."""
    t0 = time.monotonic()
    subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0


def summarise(values: list[float | None]) -> str:
    """``median, IQR, min, max`` in seconds of the values seen (and how many were missing)."""
    import numpy as np

    seen = [v for v in values if v is not None]
    if not seen:
        return "never seen"
    a = np.asarray(seen)
    q1, q3 = np.percentile(a, [25, 75])
    missing = len(values) - len(seen)
    return (f"median {np.median(a):.3f} s, IQR {q3 - q1:.3f} s, min {a.min():.3f} s, max {a.max():.3f} s (n={a.size}"
            + (f", {missing} missing)" if missing else ")"))


def main() -> None:
    """Parse the options, set up the virtual microphone and playback, launch ``listen`` repeatedly."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="usage: taskset -c 0 python benchmarks/bench_startup.py --runs 10")
    parser.add_argument("--runs", type=int, default=10, help="timed launches (default 10), after one warm-up")
    parser.add_argument("--duration", type=float, default=3.0, help="--duration of each listen run, s (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"data folder with ravdess/ and tess/ (default {DEFAULT_DATA}; fixtures if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random clip order (default 0)")
    args = parser.parse_args()

    def on_term(signum, frame) -> None:
        raise KeyboardInterrupt  # run the finally blocks: kill children, stop the player and the mic

    signal.signal(signal.SIGTERM, on_term)
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    cmd = stream_ser_command() + ["listen", "--no-tui", "--format", "jsonl", "--duration", f"{args.duration:g}"]
    print(f"command: {' '.join(cmd)}")
    runs: list[Launch] = []
    imports: list[float] = []
    bare: list[float] = []
    try:
        with speech_on_virtual_mic(120, args.data, args.seed, "bench_startup_") as (tmp, vmic, _):
            w = launch_listen(vmic.env(), args.duration, tmp)
            print(f"warm-up run (untimed): exit {w.exit_status}, {w.predictions} predictions", flush=True)
            if w.ready_s is None or w.first_prediction_s is None:
                print(f"  warning: warm-up did not reach ready/prediction; its stderr:\n{w.stderr}")
            time_command([sys.executable, "-c", "import stream_ser.cli"], tmp)
            print(f"{'run':>4s} {'ready s':>8s} {'1st pred s':>10s} {'exit s':>7s} {'preds':>5s} "
                  f"{'import s':>8s} {'python s':>8s}  status")
            for i in range(args.runs):
                r = launch_listen(vmic.env(), args.duration, tmp)
                runs.append(r)
                imports.append(time_command([sys.executable, "-c", "import stream_ser.cli"], tmp))
                bare.append(time_command([sys.executable, "-c", "pass"], tmp))

                def f(v: float | None) -> str:
                    return "-" if v is None else f"{v:.3f}"

                stopped = next((ln for ln in r.stderr.splitlines() if "stopped after" in ln), "")
                overflows = stopped.split(" predictions, ")[-1].split(",")[0] if stopped else "?"
                print(f"{i + 1:4d} {f(r.ready_s):>8s} {f(r.first_prediction_s):>10s} {f(r.exit_s):>7s} "
                      f"{r.predictions:5d} {imports[-1]:8.3f} {bare[-1]:8.3f}  exit {r.exit_status}, {overflows}",
                      flush=True)
                if r.exit_status != 0 or r.ready_s is None:
                    print("      stderr: " + r.stderr.strip().replace("\n", "\n      stderr: "))
    except KeyboardInterrupt:
        print("\n[interrupted: figures of the runs so far follow]")
    finally:
        for proc in list(_running):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if not runs:
        return
    print()
    print(f"== stream-ser listen startup, {len(runs)} run(s) after one warm-up ==")
    print(f"launch -> ready ('{READY_TEXT}' on stderr): {summarise([r.ready_s for r in runs])}")
    print(f"launch -> first prediction (JSON line on stdout): {summarise([r.first_prediction_s for r in runs])}")
    gaps = [r.first_prediction_s - r.ready_s if r.ready_s is not None and r.first_prediction_s is not None else None
            for r in runs]
    print(f"ready -> first prediction: {summarise(gaps)}")
    print(f"launch -> exit (--duration {args.duration:g}): {summarise([r.exit_s for r in runs])}")
    print(f"reference: python -c 'import stream_ser.cli': {summarise(imports)}")
    print(f"reference: python -c pass (interpreter alone): {summarise(bare)}")
    print(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
