"""Sinks: where predictions go (timeline CSV, printed lines).

Position in the pipeline: the last stage; every sink receives the engine's
:class:`~stream_ser.types.Prediction` objects in order.

The timeline CSV is a stable interface. Header::

    source,channel,start_s,end_s,speech,label,confidence,p_<label1>,p_<label2>,...

one ``p_`` column per model label in model order; ``speech`` is 1 or 0; ``label``,
``confidence`` and the ``p_`` columns are empty when ``speech`` is 0; times are seconds with
millisecond precision, probabilities have 4 decimals; ``channel`` is 0 for mono input. Each row
is flushed to the OS as soon as it is written, so a crash loses at most the row being written.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import TextIO

from .types import ClipResult, Prediction

#: Columns before the per-label probability columns.
BASE_COLUMNS = ("source", "channel", "start_s", "end_s", "speech", "label", "confidence")


class OutputError(RuntimeError):
    """An output file cannot be written (exists without --force/--append, unwritable, header
    mismatch on append)."""


def csv_header(labels: tuple[str, ...]) -> list[str]:
    """The timeline CSV header for a model's labels."""
    return [*BASE_COLUMNS, *(f"p_{label}" for label in labels)]


def csv_row(p: Prediction) -> list[str]:
    """One timeline CSV row (strings) for a prediction."""
    row = [p.source, str(p.channel), f"{p.start_s:.3f}", f"{p.end_s:.3f}", "1" if p.is_speech else "0"]
    if p.is_speech and p.probabilities is not None:
        row += [p.label or "", f"{p.confidence:.4f}", *(f"{x:.4f}" for x in p.probabilities)]
    else:
        row += ["", "", *([""] * len(p.labels))]
    return row


class CsvSink:
    """Writes the timeline CSV, one flushed row per prediction.

    The file is opened (and checked) at construction, before any audio is captured, so an
    unwritable path fails at once rather than after an hour of listening.

    Args:
        path: Output file.
        labels: The model's labels (they name the ``p_`` columns).
        force: Replace an existing file.
        append: Add rows to an existing file whose header matches (new file otherwise).

    Attributes:
        rows_written: Data rows written by this sink.

    Raises:
        OutputError: If the file exists and neither ``force`` nor ``append`` is set, the header
            of an existing file differs (append), or the file cannot be opened for writing.
    """

    def __init__(self, path: str | os.PathLike[str], labels: tuple[str, ...], force: bool = False, append: bool = False) -> None:
        self.path = Path(path)
        self.labels = labels
        self.rows_written = 0
        header = csv_header(labels)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not (force or append):
            raise OutputError(f"{self.path}: already exists (use --force to replace it or --append to add to it)")
        if exists and append:
            with open(self.path, newline="", encoding="utf-8") as f:
                first = next(csv.reader(f), [])
            if first != header:
                raise OutputError(f"{self.path}: cannot append, its header differs from this model's columns")
        mode = "a" if (exists and append) else "w"
        try:
            self._file: TextIO = open(self.path, mode, newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self._writer = csv.writer(self._file, lineterminator="\n")
        if mode == "w":
            self._writer.writerow(header)
            self._file.flush()

    def write(self, p: Prediction) -> None:
        """Write and flush one row."""
        self._writer.writerow(csv_row(p))
        self._file.flush()
        self.rows_written += 1

    def close(self) -> None:
        """Flush, fsync and close (idempotent)."""
        if not self._file.closed:
            self._file.flush()
            try:
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_time(seconds: float) -> str:
    """``mm:ss.s`` (or ``h:mm:ss.s`` past an hour) for printed lines."""
    m, s = divmod(max(seconds, 0.0), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"


def format_prediction(p: Prediction, top: int = 3) -> str:
    """One human-readable line per hop, e.g. ``00:03.5  angry     0.81  (happy 0.09, fear 0.05)``."""
    when = format_time(p.end_s)
    if not p.is_speech or p.probabilities is None:
        return f"{when}  {'-':9s} (no speech)"
    ranked = sorted(zip(p.labels, p.probabilities), key=lambda t: -t[1])
    others = ", ".join(f"{lab} {prob:.2f}" for lab, prob in ranked[1:top])
    return f"{when}  {p.label:9s} {p.confidence:.2f}  ({others})"


def format_clip(r: ClipResult) -> str:
    """The per-file summary line of ``stream-ser analyse``."""
    if r.label is None:
        return f"{r.source}: no speech ({r.duration_s:.2f} s, {r.n_windows} windows)"
    return (
        f"{r.source}: {r.label} {r.confidence:.2f} "
        f"({r.n_speech_windows}/{r.n_windows} speech windows, {r.duration_s:.2f} s)"
    )


class LinePrinter:
    """Prints :func:`format_prediction` lines to a stream (stdout by default), flushed per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, p: Prediction) -> None:
        try:
            self.stream.write(format_prediction(p) + "\n")
            self.stream.flush()
        except (BrokenPipeError, io.UnsupportedOperation):
            pass

    def close(self) -> None:
        pass
