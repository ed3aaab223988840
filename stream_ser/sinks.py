"""Sinks: where predictions go (timeline CSV, JSON lines, printed lines).

Position in the pipeline: the last stage; every sink receives the engine's
:class:`~stream_ser.types.Prediction` objects in order.

The timeline CSV is a stable interface. Header::

    source,channel,start_s,end_s,speech,label,confidence,p_<label1>,p_<label2>,...,adaptation

one ``p_`` column per model label in model order; ``adaptation`` says which adaptation to the
voice produced the probabilities (``embedding``, ``output`` or ``none``,
:mod:`stream_ser.adaptation`; empty on marker rows); ``speech`` is 1 when the window passed the speech gate and was scored, else 0
(``--gate vad``, the default: loud enough *and* a voice by the VAD; ``--gate level``: loud
enough; :class:`~stream_ser.engine.Engine`, ``docs/vad.md``); ``label``,
``confidence`` and the ``p_`` columns are empty when ``speech`` is 0 (a *marker* row, written when
the user presses ``m`` in the terminal UI, has ``speech`` 0, ``label`` ``marker`` and
``start_s`` = ``end_s``); times are seconds with millisecond precision, probabilities have 4
decimals. ``channel`` is 0 for mono (or down-mixed) input; when channels are scored on their own
(``--channels 1,2``, or several ``--device``) it is the channel's name (``--channel-names
agent,customer``) or, unnamed, its number counted from 1
(:attr:`~stream_ser.types.Prediction.channel_id`), and the rows of one hop follow each other in
channel order. Each row is flushed to the OS as soon as it is written, so a crash loses at most
the row being written.

JSON lines (``--format jsonl`` / ``--jsonl OUT``) are a stable interface too: one JSON object per
line, UTF-8, flushed per line, keys in the order below, with a ``type`` field saying what the
object is::

    {"type":"prediction","source":"a.flac","channel":0,"start_s":0.0,"end_s":1.5,"speech":true,
     "label":"angry","confidence":0.7012,"probabilities":{"neutral":0.021,...},"adaptation":"output"}
    {"type":"clip","source":"a.flac","duration_s":4.37,"n_windows":9,"n_speech_windows":7,
     "label":"angry","confidence":0.62,"probabilities":{"neutral":0.05,...}}
    {"type":"error","source":"b.wav","message":"b.wav: no such file"}
    {"type":"marker","source":"mic:default","channel":0,"time_s":12.48,"number":1}

``prediction`` objects carry the CSV's fields (``channel`` is the CSV's value: a JSON number,
or the channel's name as a string; ``speech`` is a JSON boolean; ``label``,
``confidence`` and ``probabilities`` are null when ``speech`` is false; ``probabilities`` maps
every model label, in model order, to its probability; ``adaptation`` is the CSV's). ``clip`` objects (``analyse`` only, one
per file after its predictions; one per channel, with a ``channel`` key added at the end, when
channels are scored on their own) carry the clip-level result; ``error`` objects (``analyse``
only) name a file that could not be scored. Rounding matches the CSV (times 3 decimals,
probabilities 4).

Why one module of about 640 lines: the three sinks share the header, the row formatting and
the flush-and-fsync guarantees (``docs/guarantees.md``), and half of it is their docstrings.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .display import format_time
from .text import printable
from .types import ClipResult, Marker, Prediction

#: Columns before the per-label probability columns.
BASE_COLUMNS = ("source", "channel", "start_s", "end_s", "speech", "label", "confidence")


class OutputError(RuntimeError):
    """An output file cannot be written (exists without --force/--append, unwritable, header
    mismatch on append, a full disk)."""


class OutputFile:
    """An output file written line by line, each line handed to the operating system at once.

    A line is written whole or not at all: when a write fails (a full disk, a removed mount),
    whatever part of the line reached a regular file is cut off again, so every line before it
    stays whole and nothing is left half-written for a later flush. Text is UTF-8; a lone
    surrogate (a file name's byte that is not UTF-8) is written as its escape, ``\\udcff``.

    A named pipe is opened only when a program is reading it (``mkfifo p; cat p &``), never
    waited on.

    Args:
        path: The file; created if missing.
        append: Add to the end of the file instead of replacing its contents.

    Raises:
        OutputError: If the file cannot be opened for writing (naming it and why), or it is a
            named pipe that no program is reading.

    Thread: one writer at a time.
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | (os.O_APPEND if append else os.O_TRUNC)
        # O_NONBLOCK: opening a named pipe without a reader fails (ENXIO) instead of waiting
        nonblock = getattr(os, "O_NONBLOCK", 0)
        try:
            self._fd: int | None = os.open(self.path, flags | nonblock, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OutputError(f"{self.path}: is a named pipe that no program is reading (start the reader "
                                  "first)") from None
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        except ValueError as exc:  # a NUL byte in the name
            raise OutputError(f"{self.path}: cannot write ({exc})") from None
        if nonblock:
            os.set_blocking(self._fd, True)
        st = os.fstat(self._fd)
        self._regular = stat.S_ISREG(st.st_mode)
        self._size = st.st_size if self._regular else 0  # bytes of whole lines in the file
        self._failure: OutputError | None = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._fd is None

    def write(self, text: str) -> None:
        """Write ``text`` (one or more whole lines) to the file.

        Raises:
            OutputError: If the write fails, naming the file and why (every earlier line stays
                whole); again at every later write.
        """
        if self._failure is not None:
            raise self._failure
        if self._fd is None:
            raise ValueError(f"{self.path}: write to a closed output")
        data = text.encode("utf-8", "backslashreplace")
        rest = memoryview(data)
        try:
            while rest:
                rest = rest[os.write(self._fd, rest):]
        except OSError as exc:
            if self._regular:
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
            self._failure = OutputError(f"{self.path}: cannot write ({exc.strerror or exc})")
            raise self._failure from None
        self._size += len(data)

    def close(self) -> None:
        """fsync (best effort) and close; idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError:
            pass
        os.close(fd)


def _file_identity(path: str | os.PathLike[str]) -> set[tuple]:
    """What names a file for :func:`check_output_paths`: its path with every symlink resolved
    and, for an existing regular file, its device and inode (so hard links count too). Empty for
    an existing file that is not a regular file (``/dev/null``, a terminal, a pipe), which
    outputs and inputs may share."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        resolved = Path(os.path.abspath(path))
    keys: set[tuple] = {("path", os.path.normcase(str(resolved)))}
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # not there yet (or unreadable): its resolved path names it
        return keys
    if not stat.S_ISREG(st.st_mode):
        return set()
    keys.add(("inode", st.st_dev, st.st_ino))
    return keys


def _has_content(path: Path) -> bool:
    """Whether an output path names an existing, non-empty file.

    Raises:
        OutputError: If the path cannot be looked at (a name too long, a loop of symlinks).
    """
    try:
        return path.stat().st_size > 0
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None


def check_output_paths(
    outputs: Sequence[tuple[str, str | os.PathLike[str] | None]],
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
) -> None:
    """Refuse an output file that is also an input, or that another output writes too.

    Called before any output is opened (opening one truncates it). Paths are compared once
    resolved (a symlink names its target) and, for existing files, by device and inode (a hard
    link names the same file); existing files other than regular files (``/dev/null``) are not
    compared.

    Args:
        outputs: ``(option, path)`` of each output file, e.g. ``("--csv", "t.csv")``; None paths
            (an option not given) are skipped.
        inputs: ``(what, path)`` of each file read, e.g. ``("input", "call.wav")``; None skipped.

    Raises:
        OutputError: Naming the output and the input or other output it collides with.
    """
    seen: list[tuple[str, Any, set[tuple], bool]] = []
    for what, path in inputs:
        if path is not None:
            seen.append((what, path, _file_identity(path), True))
    for option, path in outputs:
        if path is None:
            continue
        keys = _file_identity(path)
        for what, other, other_keys, is_input in seen:
            if keys & other_keys:
                if is_input:
                    raise OutputError(f"{option} {path}: is the {what} {other}; an output must not overwrite an input")
                raise OutputError(f"{option} {path} and {what} {other} are the same file; give each output its own")
        seen.append((option, path, keys, False))


def _fresh_line(path: Path, csv_quotes: bool = False) -> str:
    """What to write before appending to an existing file so that the first new line starts a
    line of its own, never glued onto an unfinished one (what a crash, a kill or a full disk
    leaves, or a header written without its newline).

    Args:
        path: An existing, non-empty file.
        csv_quotes: The file is a CSV written with minimal quoting (quotes inside a field are
            doubled): an odd number of ``"`` in the whole file means it ends inside a quoted
            field, whose newline would not end the row.

    Returns:
        ``""`` when the file ends with a newline (outside quotes), ``"\n"`` after an unfinished
        line, ``'"\n'`` (close the field, end the row) after a CSV cut inside a quoted field.

    Raises:
        OSError: If the file cannot be read.
    """
    quotes, last = 0, b""
    with open(path, "rb") as f:
        if csv_quotes:  # one pass over the file (a 100 MB timeline takes about 50 ms)
            for block in iter(lambda: f.read(1 << 20), b""):
                quotes += block.count(b'"')
                last = block[-1:]
        else:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    if quotes % 2:
        return '"\n'
    return "" if last == b"\n" else "\n"


def csv_header(labels: tuple[str, ...]) -> list[str]:
    """The timeline CSV header for a model's labels."""
    return [*BASE_COLUMNS, *(f"p_{label}" for label in labels), ADAPTATION_COLUMN]


#: The last column of the timeline CSV: the adaptation to the voice that ran (``embedding``,
#: ``output``, ``none``).
ADAPTATION_COLUMN = "adaptation"


#: ``label`` of a marker row in the timeline CSV (a user's mark on the timeline, ``m`` in the UI).
MARKER_LABEL = "marker"


def marker_csv_row(marker: Marker, labels: tuple[str, ...]) -> list[str]:
    """The timeline CSV row of a marker.

    ``start_s`` = ``end_s`` = the marker's time (a zero-length window, which no prediction has),
    ``speech`` 0, ``label`` :data:`MARKER_LABEL`, ``confidence`` and every ``p_`` column empty.
    Readers that keep ``speech == 1`` rows see exactly the scored speech windows.
    """
    t = f"{marker.time_s:.3f}"
    return [marker.source, str(marker.channel_id), t, t, "0", MARKER_LABEL, "", *([""] * len(labels)), ""]


def csv_row(p: Prediction) -> list[str]:
    """One timeline CSV row (strings) for a prediction."""
    row = [p.source, str(p.channel_id), f"{p.start_s:.3f}", f"{p.end_s:.3f}", "1" if p.is_speech else "0"]
    if p.is_speech and p.probabilities is not None:
        row += [p.label or "", f"{p.confidence:.4f}", *(f"{x:.4f}" for x in p.probabilities)]
    else:
        row += ["", "", *([""] * len(p.labels))]
    row.append(p.adaptation)
    return row


class CsvSink:
    """Writes the timeline CSV, one flushed row per prediction.

    The file is opened (and checked) at construction, before any audio is captured, so an
    unwritable path fails at once rather than after an hour of listening.

    Args:
        path: Output file.
        labels: The model's labels (they name the ``p_`` columns).
        force: Replace an existing file.
        append: Add rows to an existing file whose header matches (new file otherwise). An
            unfinished last line (a crash, a kill, a full disk) is ended first, so the first
            new row starts a line of its own (the fragment stays as a short row).

    Attributes:
        rows_written: Data rows written by this sink.

    Raises:
        OutputError: If the file exists and neither ``force`` nor ``append`` is set, an
            existing file is not a timeline CSV or its header differs (append), or the file
            cannot be read (append) or opened for writing.
    """

    def __init__(self, path: str | os.PathLike[str], labels: tuple[str, ...], force: bool = False, append: bool = False) -> None:
        self.path = Path(path)
        self.labels = labels
        self.rows_written = 0
        header = csv_header(labels)
        exists = _has_content(self.path)
        if exists and not (force or append):
            raise OutputError(f"{self.path}: already exists (use --force to replace it or --append to add to it)")
        fresh_line = ""
        if exists and append:
            try:
                with open(self.path, newline="", encoding="utf-8") as f:
                    first = next(csv.reader(f), [])
                fresh_line = _fresh_line(self.path, csv_quotes=True)
            except (UnicodeDecodeError, csv.Error):
                raise OutputError(f"{self.path}: cannot append, it is not a timeline CSV") from None
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
            if first != header:
                raise OutputError(f"{self.path}: cannot append, its header differs from this model's columns")
        self._file = OutputFile(self.path, append=exists and append)
        self._row = io.StringIO()
        self._writer = csv.writer(self._row, lineterminator="\n")
        try:
            if not (exists and append):
                self._write_row(header)
            elif fresh_line:
                self._file.write(fresh_line)
        except OutputError:
            self._file.close()
            raise

    def _write_row(self, row: list[str]) -> None:
        self._row.seek(0)
        self._row.truncate()
        self._writer.writerow(row)
        self._file.write(self._row.getvalue())

    def write(self, p: Prediction) -> None:
        """Write one row, handed to the operating system at once.

        Raises:
            OutputError: If the row cannot be written (a full disk), naming the file; the rows
                before it stay whole.
        """
        self._write_row(csv_row(p))
        self.rows_written += 1

    def write_marker(self, marker: Marker) -> None:
        """Write one marker row (:func:`marker_csv_row`); counted in ``rows_written``.

        Raises:
            OutputError: As :meth:`write`.
        """
        self._write_row(marker_csv_row(marker, self.labels))
        self.rows_written += 1

    def close(self) -> None:
        """fsync and close (idempotent)."""
        self._file.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_prediction(p: Prediction, top: int = 3) -> str:
    """One human-readable line per hop, e.g. ``00:03.5  angry     0.81  (happy 0.09, fear 0.05)``.

    A channel scored on its own (``channel`` not 0) is named after the time:
    ``00:03.5  agent     angry     0.81  (...)``.
    """
    when = format_time(p.end_s)
    if p.channel != 0 or p.channel_name:
        when = f"{when}  {str(p.channel_id):9s}"
    if not p.is_speech or p.probabilities is None:
        return f"{when}  {'-':9s} (no speech)"
    ranked = sorted(zip(p.labels, p.probabilities), key=lambda t: -t[1])
    others = ", ".join(f"{lab} {prob:.2f}" for lab, prob in ranked[1:top])
    return f"{when}  {p.label:9s} {p.confidence:.2f}  ({others})"


def format_clip(r: ClipResult) -> str:
    """The per-file summary line of ``stream-ser analyse`` (``call.wav [agent]: ...`` for a channel
    scored on its own)."""
    source = r.source if r.channel == 0 and not r.channel_name else f"{r.source} [{r.channel_id}]"
    if r.label is None:
        return f"{source}: no speech ({r.duration_s:.2f} s, {r.n_windows} windows)"
    return (
        f"{source}: {r.label} {r.confidence:.2f} "
        f"({r.n_speech_windows}/{r.n_windows} speech windows, {r.duration_s:.2f} s)"
    )


class LinePrinter:
    """Prints :func:`format_prediction` lines to a stream (stdout by default), flushed per line,
    with unprintable characters of names escaped (:func:`~stream_ser.text.printable`).

    With no ``stream``, ``sys.stdout`` is looked up at every write, so a progress display that
    redirects stdout (rich) still gets the lines.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        #: True once the stream was found closed (its reader went away) or failed; later lines
        #: are dropped.
        self.broken = False

    @property
    def stream(self) -> TextIO:
        """The stream written to (the current ``sys.stdout`` by default)."""
        return self._stream if self._stream is not None else sys.stdout

    def _line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(printable(text) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True
            _silence_broken_stdout()
        except io.UnsupportedOperation:
            pass
        except OSError as exc:
            self.broken = True
            _silence_broken_stdout()
            raise OutputError(f"standard output: cannot write ({exc.strerror or exc})") from None

    def write(self, p: Prediction) -> None:
        """Print one :func:`format_prediction` line."""
        self._line(format_prediction(p))

    def write_clip(self, r: ClipResult) -> None:
        """Print one :func:`format_clip` line (the per-file summary of ``analyse``)."""
        self._line(format_clip(r))

    def close(self) -> None:
        pass


def _silence_broken_stdout() -> None:
    """After a closed pipe on stdout (``... | head``), point the stdout file descriptor at
    /dev/null so the interpreter's final flush does not print a BrokenPipeError (the recipe of
    the Python documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


# --------------------------------------------------------------------------------------------
# JSON lines

#: Value of the ``type`` field of each JSON-lines object.
RECORD_TYPES = ("prediction", "clip", "error")


def _probs(labels: tuple[str, ...], probs: tuple[float, ...] | None) -> dict[str, float] | None:
    return None if probs is None else {label: round(float(x), 4) for label, x in zip(labels, probs)}


def prediction_record(p: Prediction) -> dict[str, Any]:
    """The JSON-lines object of one prediction (``"type": "prediction"``; see the module doc)."""
    speech = bool(p.is_speech and p.probabilities is not None)
    return {
        "type": "prediction",
        "source": p.source,
        "channel": p.channel_id,
        "start_s": round(p.start_s, 3),
        "end_s": round(p.end_s, 3),
        "speech": speech,
        "label": p.label if speech else None,
        "confidence": round(float(p.confidence), 4) if speech and p.confidence is not None else None,
        "probabilities": _probs(p.labels, p.probabilities) if speech else None,
        "adaptation": p.adaptation,
    }


def clip_record(r: ClipResult) -> dict[str, Any]:
    """The JSON-lines object of a clip-level result (``"type": "clip"``; see the module doc).

    A result for one channel scored on its own (``channel`` not 0) gets a ``channel`` key at the
    end; the down-mixed (mono) result keeps the original keys.
    """
    record: dict[str, Any] = {
        "type": "clip",
        "source": r.source,
        "duration_s": round(r.duration_s, 3),
        "n_windows": r.n_windows,
        "n_speech_windows": r.n_speech_windows,
        "label": r.label,
        "confidence": None if r.confidence is None else round(float(r.confidence), 4),
        "probabilities": _probs(r.labels, r.mean_probabilities),
    }
    if r.channel != 0 or r.channel_name:
        record["channel"] = r.channel_id
    return record


def error_record(source: str, message: str) -> dict[str, Any]:
    """The JSON-lines object of a source that could not be scored (``"type": "error"``)."""
    return {"type": "error", "source": source, "message": message}


def json_line(record: dict[str, Any]) -> str:
    """One compact JSON line (no trailing newline; non-ASCII kept as UTF-8)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class JsonLinesSink:
    """Writes JSON lines (see the module docstring), one flushed line per object.

    Args:
        path: Output file; None for standard output (looked up at every write, never closed).
        force: Replace an existing file.
        append: Add lines to an existing file; an unfinished last line (a crash, a kill, a full
            disk) is ended first, so the first new object starts a line of its own.

    Attributes:
        lines_written: Lines written by this sink.

    Raises:
        OutputError: If the file exists and neither ``force`` nor ``append`` is set, or it
            cannot be opened for writing (checked at construction, before any audio).

    A closed pipe on standard output (``stream-ser analyse --format jsonl ... | head``) is not
    an error: later lines are dropped.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, force: bool = False, append: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.lines_written = 0
        self._broken = False
        self._file: OutputFile | None = None
        if self.path is not None:
            exists = _has_content(self.path)
            if exists and not (force or append):
                raise OutputError(f"{self.path}: already exists (use --force to replace it or --append to add to it)")
            try:
                fresh_line = _fresh_line(self.path) if exists and append and self.path.is_file() else ""
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
            self._file = OutputFile(self.path, append=append)
            if fresh_line:
                try:
                    self._file.write(fresh_line)
                except OutputError:
                    self._file.close()
                    raise

    def write_record(self, record: dict[str, Any]) -> None:
        """Write one object as a line, handed to the operating system at once.

        Raises:
            OutputError: If the file (or standard output) cannot be written (a full disk),
                naming it; the lines before stay whole. A closed pipe on standard output is
                not an error: this line and later ones are dropped.
        """
        if self._broken:
            return
        line = json_line(record) + "\n"
        if self._file is not None:
            self._file.write(line)
            self.lines_written += 1
            return
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, io.UnsupportedOperation):
            self._broken = True
            _silence_broken_stdout()
            return
        except OSError as exc:
            self._broken = True
            _silence_broken_stdout()
            raise OutputError(f"standard output: cannot write ({exc.strerror or exc})") from None
        self.lines_written += 1

    @property
    def broken(self) -> bool:
        """True once standard output was found closed (its reader went away)."""
        return self._broken

    def write(self, p: Prediction) -> None:
        """Write one ``prediction`` line."""
        self.write_record(prediction_record(p))

    def write_clip(self, r: ClipResult) -> None:
        """Write one ``clip`` line."""
        self.write_record(clip_record(r))

    def write_error(self, source: str, message: str) -> None:
        """Write one ``error`` line."""
        self.write_record(error_record(source, message))

    def write_marker(self, marker: Marker) -> None:
        """Write one ``marker`` line: ``type``, ``source``, ``channel``, ``time_s``, ``number``."""
        self.write_record(
            {"type": "marker", "source": marker.source, "channel": marker.channel_id,
             "time_s": round(marker.time_s, 3), "number": marker.number}
        )

    def close(self) -> None:
        """Flush, fsync and close a file (idempotent); standard output is only flushed."""
        if self._file is None:
            try:
                if not self._broken:
                    sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._broken = True
            return
        self._file.close()

    def __enter__(self) -> "JsonLinesSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
