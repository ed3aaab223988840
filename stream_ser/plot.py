"""Timeline plots: emotion probabilities over time, from a timeline CSV or from predictions.

Position in the pipeline: after the sinks. ``stream-ser plot TIMELINE.csv -o timeline.png`` reads
the CSV that ``listen --csv`` / ``analyse --csv`` wrote (see :mod:`stream_ser.sinks`) and draws,
for each source and channel, one panel:

* a **label strip** on top: the most probable emotion of every hop as a coloured bar, light grey
  where the window held no speech (each label in the terminal UI's colour,
  :func:`stream_ser.display.emotion_colours`);
* **stacked areas** of the class probabilities below it (they sum to 1, so the whole height is
  always filled while someone speaks); windows without speech leave a shaded gap;
* a time axis in ``m:ss`` (``h:mm:ss`` past an hour) on the stream clock, ticked at whole
  seconds or round multiples of them (5 s, 10 s, 1 min, ...);
* a title naming the source by its file name (its whole path only where two panels' sources
  share a name) and the channel.

Each hop is drawn over the new audio it covers, from the previous prediction's ``end_s`` to its
own ``end_s`` (the value a live display shows at that moment); the window scored is the 3 s
ending there. Rows whose ``end_s`` goes backwards (a CSV appended by a second session of the
same source) start a new panel.

A panel has about a thousand pixels across, so a long timeline is drawn from at most
:data:`MAX_PLOT_POINTS` points: ``stream-ser plot`` reads the CSV row by row and merges
consecutive hops into buckets of equal time (their mean probabilities), so memory and drawing
time stay bounded however long the recording (a day of hops is a 100 MB CSV).

matplotlib is an optional extra (``pip install "stream-ser[plot]"``); it is imported only when a
figure is made and never through pyplot, so plotting works headless and leaves no global state.
"""

from __future__ import annotations

import csv
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .display import emotion_colours, format_clock
from .sinks import ADAPTATION_COLUMN, BASE_COLUMNS
from .types import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: Colour of hops without speech in the label strip.
NO_SPEECH_COLOR = "#e4e4e4"
#: Default most panels drawn in one figure.
DEFAULT_MAX_PANELS = 12
#: Most points (hops, or buckets of consecutive hops) drawn per panel: about two per pixel of the
#: 10-inch figure.
MAX_PLOT_POINTS = 2000
#: Width (s) of the first buckets when a timeline is read with ``max_points``; doubled as often
#: as needed.
_FIRST_BUCKET_S = 0.001

_PANEL_HEIGHT_IN = 2.1
_STRIP_HEIGHT_IN = 0.28
_FIG_WIDTH_IN = 10.0
_DPI = 110
#: Spacings (s) of the time ticks: whole seconds and round multiples, so they read 0:05, 0:10, ...
_TIME_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


class TimelineError(ValueError):
    """A timeline CSV cannot be read (missing, not a stream-ser timeline, malformed row)."""


class MissingDependencyError(RuntimeError):
    """matplotlib, an optional extra, is not installed."""


