"""The timeline of the ``stream-ser listen`` terminal UI: one cell per hop, scrolling.

Position in the pipeline: the last consumer, like every widget of :mod:`stream_ser.tui`; it only
shows what session events carried (:mod:`stream_ser.session`). The app fills it from its
``on_prediction_made``, ``on_hop_paused`` and ``on_marker_written`` handlers; all methods run on
the UI thread.

* :class:`SpeechCell`, :class:`SilenceCell`, :class:`PausedCell` - what one hop of one channel
  shows (:data:`TimelineCell`).
* :func:`timeline_geometry` - hops per row and per axis tick for a width.
* :class:`TimelineAxis` - the seconds above the rows.
* :class:`TimelineRows` - the cells, ``per_row`` hops per line, newest line at the bottom.
* :class:`Timeline` - the panel holding both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from ..display import format_mmss
from ..types import Prediction
from .palette import DIM, MARKER_GLYPH, PAUSE_GLYPH, SILENCE_GLYPH, EmotionPalette

#: A window's label is shown in lowercase on the timeline below this confidence.
LOW_CONFIDENCE = 0.5

#: Row lengths (s) the timeline chooses from: the longest that fits the width, so rows start at
#: round times.
NICE_ROW_S = (5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: Axis tick spacings (s) the timeline chooses from.
NICE_TICK_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900)
#: Width of the row label column: ``mm:ss`` right-aligned in 6 cells, then a space.
ROW_LABEL_CELLS = 7
#: Minimum cells between axis ticks (room for a label such as ``25s`` and a gap).
MIN_TICK_CELLS = 6
#: Hops kept on the timeline (older ones scroll out of memory; the CSV keeps everything):
#: 6 hours at 0.5 s.
MAX_TIMELINE_HOPS = 43200


@dataclass(frozen=True, slots=True)
class SpeechCell:
    """A hop whose window passed the speech gate: its label's letter on the label's colour.

    Attributes:
        label: The window's label (one of the model's).
        confidence: Its probability (0-1), or None if unknown; below :data:`LOW_CONFIDENCE` the
            letter is lowercase.
    """

    label: str
    confidence: float | None

    @property
    def confident(self) -> bool:
        """Whether the letter is shown in uppercase (bold)."""
        return self.confidence is None or self.confidence >= LOW_CONFIDENCE


@dataclass(frozen=True, slots=True)
class SilenceCell:
    """A hop whose window held no speech (:data:`~stream_ser.tui.palette.SILENCE_GLYPH`)."""


@dataclass(frozen=True, slots=True)
class PausedCell:
    """A hop that ended while scoring was paused (:data:`~stream_ser.tui.palette.PAUSE_GLYPH`)."""


#: What one hop of one channel shows on the timeline.
TimelineCell = SpeechCell | SilenceCell | PausedCell
#: The one silence cell and the one pause cell (they carry no data).
SILENCE = SilenceCell()
PAUSED = PausedCell()


def _whole(x: float) -> int | None:
    n = round(x)
    return int(n) if n >= 1 and abs(x - n) < 1e-6 else None


def timeline_geometry(cells_available: int, hop_s: float) -> tuple[int, int]:
    """Cells per row and cells per axis tick for a width.

    Rows last the longest :data:`NICE_ROW_S` whose hop count fits; with a hop that divides none
    of them, the row is simply as wide as the space.

    Args:
        cells_available: Cells available for hops on a line (>= 1).
        hop_s: Seconds per cell.

    Returns:
        ``(cells_per_row, cells_per_tick)``.
    """
    cells_available = max(1, cells_available)
    per_row = None
    for row_s in NICE_ROW_S:
        cells = _whole(row_s / hop_s)
        if cells is not None and cells <= cells_available:
            per_row = cells
    if per_row is None:
        per_row = cells_available
    per_tick = per_row
    for tick_s in NICE_TICK_S:
        cells = _whole(tick_s / hop_s)
        if cells is not None and cells >= MIN_TICK_CELLS and per_row % cells == 0:
            per_tick = cells
            break
    return per_row, per_tick


class TimelineAxis(Widget):
    """The time axis above the timeline rows: seconds from the start of each row.

    Thread: UI thread.
    """

    DEFAULT_CSS = "TimelineAxis { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.hop_s = 0.5
        self.per_row = 60
        self.per_tick = 10
        self.label_cells = ROW_LABEL_CELLS

    def set_geometry(self, hop_s: float, per_row: int, per_tick: int, label_cells: int = ROW_LABEL_CELLS) -> None:
        """Match the rows' geometry (``label_cells``: width of the rows' label column)."""
        if (hop_s, per_row, per_tick, label_cells) != (self.hop_s, self.per_row, self.per_tick, self.label_cells):
            self.hop_s, self.per_row, self.per_tick, self.label_cells = hop_s, per_row, per_tick, label_cells
            self.refresh()

    def render(self) -> Text:
        chars = list(" mm:ss ".rjust(self.label_cells)[: self.label_cells] + " " * (self.per_row + 8))
        for cell in range(0, self.per_row, self.per_tick):
            label = f"{cell * self.hop_s:g}s"
            start = self.label_cells + cell
            chars[start : start + len(label)] = list(label)
        return Text("".join(chars).rstrip(), style=DIM, no_wrap=True, overflow="crop")


class TimelineRows(ScrollView, can_focus=True):
    """The timeline's rows: one cell per hop, ``per_row`` hops per line, newest line at the bottom.

    A cell shows the window's label letter on the label's colour (lowercase when the confidence
    is below 0.5), ``·`` for a window without speech, ``‖`` for a hop while scoring was paused,
    and nothing for hops not yet captured or cleared. A hop with a marker is underlined and the
    row ends with ``◆n`` for marker number ``n``. The view follows the newest row unless the
    user scrolled up (arrow keys, PgUp/PgDn, the mouse wheel).

    With several channels (:meth:`configure_channels`) every time row has one line per channel,
    labelled with the channel's name after the row's ``mm:ss``, so the channels of one moment are
    stacked above each other.

    Thread: UI thread.
    """

    DEFAULT_CSS = """
    TimelineRows { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.palette: EmotionPalette | None = None
        self.hop_s = 0.5
        self.per_row, self.per_tick = 60, 10
        self.cells: dict[int, TimelineCell] = {}
        #: One cell dict per channel (``cells`` is the first channel's).
        self.channel_cells: list[dict[int, TimelineCell]] = [self.cells]
        #: The channels' names, in order ("" for the single channel of mono input).
        self.channel_names: tuple[str, ...] = ("",)
        self.markers: dict[int, list[int]] = {}
        self.origin_hop = 0
        self.latest_hop: int | None = None
        #: Whether the view scrolls to the newest row as rows are added (False once the user
        #: scrolls up, True again at the bottom).
        self.following = True

    def configure(self, palette: EmotionPalette, hop_s: float) -> None:
        """Set labels, colours and the hop (s per cell)."""
        self.palette, self.hop_s = palette, hop_s
        self._relayout()

    def configure_channels(self, names: Sequence[str]) -> None:
        """Show one line per channel in each time row, labelled with these names (clears the view)."""
        self.channel_names = tuple(str(n) for n in names) or ("",)
        self.channel_cells = [{} for _ in self.channel_names]
        self.cells = self.channel_cells[0]
        self._relayout()

    @property
    def lines_per_row(self) -> int:
        """Lines of one time row: one per channel."""
        return len(self.channel_names)

    @property
    def label_cells(self) -> int:
        """Width of the label column: ``mm:ss`` and, with several channels, the channel's name."""
        if self.lines_per_row == 1:
            return ROW_LABEL_CELLS
        return ROW_LABEL_CELLS + min(max(len(n) for n in self.channel_names), 8) + 1

    # ---- model -----------------------------------------------------------------------------

    def _put(self, hop: int, cell: TimelineCell, channel: int = 0) -> None:
        if hop < self.origin_hop or not 0 <= channel < len(self.channel_cells):
            return
        self.channel_cells[channel][hop] = cell
        if self.latest_hop is None or hop > self.latest_hop:
            self.latest_hop = hop
            if hop - self.origin_hop >= MAX_TIMELINE_HOPS:
                self._forget_before(hop - MAX_TIMELINE_HOPS + self.per_row)
        self._content_changed()

    def _forget_before(self, hop: int) -> None:
        new_origin = hop - hop % self.per_row
        for cells in self.channel_cells:
            for key in [k for k in cells if k < new_origin]:
                del cells[key]
        for key in [k for k in self.markers if k < new_origin]:
            del self.markers[key]
        self.origin_hop = new_origin

    def add_prediction(self, hop: int, p: Prediction, channel: int = 0) -> None:
        """Fill hop ``hop`` of channel ``channel`` (its position) with a prediction (speech letter
        or silence dot)."""
        if p.is_speech and p.label is not None:
            self._put(hop, SpeechCell(p.label, p.confidence), channel)
        else:
            self._put(hop, SILENCE, channel)

    def add_paused(self, hop: int) -> None:
        """Mark hop ``hop`` as paused (in every channel)."""
        for channel in range(len(self.channel_cells)):
            self._put(hop, PAUSED, channel)

    def add_marker(self, hop: int, number: int) -> None:
        """Put marker ``number`` on hop ``hop``."""
        if hop < self.origin_hop:
            return
        self.markers.setdefault(hop, []).append(number)
        if self.latest_hop is None or hop > self.latest_hop:
            self.latest_hop = hop
        self._content_changed()

    def clear(self) -> None:
        """Forget every cell; the timeline restarts at the next hop."""
        self.origin_hop = (self.latest_hop + 1) if self.latest_hop is not None else self.origin_hop
        self.latest_hop = None
        for cells in self.channel_cells:
            cells.clear()
        self.markers.clear()
        self._content_changed()

    @property
    def first_row(self) -> int:
        """Index of the first row shown (row ``r`` starts at ``r * per_row * hop_s`` s)."""
        return self.origin_hop // self.per_row

    @property
    def row_count(self) -> int:
        """Time rows in the scrollable area (at least one); each takes :attr:`lines_per_row` lines."""
        last = self.first_row if self.latest_hop is None else self.latest_hop // self.per_row
        return max(last, self.first_row) - self.first_row + 1

    # ---- layout and rendering --------------------------------------------------------------

    def _relayout(self) -> None:
        width = self.scrollable_content_region.width or self.size.width
        per_row, per_tick = timeline_geometry(width - self.label_cells - 1, self.hop_s)
        if (per_row, per_tick) != (self.per_row, self.per_tick):
            self.per_row, self.per_tick = per_row, per_tick
        parent = self.parent
        if parent is not None:
            for axis in parent.query(TimelineAxis):
                axis.set_geometry(self.hop_s, self.per_row, self.per_tick, self.label_cells)
        self._content_changed(force=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Follow the newest row again once the user is back at the bottom (End, PgDn)."""
        super().watch_scroll_y(old_value, new_value)
        self.following = new_value >= self.max_scroll_y - 0.5

    def _content_changed(self, force: bool = False) -> None:
        size = Size(self.size.width, self.row_count * self.lines_per_row)
        if size != self.virtual_size or force:
            self.virtual_size = size
        self.refresh()
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def on_resize(self) -> None:
        self._relayout()

    def _cell(self, hop: int, channel: int = 0) -> Segment:
        cell = self.channel_cells[channel].get(hop)
        palette = self.palette
        marked = hop in self.markers
        if cell is None:
            seg = Segment("│" if marked else " ", Style(color="#ffffff", bold=True) if marked else None)
            return seg
        if isinstance(cell, SpeechCell) and palette is not None:
            letter = palette.letters[cell.label]
            style = palette.block(cell.label, bold=cell.confident)
            text = letter if cell.confident else letter.lower()
        elif isinstance(cell, PausedCell):
            style, text = Style(color="#a0a0a0", bgcolor="#303030"), PAUSE_GLYPH
        else:
            style, text = Style(color="#707070"), SILENCE_GLYPH
        if marked:
            style = style + Style(underline=True, reverse=not isinstance(cell, SpeechCell))
        return Segment(text, style)

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the visible area."""
        width = self.scrollable_content_region.width or self.size.width
        k = self.lines_per_row
        row, channel = divmod(int(self.scroll_offset.y) + y, k)
        row += self.first_row
        if row >= self.first_row + self.row_count:
            return Strip.blank(width, self.rich_style)
        start_hop = row * self.per_row
        time_label = f"{format_mmss(start_hop * self.hop_s):>6} " if channel == 0 else " " * ROW_LABEL_CELLS
        segments = [Segment(time_label, DIM)]
        if k > 1:
            name_cells = self.label_cells - ROW_LABEL_CELLS - 1
            segments.append(Segment(f"{self.channel_names[channel][:name_cells]:<{name_cells}} ", Style(bold=True)))
        segments += [self._cell(start_hop + i, channel) for i in range(self.per_row)]
        numbers = [n for hop in range(start_hop, start_hop + self.per_row) for n in self.markers.get(hop, ())]
        if numbers and channel == 0:
            segments.append(Segment(" " + " ".join(f"{MARKER_GLYPH}{n}" for n in numbers), Style(bold=True)))
        return Strip(segments).apply_style(self.rich_style).adjust_cell_length(width, self.rich_style)

    def row_text(self, row: int, channel: int = 0) -> str:
        """Plain text of time row ``row`` (absolute index) of channel ``channel`` (its position),
        without its labels (for tests)."""
        start = row * self.per_row
        return "".join(self._cell(start + i, channel).text for i in range(self.per_row))


class Timeline(Vertical):
    """The timeline panel: axis and scrolling rows.

    Thread: UI thread.
    """

    def compose(self) -> ComposeResult:
        yield TimelineAxis(id="timeline-axis")
        yield TimelineRows(id="timeline-rows")

    @property
    def rows(self) -> TimelineRows:
        """The rows widget (the timeline's data)."""
        return self.query_one(TimelineRows)

    def configure(self, palette: EmotionPalette, hop_s: float) -> None:
        """Set labels, colours and the hop; titles say what a cell is."""
        self.rows.configure(palette, hop_s)
        self.border_title = f"timeline · 1 cell = {hop_s:g} s"
        self.border_subtitle = (
            f"letter = emotion (lowercase < {LOW_CONFIDENCE:g})  {SILENCE_GLYPH} no speech  "
            f"{PAUSE_GLYPH} paused  {MARKER_GLYPH} marker"
        )
