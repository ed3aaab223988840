"""Live listening cost: CPU, end-to-end latency, dropped audio and peak RSS of ``listen``.

Targets (benchmarks/README.md): ``listen`` uses <= 2 % of one core, end-to-end latency p99 <= 50 ms,
zero dropped blocks over 5 minutes, peak RSS <= 200 MB. This script prints the figures; it
asserts nothing.

    taskset -c 0 python benchmarks/bench_live.py [--minutes 5] [--data ../shared/data]
    taskset -c 0 python benchmarks/bench_live.py --cli [--minutes 5]

The virtual microphone (``tests/virtual_mic.sh``: a PulseAudio null sink ``virt`` whose monitor
is the default input) is started, or reused if one answers. A WAV of random real clips (RAVDESS
and TESS from ``--data``; the fixture clips in ``tests/fixtures`` if that folder is missing)
separated by 0.5-1.5 s pauses is rendered in a child process (so decoding does not count in this
process's RSS) and played into the sink with ``paplay`` for the whole run, in a loop.

Default (in-process) mode runs exactly the session ``stream-ser listen --no-tui --csv OUT``
runs: a fresh ``EmotionModel()`` (the shipped model, one onnxruntime thread), the CLI's
feature warm-up, ``ListenSession(model, open MicrophoneSource(default input), [LinePrinter,
CsvSink], SessionOptions(duration_s=...))`` and ``session.run(on_event)`` on the calling
thread; the printed lines go to /dev/null and the CSV to a temporary folder. It measures:

* CPU: process CPU time (``time.process_time()``: every thread of this process, so the
  PortAudio callback thread too) between ``SessionStarted`` and ``SessionEnded``, over the
  wall time between them, as a percentage of one core; split into the stream start
  (``SessionStarted`` -> first prediction: PortAudio's ALSA ``pulse`` device takes over a second
  of busy CPU before its first callback) and the steady state (first -> last prediction), plus
  the steady state per 10 s of audio (median, p99, IQR, min, max).
* Latency per prediction: ``time.monotonic()`` when ``PredictionMade`` reaches the event
  handler minus ``event.boundary_monotonic_s``, the moment the session's worker received the
  chunk that completed the hop. It includes pushing the chunk into the engine, the speech gate,
  features, inference, smoothing, the sink writes (line printer, CSV row + flush) and the event;
  when a chunk completes several hops the later ones include the earlier ones' work. It
  excludes everything before the chunk reached the worker: the PortAudio/ALSA/PulseAudio block
  and buffer time before the callback (40 ms blocks plus the server's fragment latency), the
  wake-up of the worker by the callback and the resampling of the chunk.
  The headline latency is measured from ``event.captured_monotonic_s`` instead: the estimated
  capture of the hop's last sample (chunk arrival minus the duration of the chunk's samples
  after it), so it also includes the wait for the rest of the capture block, the worker's
  wake-up and resampling; only device and sound-server buffering stay invisible.
* Predictions made against expected (audio captured / hop, rounded up), speech predictions,
  PortAudio input overflows (dropped input blocks) and frames dropped because the worker fell
  behind the capture ring buffer (``SessionStats``/``MicrophoneSource`` counters).
* RSS: current and peak (``ru_maxrss``) at ``SessionStarted`` and peak at the end.

``--cli`` measures the real command as a separate process instead:
``stream-ser listen --no-tui --duration S --csv TMP.csv -q`` with ``PULSE_SERVER`` set, stdout
read by a thread (one line per prediction). It reports the process's CPU over its whole life and
over the capture phase (from its first prediction line to the last 1 s sample of
``/proc/PID/stat`` utime+stime), and its peak RSS (``ru_maxrss`` of that child from
``os.wait4``, and the last ``VmHWM`` polled from ``/proc/PID/status``). ``-q`` hides the CLI's
final counters, so this mode reports predictions (lines and CSV rows) but not overflows; latency
is only measured in-process.

Pin the run to one core (``taskset -c 0``); paplay and a PulseAudio daemon started here inherit
the pinning and share that core.

Why one script of about 650 lines: a benchmark is run as one file (``python
benchmarks/bench_live.py``); its two modes share the virtual microphone, the playback, the CPU and
memory sampling and the report, and splitting them would make a package out of a script.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
VMIC_SCRIPT = REPO / "tests" / "virtual_mic.sh"
DEFAULT_DATA = REPO.parent / "shared" / "data"
SINK = "virt"
RENDER_RATE_HZ = 16000


# --------------------------------------------------------------------------------------------
# Machine, clips, virtual microphone, player (also used by bench_startup.py)


def machine() -> str:
    """One line describing the machine: cores (and this process's CPU affinity), CPU model from
    /proc/cpuinfo, Python, numpy and onnxruntime versions."""
    import numpy as np
    import onnxruntime

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    except AttributeError:
        affinity = "?"
    return (
        f"{os.cpu_count()} cores (this process on CPU {affinity}), {model}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def find_clips(data: Path) -> tuple[list[Path], str]:
    """Real speech clips: RAVDESS and TESS FLACs under ``data``, else the fixture clips.

    Returns:
        ``(clips, description)``.
    """
    clips = sorted(data.glob("ravdess/Actor_*/*.flac")) + sorted(data.glob("tess/**/*.flac"))
    if clips:
        return clips, f"{len(clips)} RAVDESS/TESS clips from {data}"
    clips = sorted(FIXTURES.glob("*.flac"))
    return clips, f"{len(clips)} fixture clips from {FIXTURES} ({data} has none)"


def _render(out: Path, seconds: float, clips: list[Path], seed: int) -> None:
    """Write a 16 kHz mono PCM-16 WAV of random clips with 0.5-1.5 s pauses, clip by clip
    (runs in the child process started by :func:`render_recording`)."""
    import numpy as np
    import soundfile as sf

    from stream_ser.audio import load_audio

    rng = random.Random(seed)
    target = int(seconds * RENDER_RATE_HZ)
    written = n = 0
    speech = 0
    with sf.SoundFile(out, "w", samplerate=RENDER_RATE_HZ, channels=1, subtype="PCM_16") as f:
        while written < target:
            x = load_audio(rng.choice(clips), RENDER_RATE_HZ)[: target - written]
            f.write(x)
            written += x.size
            speech += x.size
            n += 1
            pause = np.zeros(int(rng.uniform(0.5, 1.5) * RENDER_RATE_HZ), np.float32)[: target - written]
            f.write(pause)
            written += pause.size
    print(f"{n} {speech / RENDER_RATE_HZ:.1f}")


def render_recording(out: Path, seconds: float, data: Path, seed: int = 0) -> str:
    """Render the playback WAV (see :func:`_render`) in a child process, so decoding does not
    raise this process's peak RSS. Returns a description of what was rendered."""
    clips, where = find_clips(data)
    if not clips:
        raise SystemExit(f"no clips found in {data} nor in {FIXTURES}")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--render-to", str(out), "--render-seconds", str(seconds),
         "--data", str(data), "--seed", str(seed)],
        capture_output=True, text=True, cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"rendering the playback WAV failed:\n{proc.stderr}")
    n, speech_s = proc.stdout.split()
    return f"{seconds:.0f} s WAV of {n} random clips ({float(speech_s):.0f} s of clip audio) with 0.5-1.5 s pauses; {where}"