@dataclass(frozen=True, eq=False)
class Timeline:
    """The hops of one source and channel, as arrays (one row per prediction, stream order; one
    row per bucket of consecutive predictions in a timeline read with ``max_points``).

    Attributes:
        source: Source name (file path or ``mic:<device>``).
        channel: The CSV's channel: 0 for mono input, a channel number counted from 1, or the
            channel's name (``--channel-names``).
        labels: Class names in model order.
        start_s: float64 ``(n,)``, window starts on the stream clock (s).
        end_s: float64 ``(n,)``, window ends (s), non-decreasing.
        speech: bool ``(n,)``, True where the window passed the speech gate (for a bucket: at
            least half of its windows).
        probabilities: float64 ``(n, len(labels))`` in [0, 1]; rows sum to 1 where ``speech``
            (a bucket: the mean over its speech windows), NaN where not.
        run: 1 for the first session of this source/channel in a file, 2, 3, ... for sessions
            appended after it.
    """

    source: str
    channel: int | str
    labels: tuple[str, ...]
    start_s: np.ndarray
    end_s: np.ndarray
    speech: np.ndarray
    probabilities: np.ndarray
    run: int = 1

    @property
    def short_source(self) -> str:
        """The source as a panel names it: a file's name without its folders (``clip.flac`` for
        ``/home/me/calls/clip.flac``); a device (``mic:...``) as it is."""
        if self.source.startswith("mic:"):
            return self.source
        return Path(self.source).name or self.source

    def panel_title(self, full_source: bool = False) -> str:
        """Panel title: the source (:attr:`short_source`, or the whole path with
        ``full_source``), the channel, and the run number when there are several runs."""
        text = f"{self.source if full_source else self.short_source}  (channel {self.channel})"
        return text + (f", run {self.run}" if self.run > 1 else "")

    @property
    def title(self) -> str:
        """Panel title with the source's short name (:meth:`panel_title`)."""
        return self.panel_title()

    @property
    def top_labels(self) -> list[str | None]:
        """The most probable label of each hop, None where not speech."""
        return [self.labels[int(np.argmax(row))] if ok else None for row, ok in zip(self.probabilities, self.speech)]


class _RunBuilder:
    """The rows of one run (one panel) as they are read, merged into at most ``max_points``
    buckets of equal time when ``max_points`` is given (``end_s`` never goes backwards in a run).
    Each bucket keeps its first ``start_s``, last ``end_s``, row and speech counts and the sum of
    its speech rows' probabilities, so memory is bounded by ``max_points``."""

    def __init__(self, source: str, channel: int | str, n_labels: int, max_points: int | None, run: int) -> None:
        self.source, self.channel, self.run = source, channel, run
        self.n_labels = n_labels
        self.max_points = max_points
        self.width_s = _FIRST_BUCKET_S
        self.keys: list[int] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.rows: list[int] = []
        self.speech: list[int] = []
        self.sums: list[list[float]] = []

    @property
    def last_end_s(self) -> float | None:
        return self.ends[-1] if self.ends else None

    def add(self, start_s: float, end_s: float, speech: bool, probs: Sequence[float] | None) -> None:
        key = math.floor(end_s / self.width_s) if self.max_points is not None else len(self.keys)
        if self.keys and key == self.keys[-1]:
            self.ends[-1] = end_s
            self.rows[-1] += 1
            if speech and probs is not None:
                self.speech[-1] += 1
                self.sums[-1] = [a + b for a, b in zip(self.sums[-1], probs)]
        else:
            self.keys.append(key)
            self.starts.append(start_s)
            self.ends.append(end_s)
            self.rows.append(1)
            self.speech.append(1 if speech else 0)
            self.sums.append(list(probs) if speech and probs is not None else [0.0] * self.n_labels)
        while self.max_points is not None and len(self.keys) > self.max_points:
            self._coarsen()

    def _coarsen(self) -> None:
        """Double the bucket width and merge the buckets that now share one."""
        self.width_s *= 2
        keys, starts, ends, rows, speech, sums = [], [], [], [], [], []
        for i, key in enumerate(self.keys):
            key //= 2  # floor(end / (2 w)) == floor(floor(end / w) / 2)
            if keys and keys[-1] == key:
                ends[-1] = self.ends[i]
                rows[-1] += self.rows[i]
                speech[-1] += self.speech[i]
                sums[-1] = [a + b for a, b in zip(sums[-1], self.sums[i])]
            else:
                keys.append(key)
                starts.append(self.starts[i])
                ends.append(self.ends[i])
                rows.append(self.rows[i])
                speech.append(self.speech[i])
                sums.append(self.sums[i])
        self.keys, self.starts, self.ends, self.rows, self.speech, self.sums = keys, starts, ends, rows, speech, sums

    def timeline(self, labels: tuple[str, ...]) -> Timeline:
        n_speech = np.array(self.speech, dtype=np.int64)
        speech = (n_speech > 0) & (2 * n_speech >= np.array(self.rows, dtype=np.int64))
        sums = np.array(self.sums, dtype=np.float64).reshape(len(self.sums), len(labels))
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = np.where(speech[:, None], sums / np.maximum(n_speech, 1)[:, None], np.nan)
        return Timeline(self.source, self.channel, labels, np.array(self.starts, dtype=np.float64),
                        np.array(self.ends, dtype=np.float64), speech, probs, self.run)


