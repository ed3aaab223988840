"""``stream-ser analyse``: score recorded files faster than real time.

The scoring itself is :func:`stream_ser.api.score_recording`, the path the Python API and
``stream-ser batch`` run too; this module only writes its predictions, clips and call summaries
to the outputs, and shows progress on a terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from ..text import printable
from .common import Outputs, _checked_model, _error, _names_problem, _Stop, _warm_up

log = logging.getLogger("stream_ser")


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


def default_jobs() -> int:
    """``analyse``'s default scoring threads: 2 if this process may run on two or more CPUs
    (``os.sched_getaffinity``, so ``taskset -c 0`` gives 1), else 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def cmd_analyse(args: argparse.Namespace, outputs: Outputs) -> int:
    from ..api import score_recording
    from ..channels import ChannelPlanError
    from ..audio import AudioSourceError, audio_info

    model = _checked_model(args, _names_problem(args))
    if model is None:
        return 2
    outputs.open_csv(model.labels)
    stdout = outputs.stdout
    files = outputs.files
    # predictions: files always; stdout with --format jsonl (every prediction) or --timeline
    pred_sinks: list = files + ([stdout] if args.format == "jsonl" or args.timeline else [])
    # per-file records (clip summaries, errors): stdout and the JSON-lines file
    record_sinks: list = [stdout] + ([outputs.jsonl] if outputs.jsonl else [])
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

        def stopped() -> bool:
            """Ctrl-C, or standard output's reader went away (``... | head``) and nothing else is written."""
            return stop.event.is_set() or (stdout.broken and not files)

        try:
            for i, path in enumerate(args.files):
                if stop.event.is_set():
                    break
                progress.start_file(str(path), durations[i])
                try:
                    scored = score_recording(path, channels=args.channels, channel_names=args.channel_names,
                                             model=model, hop_s=args.hop, jobs=jobs,
                                             adapt=args.adapt, gate=args.gate, stop=stopped)
                    for p in scored:
                        for sink in pred_sinks:
                            sink.write(p)
                        progress.at(p.end_s)
                    for clip in scored.clips:
                        for sink in record_sinks:
                            sink.write_clip(clip)
                    audio_s += scored.duration_s
                    analysed += 1
                    if want_summary:
                        outputs.add_summary(scored.summary, show=args.channels is not None or args.summary)
                except (AudioSourceError, ChannelPlanError) as exc:
                    _error(str(exc))
                    failed.append(str(path))
                    for sink in record_sinks:
                        if hasattr(sink, "write_error"):
                            sink.write_error(str(path), str(exc))
                progress.file_done(i + 1)
                if stdout.broken and not files:
                    log.info("standard output was closed; stopping")
                    break
        finally:
            stdout.close()
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