class VirtualMicrophone:
    """``tests/virtual_mic.sh`` as a context manager: start (or reuse) the PulseAudio daemon and
    set ``PULSE_SERVER`` in this process's environment (before anything imports sounddevice);
    stop the daemon on exit only if it was started here (like the tests' ``virtual_mic`` fixture).

    Attributes:
        pulse_server: The ``PULSE_SERVER`` value.
        started_here: False if a daemon was already answering ("reusing").
    """

    def __init__(self) -> None:
        self.pulse_server = ""
        self.started_here = False

    def __enter__(self) -> "VirtualMicrophone":
        proc = subprocess.run(["bash", str(VMIC_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
        exports = [ln for ln in proc.stdout.splitlines() if ln.startswith("export PULSE_SERVER=")]
        if proc.returncode != 0 or not exports:
            raise SystemExit(f"virtual microphone unavailable ({VMIC_SCRIPT.name} exited {proc.returncode}):\n"
                             f"{proc.stderr.strip()[-800:]}")
        self.pulse_server = exports[-1].split("=", 1)[1].strip()
        self.started_here = "reusing" not in proc.stderr
        os.environ["PULSE_SERVER"] = self.pulse_server
        return self

    def env(self) -> dict[str, str]:
        """This process's environment with ``PULSE_SERVER`` set."""
        return {**os.environ, "PULSE_SERVER": self.pulse_server}

    def describe(self) -> str:
        """One line: the server and whether it was started here."""
        return f"virtual mic: PULSE_SERVER={self.pulse_server} ({'started here' if self.started_here else 'reused'})"

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            subprocess.run(["bash", str(VMIC_SCRIPT), "stop"], capture_output=True, text=True, timeout=60)


class LoopPlayer:
    """Plays a WAV into the null sink with ``paplay --device=virt``, over and over, on a thread,
    until :meth:`stop` (which kills the current player). A context manager.

    Attributes:
        plays: paplay processes started.
        errors: stderr of paplay runs that failed.
    """

    def __init__(self, wav: Path, env: dict[str, str], sink: str = SINK) -> None:
        self.wav = wav
        self.env = env
        self.sink = sink
        self.plays = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="paplay-loop", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(
                    ["paplay", f"--device={self.sink}", str(self.wav)],
                    env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                )
                self.plays += 1
            proc = self._proc
            _, err = proc.communicate()
            if proc.returncode != 0 and not self._stop.is_set():
                self.errors.append(err.decode(errors="replace").strip() or f"paplay exited {proc.returncode}")
                self._stop.wait(1.0)

    def start(self) -> "LoopPlayer":
        """Start the playing thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop playing: kill the current paplay and join the thread."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread.is_alive():
            self._thread.join(10)

    def __enter__(self) -> "LoopPlayer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def speech_on_virtual_mic(seconds: float, data: Path, seed: int = 0, prefix: str = "bench_"):
    """A temporary folder, a playback WAV of real clips (:func:`render_recording`), the virtual
    microphone and a :class:`LoopPlayer` playing the WAV into it; yields ``(tmp, vmic, player)``
    once playback has had 0.5 s to connect, and reports paplay's runs at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        wav = tmp / "playback.wav"
        print(f"playback: {render_recording(wav, seconds, data, seed)}", flush=True)
        with VirtualMicrophone() as vmic:
            print(vmic.describe())
            with LoopPlayer(wav, vmic.env()) as player:
                time.sleep(0.5)  # let paplay connect so the capture starts on the recording
                yield tmp, vmic, player
            print(f"paplay: {player.plays} run(s)" + (f", errors: {player.errors}" if player.errors else ""))


def stream_ser_command() -> list[str]:
    """The ``stream-ser`` console script of this interpreter (not a pyenv shim, whose bash and
    pyenv startup would be counted), else ``python -m stream_ser``."""
    exe = Path(sys.executable).parent / "stream-ser"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "stream_ser"]


def spread(values: list[float], unit: str = "", fmt: str = ".1f") -> str:
    """``median X, p99 Y, IQR Z, min A, max B`` of ``values``."""
    import numpy as np

    if not values:
        return "no values"
    a = np.asarray(values, dtype=float)
    q1, q3 = np.percentile(a, [25, 75])
    parts = [("median", np.median(a)), ("p99", np.percentile(a, 99)), ("IQR", q3 - q1), ("min", a.min()), ("max", a.max())]
    return ", ".join(f"{k} {v:{fmt}}{unit}" for k, v in parts) + f" (n={a.size})"


def rss_mb() -> float:
    """Current resident set size of this process (MB), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB): ``ru_maxrss`` (KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def _interrupt(on_stop):
    """SIGINT/SIGTERM -> ``on_stop()`` once, for a clean stop with partial figures (the CLI's own
    signal handling, ``stream_ser.cli._Stop``); a second signal exits, the finally blocks still
    clean up. ``.event.is_set()`` tells whether a signal came."""
    from stream_ser.cli import _Stop

    def stop() -> None:
        print("\n[signal: stopping, figures so far follow]", file=sys.stderr, flush=True)
        on_stop()

    return _Stop(on_stop=stop)


# --------------------------------------------------------------------------------------------
# In-process: the session of `stream-ser listen --no-tui --csv OUT`


def run_in_process(duration_s: float, tmp: Path, block_s: float | None = None, levels: bool = False,
                   gate: str | None = None) -> None:
    """Run the listen session for ``duration_s`` of audio from the default input and print the
    figures (see the module docstring). ``PULSE_SERVER`` must already be set. ``block_s``: the
    capture block (None: ``MicrophoneSource``'s default, what ``listen`` uses). ``levels``: also
    measure the input level every 0.1 s, as ``listen`` does for its terminal UI's meter (without
    it, as ``listen --no-tui``, the worker is woken once per hop instead of once per block)."""
    import numpy as np

    from stream_ser.model import EmotionModel
    from stream_ser.session import ListenSession, PredictionMade, SessionEnded, SessionOptions, SessionStarted
    from stream_ser.sinks import CsvSink, LinePrinter
    from stream_ser.sources import DEFAULT_BLOCK_S, MicrophoneSource

    rss_before_model = rss_mb()
    model = EmotionModel()  # the shipped model, num_threads=1: what `listen` loads (--threads 1)
    cfg = model.feature_config
    try:
        from stream_ser.cli import _warm_up  # the CLI's own warm-up, as `listen` runs it
    except ImportError:  # renamed: the same thing by hand
        from stream_ser.features import window_features

        def _warm_up(config, quiet: bool = False) -> None:
            t = np.arange(config.window_samples, dtype=np.float32) / config.sample_rate_hz
            window_features((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), config)

    devnull = open(os.devnull, "w")
    csv_path = tmp / "listen.csv"
    sinks = [LinePrinter(devnull), CsvSink(csv_path, model.labels)]  # listen --no-tui: stdout sink, then the CSV
    _warm_up(cfg, True)
    sources: list = []

    def open_source():
        # what cli._listen_source builds for one device (the default input), kept for its counters
        extra = {} if block_s is None else {"block_s": block_s}
        src = MicrophoneSource(device=None, sample_rate_hz=cfg.sample_rate_hz, replay=None, realtime=True,
                               channels=None, **extra)
        sources.append(src)
        return src

    options = {"duration_s": duration_s}
    if gate is not None:  # listen --gate (default: the session's, vad)
        options["gate"] = gate
    if hasattr(MicrophoneSource, "wake_at"):  # code before the per-hop wake always measured levels
        options["level_interval_s"] = 0.1 if levels else None
    elif not levels:
        print("(this stream_ser always measures the input level and wakes per block)")
    session = ListenSession(model, open_source, sinks, SessionOptions(**options))
    latencies_ms: list[float] = []
    captured_ms: list[float] = []
    speech = 0
    started: dict = {}
    cpu_windows: list[float] = []  # CPU % of one core per 10 s of audio, from the first prediction
    first: dict = {}  # first PredictionMade: (t, cpu, hop)
    last: dict = {}  # latest PredictionMade: (t, cpu)
    window_mark: list[tuple[float, float]] = []
    threads_mark: dict = {}  # per-thread CPU at the latest 10 s mark
    ended_at: dict = {}

    def on_event(event) -> None:
        nonlocal speech
        now = time.monotonic()
        if isinstance(event, PredictionMade):
            latencies_ms.append((now - event.boundary_monotonic_s) * 1e3)
            if event.captured_monotonic_s is not None:
                captured_ms.append((now - event.captured_monotonic_s) * 1e3)
            speech += event.prediction.is_speech
            if not first:
                first.update(t=now, cpu=time.process_time(), hop=event.hop_index, threads=thread_cpu_s())
                window_mark.append((now, first["cpu"]))
            elif (event.hop_index - first["hop"]) % 20 == 0:  # every 10 s of audio at the 0.5 s hop
                cpu = time.process_time()
                t_prev, c_prev = window_mark[-1]
                cpu_windows.append(100.0 * (cpu - c_prev) / (now - t_prev))
                window_mark.append((now, cpu))
                threads_mark.update(t=now, threads=thread_cpu_s())
            last.update(t=now, cpu=time.process_time())
            if event.hop_index % 120 == 119:  # progress every minute of audio
                print(f"  ... {event.prediction.end_s / 60:.0f} min: {event.stats.predictions} predictions, "
                          f"{event.stats.overflows} overflows", flush=True)
        elif isinstance(event, SessionStarted):
            started.update(t=now, cpu=time.process_time(), rss=rss_mb(), peak=peak_rss_mb(), event=event)
        elif isinstance(event, SessionEnded):
            ended_at.update(t=now, cpu=time.process_time())

    with _interrupt(session.request_stop) as interrupt:
        ended = session.run(on_event)
    devnull.close()
    if "t" not in started:
        raise SystemExit(f"the session did not start: {ended.reason}: {ended.error}")
    ev: SessionStarted = started["event"]
    wall = ended_at["t"] - started["t"]
    cpu_pct = 100.0 * (ended_at["cpu"] - started["cpu"]) / wall
    stats = ended.stats
    src = sources[-1]
    # every hop boundary, plus the final partial hop flushed when the audio stops between boundaries
    expected = math.ceil(round(stats.stream_s / ev.hop_s, 6))
    block_s = src.block_s if hasattr(src, "block_s") else (block_s or DEFAULT_BLOCK_S)
    block = max(1, int(round(block_s * ev.device_sample_rate_hz)))
    lat = np.asarray(latencies_ms)
    print()
    print("== in-process: the session of `stream-ser listen --no-tui --csv OUT` ==")
    print(f"source {ev.source_name} ({ev.device_sample_rate_hz} Hz -> {ev.sample_rate_hz} Hz), model {ev.model_name} "
          f"({model.path.stat().st_size / 1e6:.1f} MB, 1 onnxruntime thread), hop {ev.hop_s:g} s, window {ev.window_s:g} s")
    print(f"ended: {ended.reason}{' (interrupted)' if interrupt.event.is_set() else ''}{': ' + ended.error if ended.error else ''}; "
          f"{stats.stream_s:.1f} s of audio in {wall:.1f} s wall")
    print(f"CPU of one core, whole process, SessionStarted -> SessionEnded ({wall:.1f} s): {cpu_pct:.2f} %")
    if first:
        print(f"  of which stream start, SessionStarted -> first prediction: {first['t'] - started['t']:.2f} s wall, "
              f"{first['cpu'] - started['cpu']:.2f} s CPU ({stats.stream_s - (ended_at['t'] - started['t']):+.2f} s "
              f"of audio vs wall over the session: audio before the first callback is never captured)")
    if last and last["t"] - first["t"] > 1:
        steady = 100.0 * (last["cpu"] - first["cpu"]) / (last["t"] - first["t"])
        print(f"  steady state, first -> last prediction ({last['t'] - first['t']:.1f} s): {steady:.2f} %")
    print(f"CPU per 10 s of audio after the first prediction (%): {spread(cpu_windows, '', '.2f')}")
    if threads_mark:
        span = threads_mark["t"] - first["t"]
        per = {k: 100.0 * (v - first["threads"].get(k, 0.0)) / span for k, v in threads_mark["threads"].items()}
        shown = ", ".join(f"{k} {v:.2f} %" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.01)
        print(f"  steady state by thread (TID name, {span:.0f} s): {shown or 'all below 0.01 %'}")
    cap = np.asarray(captured_ms)
    if cap.size:
        print(f"latency hop's last sample captured -> prediction handled (ms): p50 {np.median(cap):.2f}, p99 "
              f"{np.percentile(cap, 99):.2f}, max {cap.max():.2f}, min {cap.min():.2f}, "
              f"IQR {np.subtract(*np.percentile(cap, [75, 25])):.2f} (n={cap.size})")
    if lat.size:
        print(f"latency chunk arrival -> prediction handled (ms): p50 {np.median(lat):.2f}, p99 "
              f"{np.percentile(lat, 99):.2f}, max {lat.max():.2f}, min {lat.min():.2f}, "
              f"IQR {np.subtract(*np.percentile(lat, [75, 25])):.2f} (n={lat.size})")
    print(f"predictions {stats.predictions} (expected {expected} = {stats.stream_s:.2f} s / {ev.hop_s:g} s, rounded up), "
          f"speech {speech}, CSV rows {stats.rows_written}")
    print(f"input overflows (PortAudio, dropped blocks) {stats.overflows}, callbacks with any status flag "
          f"{src.status_flags}, frames dropped by the worker {src.dropped_frames} "
          f"(~{src.dropped_frames / block:.1f} blocks of {block_s * 1e3:.0f} ms, {stats.dropped_s:.3f} s)")
    print(f"RSS: {rss_before_model:.1f} MB before loading the model; at SessionStarted {started['rss']:.1f} MB "
          f"(peak so far {started['peak']:.1f} MB); peak at the end {peak_rss_mb():.1f} MB, current {rss_mb():.1f} MB")


# --------------------------------------------------------------------------------------------
# --cli: the real command as a child process


def thread_cpu_s() -> dict[str, float]:
    """CPU time (s) of each thread of this process, ``"TID name"`` -> utime + stime, from
    /proc/self/task (threads started by C libraries, like PortAudio's, included)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        rest = text.rsplit(")", 1)[1].split()
        label = f"{task} {name}" + (" [main thread: the session worker]" if int(task) == os.getpid() else "")
        out[label] = (int(rest[11]) + int(rest[12])) / tick
    return out


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of process ``pid`` in seconds, from /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def _proc_status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of /proc/PID/status, or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_cli(duration_s: float, tmp: Path, env: dict[str, str], gate: str | None = None) -> None:
    """Run ``stream-ser listen --no-tui --duration S --csv TMP.csv -q`` (``--gate`` unless None)
    as a child process and print its CPU and peak RSS (see the module docstring)."""
    csv_path = tmp / "cli.csv"
    cmd = stream_ser_command() + ["listen", "--no-tui", "--duration", f"{duration_s:g}", "--csv", str(csv_path), "-q"]
    cmd += [] if gate is None else ["--gate", gate]
    print(f"command: {' '.join(cmd)}", flush=True)
    samples: list[tuple[float, float, int | None]] = []  # (monotonic, cpu s, VmHWM kB)
    first_line: dict = {}
    lines = 0
    err_lines: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)

    def read_stdout() -> None:
        nonlocal lines
        assert proc.stdout is not None
        for _line in proc.stdout:
            if not first_line:
                first_line.update(t=time.monotonic(), cpu=_proc_cpu_s(proc.pid), rss=_proc_status_kb(proc.pid, "VmRSS"))
            lines += 1

    def read_stderr() -> None:
        assert proc.stderr is not None
        err_lines.extend(proc.stderr)

    def poll() -> None:
        while proc.returncode is None:
            cpu, hwm = _proc_cpu_s(proc.pid), _proc_status_kb(proc.pid, "VmHWM")
            if cpu is not None and hwm is not None:
                samples.append((time.monotonic(), cpu, hwm))
            time.sleep(1.0)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr, poll)]
    for r in readers:
        r.start()
    try:
        with _interrupt(lambda: proc.send_signal(signal.SIGINT)) as interrupt:
            while True:
                try:
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                except InterruptedError:
                    continue
        proc.returncode = os.waitstatus_to_exitcode(status)
        t_end = time.monotonic()
    finally:
        if proc.returncode is None:  # interrupted before it ended (second Ctrl-C, error)
            proc.kill()
            proc.wait()
    for r in readers[:2]:
        r.join(5)
    wall = t_end - t0
    cpu_total = usage.ru_utime + usage.ru_stime
    rows = max(0, sum(1 for _ in open(csv_path)) - 1) if csv_path.exists() else 0
    print()
    print("== --cli: `stream-ser listen` as a separate process ==")
    print(f"exit status {proc.returncode}{' (interrupted)' if interrupt.event.is_set() else ''}; launch -> exit {wall:.1f} s wall")
    if err_lines:
        print("stderr:\n  " + "  ".join(err_lines[-10:]).rstrip())
    print(f"CPU of one core over the whole process life (imports, model load, capture, exit): "
          f"{100 * cpu_total / wall:.2f} % ({cpu_total:.2f} s CPU: user {usage.ru_utime:.2f}, sys {usage.ru_stime:.2f})")
    tail = samples[-1] if samples else None
    if first_line.get("cpu") is not None and tail is not None and tail[0] > first_line["t"] + 1:
        cap_wall = tail[0] - first_line["t"]
        cap_cpu = tail[1] - first_line["cpu"]
        print(f"CPU of one core during capture (first prediction line -> last 1 s sample, {cap_wall:.1f} s): "
              f"{100 * cap_cpu / cap_wall:.2f} %")
        during = [s for s in samples if s[0] >= first_line["t"]]
        per10 = [100 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(during[::10], during[10::10])]
        if per10:
            print(f"CPU per ~10 s of capture (%): {spread(per10, '', '.2f')}")
        print(f"launch -> first prediction line {first_line['t'] - t0:.2f} s")
    hwm = tail[2] if tail else None
    rss_first = first_line.get("rss")
    print(f"peak RSS: {usage.ru_maxrss / 1e3:.1f} MB (ru_maxrss from wait4); last VmHWM polled "
          f"{hwm / 1e3 if hwm else float('nan'):.1f} MB; VmRSS at the first prediction "
          f"{rss_first / 1e3 if rss_first else float('nan'):.1f} MB")
    hop_s = 0.5
    print(f"predictions: {lines} stdout lines, {rows} CSV rows (expected {int(round(duration_s / hop_s))} at the "
          f"default {hop_s:g} s hop; overflows are not printed with -q)")