class _TimelineBuilder:
    """Rows grouped by source and channel, split into runs where ``end_s`` goes backwards."""

    def __init__(self, labels: tuple[str, ...], max_points: int | None) -> None:
        self.labels = labels
        self.max_points = max_points
        self.groups: dict[tuple[str, int | str], list[_RunBuilder]] = {}

    def add(self, source: str, channel: int | str, start_s: float, end_s: float, speech: bool,
            probs: Sequence[float] | None) -> None:
        runs = self.groups.setdefault((source, channel), [])
        if not runs or (runs[-1].last_end_s is not None and end_s < runs[-1].last_end_s):
            runs.append(_RunBuilder(source, channel, len(self.labels), self.max_points, len(runs) + 1))
        runs[-1].add(start_s, end_s, speech, probs)

    def timelines(self) -> list[Timeline]:
        return [run.timeline(self.labels) for runs in self.groups.values() for run in runs]


def read_timeline_csv(path: str | os.PathLike[str], max_points: int | None = None) -> list[Timeline]:
    """Read a timeline CSV written by ``stream-ser listen/analyse --csv``, row by row.

    Args:
        path: The CSV file (header ``source,channel,start_s,end_s,speech,label,confidence,p_...``).
        max_points: Keep at most this many points per timeline: consecutive rows are merged
            into buckets of equal time (:class:`Timeline` says how), so memory is bounded
            whatever the file's length. None keeps every row.

    Returns:
        One :class:`Timeline` per source, channel and run, in order of first appearance.

    Raises:
        TimelineError: If the file is missing or unreadable, its header is not a stream-ser
            timeline header, a row is malformed (the message gives the line number; times and
            probabilities must be finite), or it has no rows.
        ValueError: If ``max_points`` is below 1.
    """
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    p = Path(path)
    try:
        is_file = stat.S_ISREG(os.stat(p).st_mode)
    except (OSError, ValueError) as exc:
        raise TimelineError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not is_file:  # a named pipe would block on open until a writer comes: never open one
        raise TimelineError(f"{p}: is not a regular file (a pipe, a device or a folder); plot reads a timeline "
                            "CSV file (save the stream to a file first)")
    try:
        f = open(p, newline="", encoding="utf-8")
    except OSError as exc:
        raise TimelineError(f"{p}: cannot read ({exc.strerror or exc})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TimelineError(f"{p}: not a CSV file ({exc})") from None
        # the probability columns; the last column, adaptation, is absent from older files
        n_base = len(BASE_COLUMNS)
        n_end = len(header) - 1 if header and header[-1] == ADAPTATION_COLUMN else len(header or ())
        if (
            header is None
            or tuple(header[:n_base]) != BASE_COLUMNS
            or n_end == n_base
            or not all(h.startswith("p_") for h in header[n_base:n_end])
        ):
            raise TimelineError(
                f"{p}: not a stream-ser timeline CSV (expected the header "
                f"{','.join(BASE_COLUMNS)},p_<label>,...; write one with `stream-ser analyse FILE --csv OUT`)"
            )
        labels = tuple(h[2:] for h in header[n_base:n_end])
        builder = _TimelineBuilder(labels, max_points)
        try:
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise TimelineError(f"{p}, line {line}: {len(row)} fields, expected {len(header)}")
                try:
                    channel: int | str = int(row[1]) if row[1].strip().lstrip("-").isdigit() else row[1]
                    start_s, end_s = float(row[2]), float(row[3])
                    speech = row[4] == "1"
                    if row[4] not in ("0", "1"):
                        raise ValueError(f"speech must be 0 or 1, got {row[4]!r}")
                    probs = [float(x) for x in row[n_base:n_end]] if speech else None
                    if not (math.isfinite(start_s) and math.isfinite(end_s)) or (
                        probs is not None and not all(math.isfinite(x) for x in probs)
                    ):
                        raise ValueError("times and probabilities must be finite numbers")
                except ValueError as exc:
                    raise TimelineError(f"{p}, line {line}: {exc}") from None
                builder.add(row[0], channel, start_s, end_s, speech, probs)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TimelineError(f"{p}: malformed CSV ({exc})") from None
    if not builder.groups:
        raise TimelineError(f"{p}: no rows (the header is there but nothing was scored)")
    return builder.timelines()


def timelines_from_predictions(predictions: Iterable[Prediction], max_points: int | None = None) -> list[Timeline]:
    """Group predictions (e.g. ``stream_ser.analyse(...).timeline``) into :class:`Timeline` s.

    Args:
        predictions: Predictions in stream order.
        max_points: As :func:`read_timeline_csv`; None keeps every prediction.

    Raises:
        ValueError: If there are no predictions or they mix models with different labels.
    """
    builder: _TimelineBuilder | None = None
    for p in predictions:
        if builder is None:
            builder = _TimelineBuilder(p.labels, max_points)
        elif p.labels != builder.labels:
            raise ValueError("predictions from models with different labels cannot share a plot")
        speech = bool(p.is_speech and p.probabilities is not None)
        builder.add(p.source, p.channel_id, p.start_s, p.end_s, speech, p.probabilities if speech else None)
    if builder is None:
        raise ValueError("no predictions to plot")
    return builder.timelines()


def _time_step(span_s: float, max_ticks: int = 10) -> float:
    for step in _TIME_STEPS_S:
        if span_s / step <= max_ticks:
            return float(step)
    return float(_TIME_STEPS_S[-1])


def _segments(tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (s) of the new audio each hop covers."""
    ends = tl.end_s
    if ends.size == 0:
        return ends.copy(), ends.copy()
    diffs = np.diff(ends)
    hop = float(np.median(diffs[diffs > 0])) if np.any(diffs > 0) else max(float(ends[0]), 0.5)
    starts = np.empty_like(ends)
    starts[0] = max(0.0, ends[0] - hop)
    starts[1:] = ends[:-1]
    # a missing stretch (rows lost, capture gap) is left empty instead of smeared
    long = np.r_[False, diffs > 1.5 * hop]
    starts[long] = ends[long] - hop
    return starts, ends


def _no_speech_spans(starts: np.ndarray, ends: np.ndarray, speech: np.ndarray) -> list[tuple[float, float]]:
    """The stretches without speech, consecutive hops joined into one span."""
    spans: list[tuple[float, float]] = []
    for s, e, ok in zip(starts, ends, speech):
        if ok or e <= s:
            continue
        if spans and spans[-1][1] == s:
            spans[-1] = (spans[-1][0], float(e))
        else:
            spans.append((float(s), float(e)))
    return spans


def _panel_titles(tls: Sequence[Timeline]) -> list[str]:
    """Each panel's title: sources by their short names, except where two different sources of
    the figure share one (``a/clip.flac`` and ``b/clip.flac``), which keep their whole paths."""
    owners: dict[str, set[str]] = {}
    for tl in tls:
        owners.setdefault(tl.short_source, set()).add(tl.source)
    return [tl.panel_title(full_source=len(owners[tl.short_source]) > 1) for tl in tls]


def _import_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "plotting needs matplotlib, an optional extra: pip install \"stream-ser[plot]\" "
            "(or pip install matplotlib)"
        ) from None


def plot_timelines(
    timelines: Sequence[Timeline] | Iterable[Prediction],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    max_panels: int = DEFAULT_MAX_PANELS,
    dpi: int = _DPI,
) -> Figure:
    """Draw one panel per source/channel (label strip + stacked probabilities over time).

    Args:
        timelines: :class:`Timeline` objects (from :func:`read_timeline_csv`), drawn as given,
            or predictions (e.g. ``stream_ser.analyse("clip.flac").timeline``), merged into at
            most :data:`MAX_PLOT_POINTS` points per panel.
        out: Image file to write, under exactly this name (format from the suffix: ``.png``,
            ``.svg``, ``.pdf``; PNG for a name without one); None to only return the figure.
        title: Figure title; default none.
        max_panels: Draw at most this many panels (the first ones).
        dpi: Resolution of raster output (dots per inch); the figure is 10 inches wide.

    Returns:
        The ``matplotlib.figure.Figure`` (made without pyplot; nothing to close).

    Raises:
        MissingDependencyError: If matplotlib is not installed.
        ValueError: If there is nothing to plot, or ``out``'s suffix is not an image format.
        OSError: If ``out`` cannot be written.
    """
    _import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    items = list(timelines)
    tls: list[Timeline] = (
        items if items and all(isinstance(t, Timeline) for t in items)
        else timelines_from_predictions(items, MAX_PLOT_POINTS)  # type: ignore[arg-type]
    )
    if not tls:
        raise ValueError("no timelines to plot")
    tls = tls[:max_panels]
    labels = tls[0].labels
    colors = emotion_colours(labels)  # the terminal UI's colours too
    n = len(tls)
    legend_in = 0.45 + (0.3 if title else 0.0)
    height_in = legend_in + n * (_PANEL_HEIGHT_IN + _STRIP_HEIGHT_IN + 0.55)
    fig = Figure(figsize=(_FIG_WIDTH_IN, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ratios = []
    for _ in range(n):
        ratios += [_STRIP_HEIGHT_IN, _PANEL_HEIGHT_IN]
    grid = fig.add_gridspec(2 * n, 1, height_ratios=ratios, hspace=0.02)
    titles = _panel_titles(tls)
    for i, tl in enumerate(tls):
        strip = fig.add_subplot(grid[2 * i, 0])
        ax = fig.add_subplot(grid[2 * i + 1, 0], sharex=strip)
        starts, ends = _segments(tl)
        span = float(ends[-1]) if ends.size else 1.0
        # label strip
        top = tl.top_labels
        for label in [*labels, None]:
            bars = [(s, e - s) for s, e, t in zip(starts, ends, top) if t == label and e > s]
            if bars:
                strip.broken_barh(bars, (0, 1), facecolors=colors[label] if label else NO_SPEECH_COLOR, linewidth=0)
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.tick_params(axis="x", labelbottom=False, length=0)
        for side in ("top", "right", "left", "bottom"):
            strip.spines[side].set_visible(False)
        strip.set_title(titles[i], loc="left", fontsize=9)
        # stacked probabilities, step-drawn over each hop's new audio
        xs = np.column_stack([starts, ends]).ravel()
        speech = np.repeat(tl.speech, 2)
        probs = np.where(tl.speech[:, None], tl.probabilities, 0.0)
        lower = np.zeros(len(tl.end_s))
        for k, label in enumerate(labels):
            upper = lower + probs[:, k]
            ax.fill_between(
                xs, np.repeat(lower, 2), np.repeat(upper, 2), where=speech, facecolor=colors[label],
                linewidth=0, interpolate=False,
            )
            lower = upper
        for s, e in _no_speech_spans(starts, ends, tl.speech):
            ax.axvspan(s, e, facecolor=NO_SPEECH_COLOR, alpha=0.6, linewidth=0, hatch="///", edgecolor="#c8c8c8")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(span, 0.5))
        ax.set_ylabel("probability", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MultipleLocator(_time_step(max(span, 0.5))))  # whole seconds
        ax.xaxis.set_major_formatter(FuncFormatter(format_clock))
        ax.margins(x=0)
        if i == n - 1:
            ax.set_xlabel("time (m:ss, stream clock)", fontsize=8)
    handles = [Patch(facecolor=colors[label], label=label) for label in labels]
    handles.append(Patch(facecolor=NO_SPEECH_COLOR, hatch="///", edgecolor="#c8c8c8", label="no speech"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    if out is not None:
        # the format given explicitly: matplotlib would add ".png" to a name without a suffix
        fig.savefig(os.fspath(out), dpi=dpi, format=Path(out).suffix[1:].lower() or "png")
    return fig
