"""The ``stream-ser`` command line: ``listen``, ``analyse``, ``plot``, ``devices``, ``info``.

Exit status: 0 success; 1 a file or device failed (analyse goes on with the other files and
exits 1 at the end; plot: the timeline CSV cannot be read), or an unexpected error; 2 bad
arguments, unusable model, unwritable output or a missing optional extra (nothing was
processed). Ctrl-C and SIGTERM stop cleanly: the current row is finished, the last partial hop is
scored, the CSV is closed complete, and the exit status is 0 for ``listen`` (stopping is how a
listening session normally ends) and 130/143 for ``analyse`` (interrupted work). Without a
command, ``stream-ser`` prints its help (as ``--help`` does) with status 0.
"""

from __future__ import annotations

import sys

# The console script imports this module before it calls main(): Ctrl-C meanwhile is the same
# one line and status 130 as in main(), not a traceback. The heavy libraries (numpy,
# onnxruntime, soundfile) load inside main(), which handles Ctrl-C itself.
try:
    import argparse
    import logging
    import math
    import os
    import re
    import signal
    import threading
    import time
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import FrameType
    from typing import TYPE_CHECKING, Any, NoReturn

    from . import __version__
    from .text import printable
except KeyboardInterrupt:
    print("stream-ser: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("stream_ser")

EXAMPLES = """\
examples:
  stream-ser listen                          score the default microphone live (terminal UI; piped: lines)
  stream-ser listen --csv session.csv        ... and log the timeline to a CSV file
  stream-ser listen --demo                   replay the shipped demo recording (no microphone needed)
  stream-ser listen --input clip.wav         replay a file at real-time pace through the live path
  stream-ser listen --device Mic --device "Monitor of" --channel-names me,them
                                             both sides of a call: microphone and what the computer plays
  stream-ser analyse call.wav --channels all --channel-names agent,customer --summary-json s.json
                                             score each channel of a stereo call on its own
  stream-ser analyse calls/*.wav --csv t.csv score recordings faster than real time
  stream-ser analyse a.wav --format jsonl    one JSON object per prediction, for jq and other programs
  stream-ser plot t.csv -o t.png             draw the timeline: probabilities over time, one panel per source
  stream-ser devices                         list input devices (index, name, channels, rate)
  stream-ser info                            show the model's labels, feature recipe and provenance
  stream-ser serve                           score live calls sent over WebSocket (raw or Twilio; docs/serve.md)
"""


class _Stop:
    """Turns SIGINT/SIGTERM into a stop request (a second signal exits at once)."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.event = threading.Event()
        self.signum = 0
        self._on_stop = on_stop
        self._old: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise SystemExit(128 + signum)
        self.signum = signum
        self.event.set()
        if self._on_stop is not None:
            self._on_stop()

    def __enter__(self) -> "_Stop":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


class _PrintableFormatter(logging.Formatter):
    """Log lines with the unprintable characters of names in them escaped (a traceback, with
    -v, keeps its line breaks)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _error(message: str) -> None:
    """Print one error line on stderr, ``stream-ser: error: MESSAGE``, with the unprintable
    characters of names in it escaped (:func:`~stream_ser.text.printable`)."""
    print(f"stream-ser: error: {printable(message)}", file=sys.stderr, flush=True)


def _warm_up(config, quiet: bool = False) -> None:
    """Run the feature recipe once so the first hop is not slow; say why if it takes a while,
    unless ``quiet``. The shipped recipe runs on numpy alone; a model whose mel filterbank is not
    in the built-in table loads librosa, whose first run after installation compiles numba code
    (30-60 s)."""
    import numpy as np

    from .features import window_features

    timer = threading.Timer(
        4.0,
        lambda: print(
            "stream-ser: preparing the feature pipeline (this model's mel filterbank is not built in, "
            "so librosa is loaded; its first run after installing compiles numba code and can take a minute)...",
            file=sys.stderr,
            flush=True,
        ),
    )
    timer.daemon = True
    if not quiet:
        timer.start()
    try:
        t = np.arange(config.window_samples, dtype=np.float32) / config.sample_rate_hz
        window_features((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), config)
    finally:
        timer.cancel()


def _load_model(args: argparse.Namespace):
    from .model import EmotionModel

    model = EmotionModel(args.model, num_threads=args.threads)
    log.info("model %s: labels %s", model.path, ", ".join(model.labels))
    return model


def _open_csv(args: argparse.Namespace, labels: tuple[str, ...]):
    from .sinks import CsvSink

    if not args.csv:
        return None
    return CsvSink(args.csv, labels, force=args.force, append=args.append)


def _jsonl_file(args: argparse.Namespace):
    """The ``--jsonl OUT`` sink, opened once: :func:`main` opens it before the command runs (so an
    unwritable path fails before any audio) and closes it at the end; commands reuse it."""
    if not getattr(args, "jsonl", None):
        return None
    sink = getattr(args, "jsonl_sink", None)
    if sink is None:
        from .sinks import JsonLinesSink

        sink = JsonLinesSink(args.jsonl, force=args.force, append=args.append)
        args.jsonl_sink = sink
    return sink


def _stdout_sink(args: argparse.Namespace):
    """The standard-output sink chosen by ``--format``: printed lines or JSON lines."""
    from .sinks import JsonLinesSink, LinePrinter

    return JsonLinesSink() if getattr(args, "format", "lines") == "jsonl" else LinePrinter()


def _channel_names(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--channel-names`` as a tuple (validated by the parser), or None."""
    return getattr(args, "channel_names", None)


def _summary_file(args: argparse.Namespace):
    """The ``--summary-json FILE`` output, opened once (before any audio, so a bad path fails
    first); None without the option."""
    if not getattr(args, "summary_json", None):
        return None
    out = getattr(args, "summary_sink", None)
    if out is None:
        from .summary import SummaryJsonFile

        out = SummaryJsonFile(args.summary_json, force=args.force)
        args.summary_sink = out
    return out


def _plot_output(args: argparse.Namespace) -> Path:
    """The image ``plot`` writes: ``-o OUT`` exactly as given (a name without a suffix is
    written as PNG), else the timeline's name with ``.png``."""
    return Path(args.output) if args.output else Path(args.timeline).with_suffix(".png")


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any output is opened, an output file that is also an input (an audio file,
    the replayed file, the model, the timeline) or that another output writes too.

    Raises:
        OutputError: Naming the two (:func:`~stream_ser.sinks.check_output_paths`).
    """
    from .sinks import check_output_paths

    if args.func is cmd_plot:
        check_output_paths([("-o", _plot_output(args))], [("timeline", args.timeline)])
        return
    inputs = [("input file", f) for f in getattr(args, "files", None) or ()]
    inputs += [("--input file", getattr(args, "input", None)), ("--model file", getattr(args, "model", None))]
    outputs = [(option, getattr(args, option[2:].replace("-", "_"), None))
               for option in ("--csv", "--jsonl", "--summary-json")]
    check_output_paths(outputs, inputs)


def _print_summary(args: argparse.Namespace, summary) -> None:
    """Print a call summary on stderr (not with -q) and keep it for ``--summary-json``."""
    from .summary import format_summary

    if summary is None:
        return
    out = _summary_file(args)
    if out is not None:
        out.add(summary)
    if not args.quiet:
        print(format_summary(summary), file=sys.stderr, flush=True)


def _listen_sinks(args: argparse.Namespace, csv_sink) -> list:
    """The prediction sinks of ``listen``: standard output (``--format``), the CSV (``--csv``)
    and the JSON-lines file (``--jsonl``)."""
    jsonl = _jsonl_file(args)
    return [_stdout_sink(args)] + ([csv_sink] if csv_sink else []) + ([jsonl] if jsonl else [])


def _progress_console():
    """A rich console on stderr for progress bars, or None when stderr is not a terminal (piped,
    redirected, CI) or rich is unavailable."""
    try:
        from rich.console import Console
    except ImportError:  # rich comes with textual; be safe anyway
        return None
    console = Console(stderr=True, soft_wrap=True)
    return console if console.is_terminal else None


class _AnalyseProgress:
    """The ``analyse`` progress bar on stderr (rich): current file, files done, seconds of audio
    done of the total, speed as a multiple of real time and time left. Inert when ``console`` is
    None (stderr not a terminal, or ``--quiet``)."""

    def __init__(self, console, n_files: int, total_s: float) -> None:
        self.console = console
        self.n_files = n_files
        self.total_s = total_s
        self.t0 = time.monotonic()
        self._progress = None
        self._task = None
        self._base_s = 0.0
        self._file_s = 0.0

    @property
    def enabled(self) -> bool:
        return self.console is not None

    def __enter__(self) -> "_AnalyseProgress":
        if self.console is None:
            return self
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
        from rich.text import Text

        n_files = self.n_files

        class Files(ProgressColumn):
            def render(self, task) -> Text:
                return Text(f"{task.fields['files']}/{n_files} files", style="progress.download")

        class Audio(ProgressColumn):
            def render(self, task) -> Text:
                return Text(f"{task.completed:.1f}/{task.total or 0:.1f} s audio", style="progress.filesize")

        class Speed(ProgressColumn):
            def render(self, task) -> Text:
                elapsed = task.elapsed or 0.0
                rate = f"{task.completed / elapsed:.0f}x real time" if elapsed > 0.2 and task.completed else "-x real time"
                return Text(rate, style="progress.data.speed")

        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            Files(),
            Audio(),
            Speed(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=sys.stdout.isatty(),  # lines on the same terminal print above the bar
            redirect_stderr=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("analysing", total=max(self.total_s, 1e-9), files=0)
        return self

    def start_file(self, name: str, duration_s: float) -> None:
        self._file_s = duration_s
        if self._progress is not None:
            name = printable(name)
            short = name if len(name) <= 32 else "..." + name[-29:]
            self._progress.update(self._task, description=short)

    def at(self, file_position_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._base_s + min(file_position_s, self._file_s))

    def file_done(self, files_done: int) -> None:
        self._base_s += self._file_s
        self._file_s = 0.0
        if self._progress is not None:
            self._progress.update(self._task, completed=self._base_s, files=files_done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


#: The error of ``listen`` (without --input or --demo) and of ``devices`` on a machine without an
#: input device: one line, with what works without a microphone.
NO_INPUT_DEVICE = ("no input device found (no microphone or sound card is available); without one, `stream-ser listen "
                   "--demo` replays a demo recording and `stream-ser listen --input FILE` a recording of your own")


def cmd_devices(args: argparse.Namespace) -> int:
    from .audio.devices import list_input_devices

    devices = list_input_devices()
    if not devices:
        _error(NO_INPUT_DEVICE)
        return 1
    print(f"{'':2}{'index':>5}  {'channels':>8}  {'rate_hz':>8}  {'host API':12}  {'kind':8}  name")
    for d in devices:
        mark = "*" if d.is_default else " "
        kind = "monitor" if d.is_monitor else "input"
        name = d.name if d.pulse_source is None or d.pulse_source == d.name else f"{d.name}  [{d.pulse_source}]"
        print(printable(f"{mark:2}{d.display_index:>5}  {d.max_input_channels:>8}  {d.default_sample_rate_hz:>8.0f}  "
                        f"{d.hostapi[:12]:12}  {kind:8}  {name}"))
    print("(* = default input; monitor = what the computer plays, e.g. the other side of a call, from a "
          "monitor or loopback source; rate_hz = native (default) rate, resampled to 16 kHz)")
    print("choose with --device INDEX or --device 'name substring'; two devices at once: "
          "--device A --device B")
    if any(d.pulse_source for d in devices):
        print("(PulseAudio sources, index '-', are chosen by name and opened through ALSA's 'pulse' device)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    model = _load_model(args)
    print(f"model:    {printable(model.path)}")
    print(f"labels:   {printable(', '.join(model.labels))}")
    print(f"features: {json.dumps(model.feature_config.to_dict())}")
    norm = model.metadata.speaker_norm
    print("speaker normalisation: " + ("none" if norm is None else
          f"causal, per channel (running per-band statistics of the voice, prior weight {norm.prior_windows:g} windows)"))
    prior = model.metadata.output_prior
    print("output adaptation: " + ("not available (no output prior in the model)" if prior is None else
          f"available, on by default (--adapt none turns it off): running per-class log-probability mean of each "
          f"channel's voice, prior weight {prior.prior_windows:g} windows"))
    from .vad import DEFAULT_GATE, find_silero_model, gate_descriptions

    gates = gate_descriptions()
    print("speech gate: " + " or ".join(f"{g} (default)" if g == DEFAULT_GATE else g for g in gates)
          + ", chosen with --gate (docs/vad.md)")
    for g, text in gates.items():
        print(f"  {g}: {text}")
    try:
        vad_model = f"{printable(str(find_silero_model()))} (Silero VAD, MIT)"
    except FileNotFoundError:
        vad_model = "Silero VAD not found: --gate vad fails, --gate level works (reinstall stream-ser)"
    print(f"VAD model: {vad_model}")
    print(f"licence:  {printable(model_licence(model.metadata.provenance))}")
    print(f"provenance: {json.dumps(model.metadata.provenance, indent=2)}")
    return 0


#: Licences of the corpora a model may be trained on (each corpus's own documentation).
CORPUS_LICENCES = {
    "ravdess": "RAVDESS, CC BY-NC-SA 4.0",
    "tess": "TESS, CC BY-NC-ND 4.0",
    "nemo": "nEMO, CC BY-NC-SA 4.0",
    "crema-d": "CREMA-D, ODbL 1.0 / DbCL 1.0",
    "savee": "SAVEE, free for research use",
    "emodb": "EmoDB, see its distribution terms",
}


def model_licence(provenance: dict) -> str:
    """What ``stream-ser info`` says about a model's terms: the licences of the corpora its
    provenance says it was trained on (``data``), which the model inherits."""
    data = provenance.get("data")
    if not isinstance(data, list) or not data:
        return "not recorded in the model (check the licences of the data it was trained on)"
    named = [CORPUS_LICENCES.get(str(c), f"{c}: licence unknown to stream-ser") for c in data]
    terms = "; ".join(named)
    if any("NC" in n for n in named):
        return f"trained on {terms}: non-commercial use only, as its training data"
    return f"trained on {terms}: the model inherits these terms"


def default_jobs() -> int:
    """``analyse``'s default scoring threads: 2 if this process may run on two or more CPUs
    (``os.sched_getaffinity``, so ``taskset -c 0`` gives 1), else 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def cmd_analyse(args: argparse.Namespace) -> int:
    from .engine import ChannelEngines, ClipAccumulator
    from .audio import AudioSourceError, FileSource, audio_info
    from .summary import CallSummaryBuilder

    names = _channel_names(args)
    if names is not None and isinstance(args.channels, tuple) and len(names) != len(args.channels):
        _error(f"--channel-names gives {len(names)} name(s) for {len(args.channels)} channel(s)")
        return 2
    if names is not None and args.channels is None and len(names) != 1:
        _error("--channel-names names the channels chosen with --channels")
        return 2
    model = _load_model(args)
    sr = model.feature_config.sample_rate_hz
    problem = _hop_problem(args, model)
    if problem:
        _error(problem)
        return 2
    csv_sink = _open_csv(args, model.labels)
    jsonl_file = _jsonl_file(args)
    stdout = _stdout_sink(args)
    files = [s for s in (csv_sink, jsonl_file) if s is not None]
    # predictions: files always; stdout with --format jsonl (every prediction) or --timeline
    pred_sinks: list = files + ([stdout] if args.format == "jsonl" or args.timeline else [])
    # per-file records (clip summaries, errors): stdout and the JSON-lines file
    record_sinks: list = [stdout] + ([jsonl_file] if jsonl_file else [])
    _warm_up(model.feature_config, args.quiet)
    jobs = args.jobs if args.jobs is not None else default_jobs()
    log.debug("scoring on %d thread(s)", jobs)
    want_summary = bool(args.channels is not None or args.summary or args.summary_json)
    durations: list[float] = []
    for path in args.files:
        try:
            durations.append(audio_info(path).duration_s)
        except AudioSourceError:
            durations.append(0.0)  # reported when its turn comes
    console = None if args.quiet else _progress_console()
    failed: list[str] = []
    analysed = 0  # files scored to their end (or until stopped)
    audio_s = 0.0
    t0 = time.monotonic()
    with _Stop() as stop, _AnalyseProgress(console, len(args.files), sum(durations)) as progress:

        def reader_gone() -> bool:
            """Standard output's reader went away (``... | head``) and nothing else is written."""
            return stdout.broken and not files

        def until_stopped(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            for chunk in chunks:
                yield chunk
                if stop.event.is_set() or reader_gone():
                    return

        try:
            for i, path in enumerate(args.files):
                if stop.event.is_set():
                    break
                progress.start_file(str(path), durations[i])
                try:
                    source = FileSource(path, sr, channels=args.channels)
                    numbers = source.channel_numbers
                    if names is not None and len(names) != len(numbers):
                        raise AudioSourceError(
                            f"{source.name}: {len(names)} channel name(s) given ({','.join(names)}) for "
                            f"{len(numbers)} channel(s)"
                        )
                    engine = ChannelEngines(model, hop_s=args.hop, source=source.name, channels=numbers,
                                            channel_names=names, adapt_output=args.adapt == "output", gate=args.gate)
                    builder = CallSummaryBuilder(source.name, model.labels, engine.hop_s, numbers, names,
                                                 [source.name if n == 0 else f"channel {n}" for n in numbers])
                    # per channel, the clip result accumulates as the predictions pass (flat memory)
                    clips = {key: ClipAccumulator(model.labels) for key in zip(numbers, engine.channel_names)}
                    for p in engine.run(until_stopped(source.frames()), jobs=jobs):
                        clips[(p.channel, p.channel_name)].add(p)
                        builder.add(p)
                        for sink in pred_sinks:
                            sink.write(p)
                        progress.at(p.end_s)
                    for (number, name), clip in clips.items():
                        result = clip.result(source.name, engine.samples_seen / sr, number, name)
                        for sink in record_sinks:
                            sink.write_clip(result)
                    audio_s += engine.samples_seen / sr
                    analysed += 1
                    if want_summary:
                        if args.channels is not None or args.summary:
                            _print_summary(args, builder.result())
                        else:
                            summary_file = _summary_file(args)
                            if summary_file is not None:
                                summary_file.add(builder.result())
                except AudioSourceError as exc:
                    _error(str(exc))
                    failed.append(str(path))
                    for sink in record_sinks:
                        if hasattr(sink, "write_error"):
                            sink.write_error(str(path), str(exc))
                progress.file_done(i + 1)
                if reader_gone():
                    log.info("standard output was closed; stopping")
                    break
        finally:
            for sink in {id(s): s for s in pred_sinks + record_sinks}.values():
                sink.close()
    wall_s = time.monotonic() - t0
    speed = f", {audio_s / wall_s:.0f}x real time" if wall_s > 0 else ""
    summary = f"analysed {analysed} of {len(args.files)} file(s), {audio_s:.1f} s of audio in {wall_s:.1f} s{speed}"
    if progress.enabled:
        print(f"stream-ser: {summary}", file=sys.stderr)
    else:
        log.info("%s", summary)
    if failed:
        print(f"stream-ser: {len(failed)} of {len(args.files)} file(s) failed: {printable(', '.join(failed))}",
              file=sys.stderr)
    if stop.event.is_set():
        print("stream-ser: interrupted; the CSV holds every row written so far", file=sys.stderr)
        return 128 + stop.signum
    return 1 if failed else 0


def _listen_wants_tui(args: argparse.Namespace) -> bool:
    """Whether ``listen`` opens the terminal UI: stdin and stdout are terminals, TERM is not
    ``dumb``, and neither ``--no-tui`` nor ``--format jsonl`` (JSON lines to stdout) was given."""
    import os

    if getattr(args, "no_tui", False) or getattr(args, "format", "lines") != "lines":
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _listen_source(args: argparse.Namespace, sample_rate_hz: int):
    """``open_source`` for the listening session: one device (or a replayed file), or several
    devices as the channels of one stream (:class:`~stream_ser.sources.MultiDeviceSource`)."""
    from .audio import MultiDeviceSource
    from .sources import MicrophoneSource

    devices = args.device or []
    if len(devices) > 1:
        return lambda: MultiDeviceSource(devices, sample_rate_hz=sample_rate_hz)
    device = devices[0] if devices else None
    return lambda: MicrophoneSource(
        device=device, sample_rate_hz=sample_rate_hz, replay=args.input, realtime=not args.fast, channels=args.channels
    )


def _check_listen_args(args: argparse.Namespace) -> str | None:
    """Combinations of ``listen`` options that cannot work (the message), or None."""
    devices = args.device or []
    names = _channel_names(args)
    replay = "--demo" if getattr(args, "demo", False) else "--input"
    if len(devices) > 1:
        if args.input:
            return f"{replay} replays one file; it cannot be combined with several --device"
        if args.channels is not None:
            return ("--channels selects channels of one device or file; with several --device each device is "
                    "one channel (its own channels averaged)")
        if names is not None and len(names) != len(devices):
            return f"--channel-names gives {len(names)} name(s) for {len(devices)} devices"
    from .audio import MAX_CHANNELS

    if len(devices) > MAX_CHANNELS:
        return f"at most {MAX_CHANNELS} devices at once"
    if args.input and devices:
        return f"{replay} replays a file instead of a device; give one or the other"
    if names is not None and isinstance(args.channels, tuple) and len(names) != len(args.channels):
        return f"--channel-names gives {len(names)} name(s) for {len(args.channels)} channel(s)"
    if names is not None and args.channels is None and len(devices) <= 1 and len(names) != 1:
        return "--channel-names names the channels chosen with --channels (or the devices of several --device)"
    return None


def _check_input_devices(args: argparse.Namespace) -> None:
    """Make sure the machine has an input device before ``listen`` opens one.

    Each ``--device`` (or the default input) is looked up as the session will look it up. When
    that fails because the machine has no input device at all, the command ends here with one
    line and status 1 instead of opening the terminal UI only to show the error there; any other
    problem (no device matches a name, ...) is left to the session, which reports it as before.

    Raises:
        AudioSourceError: :data:`NO_INPUT_DEVICE` when PortAudio lists no input device, or the
            reason PortAudio is unusable (not installed).
    """
    from .audio import devices as sources

    try:
        for spec in args.device or [None]:
            sources.find_input_device(spec)
    except sources.AudioSourceError:
        if not sources.list_input_devices(include_pulse_sources=False):
            raise sources.AudioSourceError(NO_INPUT_DEVICE) from None


def _use_demo(args: argparse.Namespace) -> None:
    """``listen --demo``: replay the shipped demo recording, as ``--input`` would.

    Raises:
        AudioSourceError: If the installation lacks the recording.
    """
    from .audio import AudioSourceError

    if getattr(args, "demo", False):
        from .demo import demo_recording

        try:
            args.input = str(demo_recording())
        except FileNotFoundError as exc:
            raise AudioSourceError(str(exc)) from None


def cmd_listen(args: argparse.Namespace) -> int:
    from .session import CalibrationProgress, ListenSession, PredictionMade, SessionOptions, SessionStarted
    from .sinks import LinePrinter

    problem = _check_listen_args(args)
    if problem:
        _error(problem)
        return 2
    model = _load_model(args)
    cfg = model.feature_config
    problem = _hop_problem(args, model)
    if problem:
        _error(problem)
        return 2
    if args.calibrate and model.metadata.speaker_norm is None:
        _error(
            f"--calibrate: the model {model.name} does not normalise speakers (no speaker_norm in "
            "its metadata; `stream-ser info` shows it), so there is nothing to calibrate. Use a model exported with "
            "`python -m training.export --speaker-norm causal`."
        )
        return 2
    if not args.input:
        _check_input_devices(args)  # one error line, before any output is opened or the UI takes the screen
    _summary_file(args)  # fails on an unwritable path before any audio
    csv_sink = _open_csv(args, model.labels)
    tui = _listen_wants_tui(args)
    try:
        sinks = _listen_sinks(args, csv_sink)
        if tui:  # the UI shows predictions; printed lines would garble the screen
            sinks = [s for s in sinks if not isinstance(s, LinePrinter)]
        stdout = None if tui else sinks[0]  # printed lines or JSON lines on standard output
        files = [s for s in sinks if s is not stdout]
        _warm_up(cfg, args.quiet)
        # The session's worker opens the source (a device error becomes a clean session end),
        # scores every hop, writes the sinks and closes them; the same code runs with and
        # without the terminal UI.
        session = ListenSession(
            model,
            _listen_source(args, cfg.sample_rate_hz),
            sinks,
            SessionOptions(hop_s=args.hop, duration_s=args.duration, channel_names=_channel_names(args),
                           calibrate_s=args.calibrate or 0.0, adapt_output=args.adapt == "output", gate=args.gate,
                           # only the UI's meter shows levels; without it the worker wakes once per hop
                           level_interval_s=0.1 if tui else None),
        )
    except BaseException:
        if csv_sink:
            csv_sink.close()
        raise
    if tui:
        from .tui import run_listen_app

        code = run_listen_app(session)
        _print_summary(args, session.summary)
        return code

    calibration_shown = [-1.0]  # the last progress printed (s of speech)

    def on_event(event) -> None:
        if isinstance(event, PredictionMade) and stdout is not None and stdout.broken and not files:
            log.info("standard output was closed; stopping")  # its reader went away (`... | head`)
            session.request_stop()
        if isinstance(event, CalibrationProgress) and not args.quiet:
            heard = min(event.speech_s)
            if event.done:
                print(f"stream-ser: calibrated on {event.target_s:g} s of speech per channel at {event.end_s:.1f} s of "
                      "audio; predictions follow.", file=sys.stderr, flush=True)
            elif heard >= calibration_shown[0] + 5.0 or calibration_shown[0] < 0:
                calibration_shown[0] = heard
                heard_text = " / ".join(f"{s:g}" for s in event.speech_s)
                print(f"stream-ser: calibrating: {heard_text} of {event.target_s:g} s of speech heard (speak "
                      "naturally; no predictions yet)", file=sys.stderr, flush=True)
        if isinstance(event, SessionStarted) and not args.quiet:
            rates = event.device_sample_rates_hz or (event.device_sample_rate_hz,)
            rate_text = "/".join(f"{r}" for r in dict.fromkeys(rates))
            channels = ""
            if event.channel_ids != (0,):
                described = [
                    f"{cid}" if desc in (str(cid), f"channel {cid}") else f"{cid} = {desc}"
                    for cid, desc in zip(event.channel_ids, event.channel_descriptions or event.channel_ids)
                ]
                channels = f", channels {', '.join(described)} scored separately"
            print(
                printable(f"stream-ser: listening to {event.source_name} ({rate_text} Hz -> "
                          f"{event.sample_rate_hz} Hz{channels}), model {event.model_name} [{', '.join(event.labels)}], "
                          f"hop {event.hop_s:g} s, window {event.window_s:g} s. Ctrl-C to stop."),
                file=sys.stderr,
                flush=True,
            )

    with _Stop(on_stop=session.request_stop):
        ended = session.run(on_event)
    stats = ended.stats
    if ended.error:
        _error(ended.error)
    if not args.quiet or ended.error:
        extra = f", CSV {printable(args.csv)} ({stats.rows_written} rows)" if csv_sink else ""
        print(
            f"stream-ser: stopped after {stats.stream_s:.1f} s of audio ({ended.reason}): {stats.predictions} "
            f"predictions, {stats.overflows} input overflows, {stats.dropped_s:.2f} s of audio dropped{extra}",
            file=sys.stderr,
        )
    _print_summary(args, session.summary)
    return ended.exit_status


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import MAX_PLOT_POINTS, plot_timelines, read_timeline_csv
    from .sinks import OutputError

    timelines = read_timeline_csv(args.timeline, max_points=MAX_PLOT_POINTS)  # memory bounded by the pixels
    if args.source:
        timelines = [t for t in timelines if args.source in t.source]
        if not timelines:
            _error(f"{args.timeline}: no source matches {args.source!r}")
            return 1
    out = _plot_output(args)
    if out.exists() and not args.force:
        raise OutputError(f"{out}: already exists (use --force to replace it)")
    if len(timelines) > args.max_panels:
        print(
            f"stream-ser: {len(timelines)} panels in {printable(args.timeline)}; drawing the first {args.max_panels} "
            "(choose with --source, or raise --max-panels)",
            file=sys.stderr,
        )
    try:
        plot_timelines(timelines, out, title=args.title, max_panels=args.max_panels)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{out}: cannot write the image ({exc})") from None
    log.info("wrote %s (%d panel(s))", out, min(len(timelines), args.max_panels))
    if not args.quiet:
        print(f"stream-ser: wrote {printable(out)}", file=sys.stderr)
    return 0


#: Longest ``listen --duration`` (s): a week; without the option a session runs until stopped.
MAX_DURATION_S = 7 * 24 * 3600.0
#: Longest ``listen --calibrate`` (s of speech per channel): an hour.
MAX_CALIBRATE_S = 3600.0
#: Most panels ``plot --max-panels`` draws: 100 make an image about 32,000 pixels tall, half of
#: the 65,536 that matplotlib can render.
MAX_PANELS = 100


def _number_rule(kind: type, low: float, high: float, unit: str = "", above_low: bool = False) -> str:
    """What a numeric option must be, e.g. ``a number greater than 0 and at most 10 s`` or
    ``an integer from 1 to 2``."""
    what = "an integer" if kind is int else "a number"
    if above_low:
        return f"{what} greater than {low:g} and at most {high:g}{unit}"
    return f"{what} from {low:g} to {high:g}{unit}"


def _number(kind: type, low: float, high: float, unit: str = "", above_low: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: a finite number of ``kind`` (int or float) from ``low`` to ``high``
    (greater than ``low`` with ``above_low``). Anything else is a one-line usage error in the one
    style of every numeric option (:class:`_Parser`), naming the option, the rule and the value
    given: ``stream-ser: error: --hop: must be a number greater than 0 and at most 10 s, got 0``
    (a text that is no number at all is quoted: ``got 'abc'``)."""
    rule = _number_rule(kind, low, high, unit, above_low)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:  # also an integer of more than 4300 digits
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ((kind is int or math.isfinite(value)) and (value > low if above_low else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrapped to the terminal's width; a text with line breaks of its own (the
    examples of an epilog) printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line: ``stream-ser: error: --hop: must be ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)  # "argument --hop: x" -> "--hop: x"
        # "--input: not allowed with argument --demo" -> "--input and --demo exclude each other"
        message = re.sub(r"^([^:]+): not allowed with argument (.+)$", r"\1 and \2 exclude each other", message)
        self.exit(2, f"stream-ser: error: {message} (see `{self.prog} --help`)\n")


def _hop_problem(args: argparse.Namespace, model) -> str | None:
    """``--hop`` against the model (from one sample to its window): the one-line problem in the
    style of every numeric option (:func:`_number`), or None."""
    from .engine import Engine

    try:
        Engine(model, hop_s=args.hop, gate=args.gate)  # also starts the VAD (a ModelError if it cannot)
    except ValueError:
        cfg = model.feature_config
        return (f"--hop: must be a number from one sample ({1 / cfg.sample_rate_hz:g} s) to the model's window "
                f"({float(cfg.window_s)} s), got {args.hop:g} (see `stream-ser {args.command} --help`)")
    return None


def _channel_selection(text: str):
    from .audio import parse_channel_selection

    try:
        return parse_channel_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(","))
    if any(not n for n in names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r} (names are separated by commas)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a name is given twice in {text!r}")
    if any(n.lstrip("-").isdigit() for n in names):
        raise argparse.ArgumentTypeError(f"names must not be numbers (numbers are what unnamed channels get): {text!r}")
    return names


def _audio_formats() -> str:
    """The audio formats this installation decodes, as ``--help`` states them: the common ones
    that soundfile's libsndfile offers here (MP3 needs libsndfile 1.1, Ogg Opus 1.0.29), and what
    it never decodes."""
    try:
        import soundfile as sf

        formats = sf.available_formats()
        ogg = [name for name in ("Vorbis", "Opus") if name.upper() in sf.available_subtypes("OGG")]
        version = f" {sf.__libsndfile_version__}"
    except (ImportError, OSError, AttributeError):  # libsndfile missing: reading fails later, in one line
        return "WAV, FLAC, Ogg and the other formats libsndfile decodes"
    common = [("WAV", "WAV"), ("FLAC", "FLAC"), ("OGG", f"Ogg ({', '.join(ogg)})" if ogg else "Ogg"),
              ("MP3", "MP3"), ("AIFF", "AIFF"), ("CAF", "CAF")]
    named = ", ".join(text for key, text in common if key in formats)
    return (f"{named} and the other formats of libsndfile{version}; not M4A/AAC, WMA or video files (convert "
            "those first, e.g. with ffmpeg)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    from .features import MAX_WINDOW_S
    from .model import MAX_THREADS

    parser = _Parser(
        prog="stream-ser",
        description="Real-time speech emotion recognition (neutral, happy, sad, angry, fear, disgust, surprise) "
        "from a microphone or recorded files. Every hop (0.5 s) the latest 3 s window is scored by a small ONNX model.",
        epilog=EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-ser {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log details and show tracebacks of errors (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no progress bar and no log messages below errors (results still go to stdout)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # none: the help (see _main)

    # -v/-q also after the command (stream-ser analyse -q ...); SUPPRESS keeps a value given
    # before the command from being reset by the sub-parser's default.
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                           help="log details and show tracebacks of errors (-vv: debug)")
    verbosity.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="no progress bar and no log messages below errors")

    common = argparse.ArgumentParser(add_help=False, parents=[verbosity])
    common.add_argument("--model", default=None, help="ONNX model file (default: the shipped model)")
    common.add_argument("--threads", type=_number(int, 1, MAX_THREADS), default=1, metavar="N",
                        help=f"onnxruntime threads, 1 to {MAX_THREADS} (default: 1)")

    scoring = argparse.ArgumentParser(add_help=False)
    scoring.add_argument("--hop", type=_number(float, 0, MAX_WINDOW_S, " s", above_low=True), default=None, metavar="S",
                         help="seconds of new audio between predictions, from one sample to the model's window (3 s "
                         "for the shipped model; default: the model's, 0.5)")
    scoring.add_argument("--csv", default=None, metavar="OUT", help="write the timeline CSV here (flushed per row)")
    scoring.add_argument("--format", choices=("lines", "jsonl"), default="lines",
                         help="standard output: human-readable lines (default) or JSON lines, one object per "
                         "prediction (schema in docs/output-formats.md)")
    scoring.add_argument("--jsonl", default=None, metavar="OUT", help="also write JSON lines to this file (flushed per line)")
    scoring.add_argument("--force", action="store_true", help="replace existing output files (CSV, JSON lines)")
    scoring.add_argument("--append", action="store_true",
                         help="append to existing output files (a CSV must have the same columns)")
    scoring.add_argument("--channels", type=_channel_selection, default=None, metavar="LIST",
                         help="score these channels each on its own instead of averaging them: numbers counted "
                         "from 1 ('1,2') or 'all' (at most 8). The CSV's channel column then holds the channel's "
                         "number (or name); without this option it is 0, the average")
    scoring.add_argument("--channel-names", type=_name_list, default=None, metavar="NAMES",
                         help="names for the channels, comma-separated in channel order (e.g. agent,customer); "
                         "written in the CSV's channel column instead of the numbers")
    scoring.add_argument("--adapt", choices=("output", "none"), default="output",
                         help="adapt the model's output to each channel's voice as it talks (default: output; a "
                         "model without an output prior, see `stream-ser info`, is never adapted): a running "
                         "per-class mean of the log-probabilities, started from the training voices' mean, "
                         "removes the shift a new voice, language or microphone gives every window. 'none' "
                         "scores each window on its own. The CSV's and JSON lines' adaptation field says which ran")
    scoring.add_argument("--gate", choices=("vad", "level"), default="vad",
                         help="which windows are scored (the rest get no label): vad (default, it measures best, "
                         "docs/vad.md) needs the window loud enough and a voice by the Silero VAD, so music, noise "
                         "and effects are not scored; level only needs it loud enough (what the model was trained "
                         "on). The speech column, the speech light and speech time follow it")
    scoring.add_argument("--summary-json", default=None, metavar="FILE",
                         help="write the call summary (per channel: speech time, time in each emotion, longest "
                         "span of each emotion, emotion changes) to FILE as JSON")

    p = sub.add_parser(
        "listen", parents=[common, scoring], help="score the microphone live (terminal UI, or one line per hop)",
        description="Score live audio: every hop, the latest 3 s window of the input device (or of a file replayed "
        "at real-time pace with --input, or the shipped demo recording with --demo) is scored. On a terminal a "
        "full-screen UI shows the input level, the current emotion, smoothed probabilities and the emotion timeline "
        "(keys: q quit, space pause, m marker, c clear, ? keys); piped, or with --no-tui, one line per hop is "
        "printed. Ctrl-C (or q) stops; the CSV is closed complete.",
        epilog="examples:\n  stream-ser listen\n"
        "  stream-ser listen --demo                     no microphone needed: replay the demo recording\n"
        "  stream-ser listen --device 'USB' --csv today.csv\n"
        "  stream-ser listen --input clip.flac --duration 10\n"
        "  stream-ser listen --no-tui --csv today.csv   lines instead of the terminal UI\n"
        "  stream-ser listen --device Microphone --device 'Monitor of' --channel-names me,them --csv call.csv\n"
        "                                             both sides of a call, one channel per device\n"
        "  stream-ser listen --device 'USB' --channels 1,2 --channel-names agent,customer\n"
        "                                             two channels of one device, each scored on its own\n"
        "\nAt the end a call summary is printed on stderr (per channel: speech time, time in each emotion,\n"
        "longest span of each emotion, emotion changes; with several devices the measured clock drift).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--device", default=None, action="append",
                   help="input device index or name substring (see `stream-ser devices`); give it twice or more to "
                   "capture several devices at once as the channels of one session, aligned on the first one's clock")
    replay = p.add_mutually_exclusive_group()
    replay.add_argument("--input", default=None, metavar="FILE",
                        help="replay FILE through the live path at real-time pace instead of a device (the formats "
                        "of `stream-ser analyse --help`)")
    replay.add_argument("--demo", action="store_true",
                        help="replay the demo recording shipped with stream-ser (21 s: seven RAVDESS clips, one per "
                        "emotion, by three actors; CC BY-NC-SA 4.0) through the live path, as --input does")
    p.add_argument("--duration", type=_number(float, 0, MAX_DURATION_S, " s", above_low=True), default=None,
                   metavar="S", help=f"stop after S seconds of audio (> 0, at most {MAX_DURATION_S:.0f}: a week)")
    p.add_argument("--fast", action="store_true", help="with --input or --demo: do not pace the replay in real time")
    p.add_argument("--calibrate", type=_number(float, 0, MAX_CALIBRATE_S, " s", above_low=True), default=None,
                   metavar="S",
                   help="for a speaker-normalised model (`stream-ser info` shows it): first learn the voice from S "
                   f"seconds of speech per channel (e.g. 30; > 0, at most {MAX_CALIBRATE_S:.0f}) and only then "
                   "predict; those hops write no CSV row. "
                   "The running voice statistics go on updating afterwards")
    p.add_argument("--no-tui", action="store_true",
                   help="print one line per hop instead of the terminal UI (the default when stdout is not a terminal)")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "analyse", aliases=["analyze"], parents=[common, scoring], help="score recorded files faster than real time",
        description="Stream each file through the same engine as `listen`, as fast as it decodes. Prints one summary "
        "line per file: the clip label is the argmax of the mean probabilities over speech windows, with that mean "
        "as confidence. A file that cannot be read is reported and skipped; the exit status is then 1. On a terminal "
        "a progress bar (files, seconds of audio, speed as a multiple of real time) is shown on stderr.",
        epilog="examples:\n  stream-ser analyse clip.wav\n  stream-ser analyse recordings/*.flac --csv timeline.csv\n"
        "  stream-ser analyse clip.wav --timeline          also one line per hop\n"
        "  stream-ser analyse *.wav --format jsonl | jq -c 'select(.type == \"clip\") | {source, label}'\n"
        "  stream-ser analyse *.wav --jsonl out.jsonl --csv out.csv -q\n"
        "  stream-ser analyse call.wav --channels all --channel-names agent,customer --csv call.csv\n"
        "                                             each side of a stereo call on its own, with a call summary",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=f"audio files: {_audio_formats()}; any number of channels (averaged, or chosen with "
                   "--channels), native rates 8-192 kHz (resampled to the model's 16 kHz)")
    p.add_argument("--timeline", action="store_true", help="also print one line per hop (implied by --format jsonl)")
    p.add_argument("--summary", action="store_true",
                   help="print the call summary of each file on stderr (always with --channels)")
    p.add_argument("-j", "--jobs", type=_number(int, 1, 2), default=None, metavar="N",
                   help="scoring threads: 1 runs decoding, features and the model on one thread; 2 runs the model "
                   "on a second thread while the next windows' features are computed (identical results; faster "
                   "when two cores are free, see benchmarks/README.md). Default: 2 if this process may use two or "
                   "more CPUs (taskset limits it), else 1")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser(
        "plot", parents=[verbosity], help="draw a timeline CSV: probabilities over time (needs matplotlib)",
        description="Draw a timeline CSV (from `listen --csv` or `analyse --csv`): for each source and channel a "
        "strip of the most probable emotion per hop (grey where there was no speech) above the stacked class "
        "probabilities, with a m:ss time axis. Needs the optional extra: pip install \"stream-ser[plot]\".",
        epilog="examples:\n  stream-ser analyse clip.wav --csv t.csv && stream-ser plot t.csv -o t.png\n"
        "  stream-ser plot session.csv                      writes session.png\n"
        "  stream-ser plot t.csv -o t.svg --source clip.wav --title 'Call 12'",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("timeline", metavar="TIMELINE.csv", help="a timeline CSV written by stream-ser")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="image file, written under exactly this name; the format follows the suffix (.png, .svg, "
                   ".pdf; PNG for a name without one). Default: TIMELINE.png")
    p.add_argument("--source", default=None, metavar="TEXT", help="only sources whose name contains TEXT")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--max-panels", type=_number(int, 1, MAX_PANELS), default=12, metavar="N",
                   help=f"draw at most N panels, 1 to {MAX_PANELS} (default: 12)")
    p.add_argument("--force", action="store_true", help="replace an existing image")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "devices", parents=[verbosity], help="list input devices",
        description="List input devices: index, channels, default sample rate, host API and name; * marks the "
        "default. Choose one for `listen` with --device INDEX or --device 'name substring'.",
        epilog="examples:\n  stream-ser devices\n  stream-ser listen --device 3",
        formatter_class=_HelpFormatter,
    )
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "info", parents=[common], help="show the model's labels, feature recipe and provenance",
        description="Show a model's labels, its feature recipe and its provenance (data, split, training "
        "command), all read from the ONNX file's metadata.",
        epilog="examples:\n  stream-ser info\n  stream-ser info --model models/my-model.onnx",
        formatter_class=_HelpFormatter,
    )
    p.set_defaults(func=cmd_info)
    from .serve import add_parser as add_serve_parser

    add_serve_parser(sub)  # `stream-ser serve`: the WebSocket server for live calls (docs/serve.md)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stream-ser`` console script; returns the exit status.

    Ctrl-C at any moment, even while the libraries load in the first quarter second, ends with
    one line, ``stream-ser: interrupted``, and status 130 (a command that handles it itself,
    ``listen`` and ``analyse``, stops cleanly first).
    """
    _INTERRUPTED.clear()
    _standard_streams_open()
    try:
        old = signal.getsignal(signal.SIGINT)
        if old is signal.default_int_handler:  # not when SIGINT is ignored (a background job)
            signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread
        old = None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        if _INTERRUPTED.is_set():  # Ctrl-C inside a C extension's import surfaces as ImportError
            return _interrupted()
        raise
    finally:
        if old is signal.default_int_handler:
            signal.signal(signal.SIGINT, old)


def _standard_streams_open() -> None:
    """Give a closed standard input, output or error (``2>&-``) the null device.

    Otherwise the next file opened (the CSV) would take its descriptor and receive what is
    written there (C libraries' diagnostics into the CSV), and Python, which has no
    ``sys.stderr`` then, would print error lines on standard output, into the JSON lines. With
    standard error closed, error lines go nowhere; the exit status still says what happened.
    """
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


#: Set when SIGINT arrives outside a command's own handling (:func:`_interrupt`).
_INTERRUPTED = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT while stream-ser starts or loads: noted, then Python's KeyboardInterrupt (a C
    extension interrupted while it loads raises ImportError instead; the note tells them apart)."""
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _interrupted() -> int:
    """Say ``stream-ser: interrupted`` on stderr; the status of Ctrl-C, 130."""
    try:
        print("stream-ser: interrupted", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError, KeyboardInterrupt):
        pass
    return 130


def _main(argv: list[str] | None) -> int:
    from .model import ModelError
    from .sinks import OutputError
    from .audio import AudioSourceError

    from .plot import MissingDependencyError, TimelineError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `stream-ser`: what it can do, as --help prints it
        parser.print_help()
        return 0
    if args.verbose and args.quiet:
        parser.error("--verbose and --quiet exclude each other")
    if getattr(args, "force", False) and getattr(args, "append", False):
        parser.error("--force and --append exclude each other")
    level = logging.ERROR if args.quiet else {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("stream-ser: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("stream_ser").setLevel(level)
    # names from outside (a file name's bytes that are not UTF-8) never make a write to stdout fail
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")

    def fail(exc: BaseException, status: int, what: str = "error") -> int:
        if args.verbose:
            raise exc
        print(f"stream-ser: {what}: {printable(exc)}", file=sys.stderr)
        return status

    def run() -> int:
        try:
            _use_demo(args)
            _check_output_paths(args)  # before any output is opened (opening truncates)
            _jsonl_file(args)  # open --jsonl OUT before any model or audio, so a bad path fails first
            _summary_file(args)  # the same for --summary-json FILE
            if args.func in (cmd_analyse, cmd_listen):  # scoring: numpy's BLAS on one thread (see one_blas_thread)
                from .features import one_blas_thread

                with one_blas_thread():
                    return int(args.func(args))
            return int(args.func(args))
        except (ModelError, OutputError, MissingDependencyError) as exc:
            return fail(exc, 2)
        except (AudioSourceError, TimelineError) as exc:
            return fail(exc, 1)
        except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. while loading)
            if args.verbose:
                raise
            return _interrupted()
        except BrokenPipeError:  # standard output's reader went away (`stream-ser info | head -1`)
            from .sinks import _silence_broken_stdout

            _silence_broken_stdout()
            return 0
        except Exception as exc:  # no traceback for users; -v shows it
            if _INTERRUPTED.is_set():  # Ctrl-C while a C extension loaded (an ImportError)
                return _interrupted()
            if args.verbose:
                raise
            print(
                f"stream-ser: unexpected error: {type(exc).__name__}: {printable(exc)} (run with --verbose for the "
                "traceback)",
                file=sys.stderr,
            )
            return 1

    status = 1
    try:
        status = run()
    finally:
        # the files written once for the whole command: one that cannot be finished (a full disk)
        # is its own error line and status 2, after whatever the command reported
        for out in (getattr(args, "jsonl_sink", None), getattr(args, "summary_sink", None)):
            if out is not None:
                try:
                    out.close()
                except OutputError as exc:
                    status = fail(exc, 2)
    return status

if __name__ == "__main__":
    sys.exit(main())