# --------------------------------------------------------------------------------------------


def main() -> None:
    """Parse the options, set up the virtual microphone and the playback, run one mode."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="usage: taskset -c 0 python benchmarks/bench_live.py [--cli] --minutes 5")
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes of audio to listen to (default 5)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"data folder with ravdess/ and tess/ (default {DEFAULT_DATA}; fixtures if missing)")
    parser.add_argument("--cli", action="store_true", help="measure `stream-ser listen` as a separate process")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random clip order (default 0)")
    parser.add_argument("--block-ms", type=float, default=None,
                        help="in-process only: capture block in ms (default: what listen uses)")
    parser.add_argument("--resampler", choices=["LQ", "MQ", "HQ", "VHQ"], default=None,
                        help="in-process only: soxr preset from the device rate to 16 kHz (default: the runtime's, "
                        "stream_ser.audio.RESAMPLER_QUALITY); see bench_resampler.py")
    parser.add_argument("--gate", choices=("vad", "level"), default=None,
                        help="listen --gate (default: listen's default, vad)")
    parser.add_argument("--levels", action="store_true",
                        help="in-process only: measure the input level every 0.1 s for a meter, as listen's terminal UI "
                        "does (default: as listen --no-tui, no level, the worker woken once per hop)")
    parser.add_argument("--render-to", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--render-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render_to is not None:  # the child process of render_recording
        _render(args.render_to, args.render_seconds, find_clips(args.data)[0], args.seed)
        return
    duration_s = args.minutes * 60
    print(f"machine: {machine()}")
    if args.resampler:
        from stream_ser.audio import resample

        resample.RESAMPLER_QUALITY = args.resampler  # read each time a resampler is built
    from stream_ser.audio.resample import RESAMPLER_QUALITY

    print(f"resampler: soxr {RESAMPLER_QUALITY}")
    print(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    with speech_on_virtual_mic(duration_s + 60, args.data, args.seed, "bench_live_") as (tmp, vmic, _):
        print(f"listening for {duration_s:g} s ({'--cli' if args.cli else 'in-process'}) ...", flush=True)
        if args.cli:
            run_cli(duration_s, tmp, vmic.env(), args.gate)
        else:
            run_in_process(duration_s, tmp, None if args.block_ms is None else args.block_ms / 1e3, args.levels,
                           args.gate)
    print(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
