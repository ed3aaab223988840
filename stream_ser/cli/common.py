"""What the ``stream-ser`` commands share: the output files, stop signals, error lines, model
loading and the checks made before any audio is read.

:class:`Outputs` is where a scoring command's files are opened and closed: ``--jsonl`` and
``--summary-json`` before the model loads (an unwritable path fails first), ``--csv`` once the
model's labels are known, and all of them closed together when the command ends, however it
ends. Nothing here imports numpy or the model; the commands import those when they run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ..text import printable

log = logging.getLogger("stream_ser")


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

    from ..features import window_features

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
    from ..model import EmotionModel

    model = EmotionModel(args.model, num_threads=args.threads)
    log.info("model %s: labels %s", model.path, ", ".join(model.labels))
    return model


def _checked_model(args: argparse.Namespace, problem: str | None):
    """The model of a scoring command, or None after one error line for the first problem found:
    ``problem`` (the command's own checks of its options, made before anything loads), then
    ``--hop`` against the model's window, then ``--adapt`` against what the model carries.

    Raises:
        ModelError: If the model (or the speech gate's) cannot be loaded.
    """
    if problem is None:
        model = _load_model(args)
        problem = _hop_problem(args, model) or _adapt_problem(args, model)
        if problem is None:
            return model
    _error(problem)
    return None


def _hop_problem(args: argparse.Namespace, model) -> str | None:
    """``--hop`` against the model (from one sample to its window): the one-line problem in the
    style of every numeric option (:func:`_number`), or None."""
    from ..engine import check_speech_gate

    cfg = model.feature_config
    try:
        cfg.check_hop(args.hop)
    except ValueError:
        return (f"--hop: must be a number from one sample ({1 / cfg.sample_rate_hz:g} s) to the model's window "
                f"({float(cfg.window_s)} s), got {args.hop:g} (see `stream-ser {args.command} --help`)")
    check_speech_gate(cfg, args.gate)  # starts the VAD before any audio (a ModelError if it cannot)
    return None


def _adapt_problem(args: argparse.Namespace, model) -> str | None:
    """``--adapt`` against what the model carries (:func:`~stream_ser.adaptation.resolve_adapt`):
    the one-line problem, or None."""
    from ..adaptation import resolve_adapt

    try:
        resolve_adapt(args.adapt, model.metadata.embedding_adaptation, model.metadata.output_prior)
    except ValueError as exc:
        return f"--adapt {args.adapt}: model {model.name}: {exc}"
    return None


#: The error of ``listen`` (without --input or --demo) and of ``devices`` on a machine without an
#: input device: one line, with what works without a microphone.
NO_INPUT_DEVICE = ("no input device found (no microphone or sound card is available); without one, `stream-ser listen "
                   "--demo` replays a demo recording and `stream-ser listen --input FILE` a recording of your own")


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
    from ..sinks import check_output_paths

    if args.command == "plot":
        check_output_paths([("-o", _plot_output(args))], [("timeline", args.timeline)])
        return
    inputs = [("input file", f) for f in getattr(args, "files", None) or ()]
    inputs += [("--input file", getattr(args, "input", None)), ("--model file", getattr(args, "model", None))]
    outputs = [(option, getattr(args, option[2:].replace("-", "_"), None))
               for option in ("--csv", "--jsonl", "--summary-json")]
    check_output_paths(outputs, inputs)


class Outputs:
    """The files and the standard output a scoring command (``analyse``, ``listen``) writes,
    opened in one place and closed together when the command ends.

    Use it as a context manager around the command: :meth:`open` opens ``--jsonl OUT`` and
    ``--summary-json FILE`` before any model or audio is loaded (so an unwritable path fails
    first), :meth:`open_csv` opens ``--csv OUT`` once the model's labels are known, and leaving
    the context closes every file, whatever happened. A file that cannot be finished there (a
    full disk) does not hide what the command reported: its error is kept in
    :attr:`close_errors` for the caller to report after the command's own lines.

    Args:
        args: The parsed options (``--csv``, ``--jsonl``, ``--summary-json``, ``--format``,
            ``--force``, ``--append``); a command without them opens nothing.

    Attributes:
        csv: The :class:`~stream_ser.sinks.CsvSink`, or None.
        jsonl: The ``--jsonl`` :class:`~stream_ser.sinks.JsonLinesSink`, or None.
        summary: The ``--summary-json`` :class:`~stream_ser.summary.SummaryJsonFile`, or None.
        close_errors: The :class:`~stream_ser.sinks.OutputError` of each file that could not be
            finished when the context ended.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.csv: Any = None
        self.jsonl: Any = None
        self.summary: Any = None
        self._stdout: Any = None
        self.close_errors: list[Exception] = []

    def __enter__(self) -> "Outputs":
        return self

    def open(self) -> None:
        """Open ``--jsonl`` and ``--summary-json`` (before any model or audio).

        Raises:
            OutputError: A path that cannot be written, or an existing file without ``--force``.
        """
        args = self.args
        if getattr(args, "jsonl", None) and self.jsonl is None:
            from ..sinks import JsonLinesSink

            self.jsonl = JsonLinesSink(args.jsonl, force=args.force, append=args.append)
        if getattr(args, "summary_json", None) and self.summary is None:
            from ..summary import SummaryJsonFile

            self.summary = SummaryJsonFile(args.summary_json, force=args.force)

    def open_csv(self, labels: tuple[str, ...]) -> Any:
        """Open ``--csv OUT`` with the model's labels as columns; the sink, or None without the option.

        Raises:
            OutputError: As :meth:`open`, or an appended CSV with other columns.
        """
        if getattr(self.args, "csv", None) and self.csv is None:
            from ..sinks import CsvSink

            self.csv = CsvSink(self.args.csv, labels, force=self.args.force, append=self.args.append)
        return self.csv

    @property
    def stdout(self) -> Any:
        """The standard-output sink ``--format`` chooses: printed lines or JSON lines."""
        if self._stdout is None:
            from ..sinks import JsonLinesSink, LinePrinter

            self._stdout = JsonLinesSink() if getattr(self.args, "format", "lines") == "jsonl" else LinePrinter()
        return self._stdout

    @property
    def files(self) -> list:
        """The prediction files opened: the CSV and the JSON-lines file."""
        return [s for s in (self.csv, self.jsonl) if s is not None]

    def add_summary(self, summary: Any, show: bool) -> None:
        """Keep a call summary for ``--summary-json``; print it on stderr if ``show`` (not with -q)."""
        from ..summary import format_summary

        if self.summary is not None:
            self.summary.add(summary)
        if show and not self.args.quiet:
            print(format_summary(summary), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        from ..sinks import OutputError

        for out in (self.csv, self.jsonl, self._stdout, self.summary):
            if out is not None:
                try:
                    out.close()
                except OutputError as error:
                    self.close_errors.append(error)


def _names_problem(args: argparse.Namespace, devices: int = 0) -> str | None:
    """``--channel-names`` against the channels the options choose, before any audio is opened:
    the one-line problem, or None (``--channels all`` is checked against each file or device
    when it is opened, by its :class:`~stream_ser.channels.ChannelPlan`).

    Args:
        args: The parsed options.
        devices: How many ``--device`` options ``listen`` was given (each its own channel when
            there are several).
    """
    from ..channels import ChannelPlan, ChannelPlanError

    names = getattr(args, "channel_names", None)
    if names is None:
        return None
    if devices > 1:
        numbers, unit = tuple(range(1, devices + 1)), "devices"
    elif isinstance(args.channels, tuple):
        numbers, unit = args.channels, "channel(s)"
    elif args.channels is None:
        numbers, unit = (0,), ""
    else:
        return None
    try:
        ChannelPlan.of(numbers, names)
    except ChannelPlanError:
        if not unit:
            return "--channel-names names the channels chosen with --channels" + (
                " (or the devices of several --device)" if args.command == "listen" else "")
        return f"--channel-names gives {len(names)} name(s) for {len(numbers)} {unit}"
    return None
