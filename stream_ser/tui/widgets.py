"""Widgets of the ``stream-ser listen`` terminal UI.

Position in the pipeline: the last consumer of a listening session. Every widget here only
*displays* values computed on the inference thread and delivered as session events
(:mod:`stream_ser.session`); none does DSP. All methods run on the UI thread (Textual's event
loop); the app calls them from its message handlers.

* :class:`SourceHeader` - source, sample rates, model and labels.
* :class:`LevelMeter` - input level in dBFS against the speech gate, clipping and speech state.
* :class:`NowPanel` - the latest window's emotion, large, with its confidence.
* :class:`ProbabilityBars` - smoothed probability of every class.
* :class:`ChannelsPanel` - with several channels: one line per channel with its name, current
  emotion, smoothed trend and level (it replaces the "now" panel and the bars).
* :class:`StatusBar` - session state, counters, latency, overflows, CSV.

The timeline (one cell per hop, coloured and lettered by emotion, scrolling, mm:ss axis; with
several channels one line per channel in each time row) is in :mod:`stream_ser.tui.timeline`, the
key help and the error box in :mod:`stream_ser.tui.screens`; both are imported here too, so every
widget of the UI can be imported from this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Digits, Static

from ..display import format_mmss, format_time
from ..session import SessionStats
from ..types import Prediction
from .palette import DIM, PAUSE_GLYPH, EmotionPalette
from .screens import KEYS, KeysScreen, MessageScreen
from .timeline import LOW_CONFIDENCE, Timeline, TimelineAxis, TimelineRows, timeline_geometry

__all__ = [
    "KEYS", "LOW_CONFIDENCE", "ChannelsPanel", "KeysScreen", "LevelMeter", "MessageScreen", "NowPanel",
    "ProbabilityBars", "SourceHeader", "StatusBar", "Timeline", "TimelineAxis", "TimelineRows", "hbar",
    "timeline_geometry",
]

#: Lowest level the meter shows (dBFS); quieter input pins the meter at its left end.
METER_FLOOR_DBFS = -60.0
#: Meter zones (dBFS): green below -18 (speech typically peaks between -42 and -13 dBFS on the
#: training corpora, see stream_ser.features), yellow up to -6, red above (close to clipping).
METER_YELLOW_DBFS = -18.0
METER_RED_DBFS = -6.0
#: How long (s of stream time) the clipping warning stays lit after the last clipped interval.
CLIP_HOLD_S = 2.0
PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉█"


def hbar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (0-1), with 1/8-cell precision."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = int(round(fraction * width * 8))
    full, rest = divmod(eighths, 8)
    text = "█" * full + (PARTIAL_BLOCKS[rest] if rest and full < width else "")
    return text.ljust(width)


class SourceHeader(Widget):
    """Two header lines: the source and its sample rates; the model, window and labels.

    A long source path is shortened from the left so the rates stay visible.

    Thread: UI thread.
    """

    DEFAULT_CSS = "SourceHeader { height: 2; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.source: str | None = None
        self.kind = ""
        self.rates = ""
        self.model = ""

    def show_opening(self, model_name: str, labels: Sequence[str], window_s: float) -> None:
        """Before the source is open: say so, and show the model."""
        self.model = f" model {model_name} · {window_s:g} s window · {' '.join(labels)}"
        self.refresh()

    def show_source(
        self,
        source_name: str,
        is_device: bool,
        device_rate_hz: int,
        rate_hz: int,
        device_rates_hz: Sequence[int] = (),
        n_channels: int = 1,
    ) -> None:
        """The opened source.

        Args:
            source_name: ``mic:<device>`` (several devices: joined by `` + ``) or a file path.
            is_device: Live device (True) or replayed file (False).
            device_rate_hz: Native rate of the input (Hz).
            rate_hz: Model rate (Hz).
            device_rates_hz: Native rate of each device, when there are several.
            n_channels: Channels scored on their own (1: mono or down-mixed).
        """
        if is_device:
            self.source = " + ".join(part[4:] if part.startswith("mic:") else part for part in source_name.split(" + "))
            self.kind = "devices" if " + " in source_name else "device"
        else:
            self.source, self.kind = source_name, "replay"
        rates = list(dict.fromkeys(device_rates_hz or (device_rate_hz,)))
        native = "/".join(str(r) for r in rates)
        self.rates = f"{native} Hz" if rates == [rate_hz] else f"{native} Hz → {rate_hz} Hz"
        if n_channels > 1:
            self.rates += f" · {n_channels} channels"
        self.refresh()

    def render(self) -> Text:
        badge = Text(" stream-ser ", style="bold reverse")
        if self.source is None:
            line1 = Text.assemble(badge, "  opening the input…")
        else:
            rates = f" · {self.rates}"
            room = self.size.width - badge.cell_len - len(self.kind) - 3 - len(rates)
            source = self.source
            if len(source) > room:
                source = "…" + source[-max(room - 1, 8):]
            line1 = Text.assemble(badge, f"  {self.kind} ", (source, "bold"), rates)
        text = Text("\n").join([line1, Text(self.model)])
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text


class LevelMeter(Widget):
    """One-line input level meter in dBFS with the speech gate, speech state and clipping.

    The level is the loudest 25 ms frame RMS of the last 100 ms (computed on the inference
    thread with the speech gate's own framing), so the gate mark on the meter is exactly the
    threshold the gate applies: frames left of it never count as speech.

    Thread: UI thread.
    """

    DEFAULT_CSS = "LevelMeter { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.level_dbfs: float | None = None
        self.peak_dbfs: float | None = None
        self.gate_dbfs = -50.0
        self.speech: bool | None = None
        self.state = "waiting"  # waiting, live, paused, ended, stalled
        self._stream_s = 0.0
        self._clip_until_s = -1.0
        self.clip_count = 0

    def set_gate(self, gate_dbfs: float) -> None:
        """The speech gate's frame level (dBFS), drawn as a mark on the meter."""
        self.gate_dbfs = gate_dbfs
        self.refresh()

    def set_level(self, end_s: float, level_dbfs: float, peak_dbfs: float, clipped: bool) -> None:
        """A new measurement (from a ``LevelMeasured`` event).

        Args:
            end_s: End of the measured interval on the stream clock (s).
            level_dbfs: Loudest frame RMS (dBFS).
            peak_dbfs: Peak sample (dBFS).
            clipped: Whether the interval clipped; the warning is held for ``CLIP_HOLD_S``.
        """
        self.level_dbfs, self.peak_dbfs, self._stream_s = level_dbfs, peak_dbfs, end_s
        if clipped:
            self.clip_count += 1
            self._clip_until_s = end_s + CLIP_HOLD_S
        self.refresh()

    def set_speech(self, speech: bool | None) -> None:
        """Speech state of the latest window (None: unknown): the engine's speech gate, so with
        ``--gate vad`` (the default) the voice-activity detector's decision and the level's."""
        self.speech = speech
        self.refresh()

    def set_state(self, state: str) -> None:
        """``waiting``, ``live``, ``paused``, ``ended`` or ``stalled`` (no audio arriving)."""
        self.state = state
        self.refresh()

    @property
    def clipping(self) -> bool:
        """Whether the clipping warning is lit."""
        return self._stream_s <= self._clip_until_s

    def _position(self, dbfs: float, width: int) -> float:
        return (min(max(dbfs, METER_FLOOR_DBFS), 0.0) - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS * width

    def render(self) -> Text:
        """``input ▕███▌   │   ▏ -23.4 dBFS  ● speech  CLIP``."""
        width = self.size.width
        level = self.level_dbfs
        value = "   -- dBFS" if level is None else ("  <-60 dBFS" if level < METER_FLOOR_DBFS else f"{level:6.1f} dBFS")
        if self.state == "stalled":
            indicator = Text(" ⚠ no audio ", style="bold black on #f2c12e")
        elif self.state == "paused":
            indicator = Text(f" {PAUSE_GLYPH} paused ", style="bold")
        elif self.speech is None:
            indicator = Text(" … waiting ", style=DIM)
        elif self.speech:
            indicator = Text(" ● speech  ", style="bold #5c9e3a")
        else:
            indicator = Text(" ○ no speech ", style=DIM)  # silence, or (gate "vad") sound that is not a voice
        clip = Text(" CLIP ", style="bold white on #d32f2f") if self.clipping else Text("      ")
        bar_width = max(10, width - 6 - 2 - len(value) - 1 - indicator.cell_len - clip.cell_len - 1)
        filled = 0.0 if level is None else self._position(level, bar_width)
        gate_cell = min(int(self._position(self.gate_dbfs, bar_width)), bar_width - 1)
        bar = Text()
        for i in range(bar_width):
            cell_db = METER_FLOOR_DBFS + (i + 0.5) / bar_width * -METER_FLOOR_DBFS
            colour = "#5c9e3a" if cell_db < METER_YELLOW_DBFS else ("#f2c12e" if cell_db < METER_RED_DBFS else "#e5484d")
            part = filled - i
            if i == gate_cell:
                bar.append("│", Style(color="#000000", bgcolor=colour) if part >= 1 else Style(color="#c0c0c0"))
            elif part >= 1:
                bar.append("█", Style(color=colour))
            elif part > 0:
                bar.append(PARTIAL_BLOCKS[max(1, int(part * 8))], Style(color=colour))
            else:
                bar.append("·", Style(color="#4a4a4a"))
        out = Text.assemble(("input ", "bold"), ("▕", DIM), bar, ("▏", DIM), value, " ", indicator, clip)
        out.no_wrap = True
        out.overflow = "crop"
        return out


class NowPanel(Vertical):
    """The latest window: the emotion large on its colour, the confidence in big digits.

    Thread: UI thread.
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="now-band")
        yield Digits("--", id="now-digits")
        yield Static("", id="now-caption")

    band_text = ""
    """The text of the band (the label in spaced capitals, or a state)."""
    digits_text = "--"
    """The big digits (confidence in %, or ``--``)."""

    def _set(self, band: str, background: str, foreground: str, digits: str, caption: str) -> None:
        self.band_text, self.digits_text = band, digits
        band_widget = self.query_one("#now-band", Static)
        band_widget.styles.background = background
        band_widget.styles.color = foreground
        band_widget.update(Text(band, style="bold"))
        self.query_one("#now-digits", Digits).update(digits)
        self.query_one("#now-caption", Static).update(caption)

    def show_prediction(self, p: Prediction, palette: EmotionPalette) -> None:
        """Show a prediction: its label (spaced capitals on the label's colour) and confidence (%)."""
        when = format_time(p.end_s)
        if p.is_speech and p.label is not None and p.confidence is not None:
            self._set(
                " ".join(p.label.upper()),
                palette.colours[p.label],
                palette.contrast(p.label),
                f"{round(p.confidence * 100):d}%",
                f"confidence · {when}",
            )
        else:
            self._set("no speech", "#3a3a3a", "#b0b0b0", "--", f"speech gate closed · {when}")

    def show_state(self, text: str, caption: str = "") -> None:
        """Show a state instead of a label (waiting, paused, cleared, error)."""
        self._set(text, "#2a2a2a", "#d0d0d0", "--", caption)


class ProbabilityBars(Widget):
    """One bar per class: the smoothed probability, in the class colour, with its letter.

    The largest smoothed value is bold; the latest window's label (the one the "now" panel
    shows) is underlined.

    Thread: UI thread.
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.palette: EmotionPalette | None = None
        self.values: tuple[float, ...] | None = None
        self.current: str | None = None

    def configure(self, palette: EmotionPalette) -> None:
        """Set the labels and colours (once the model is known)."""
        self.palette = palette
        self.refresh()

    def set_values(self, smoothed: tuple[float, ...] | None, current: str | None) -> None:
        """New smoothed probabilities (model order; None: no speech yet) and the latest label."""
        if smoothed is not None:
            self.values = smoothed
        self.current = current
        self.refresh()

    def clear(self) -> None:
        """Empty the bars."""
        self.values = None
        self.current = None
        self.refresh()

    def render(self) -> Text:
        """``A angry    ██████▌      0.71`` per class."""
        if self.palette is None:
            return Text("")
        palette = self.palette
        width = self.size.width
        name_width = max(len(label) for label in palette.labels)
        bar_width = max(4, width - (2 + name_width + 1) - 5)
        best = None if self.values is None else max(range(len(self.values)), key=self.values.__getitem__)
        lines = []
        for i, label in enumerate(palette.labels):
            line = Text(no_wrap=True, overflow="crop")
            line.append(palette.letters[label], palette.block(label))
            name_style = palette.fg(label, bold=(i == best)) + Style(underline=(label == self.current))
            line.append(" ")
            line.append(f"{label:<{name_width}}", name_style)
            line.append(" ")
            if self.values is None:
                line.append("·" * bar_width, Style(color="#4a4a4a"))
                line.append("   --")
            else:
                line.append(hbar(self.values[i], bar_width), palette.fg(label))
                line.append(f" {self.values[i]:4.2f}", Style(bold=(i == best)))
            lines.append(line)
        return Text("\n").join(lines)


class ChannelsPanel(Widget):
    """With several channels: one line per channel, in channel order.

    ``agent       ● ANGRY     62%  trend angry 0.48      -23 dBFS``: the channel's name, whether
    its latest window passed the speech gate, the latest window's emotion on its colour and its
    confidence (``no speech`` when the channel was silent: each channel has its own gate), the
    largest smoothed probability of that channel, and the channel's input level.

    Thread: UI thread.
    """

    DEFAULT_CSS = "ChannelsPanel { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.palette: EmotionPalette | None = None
        self.names: tuple[str, ...] = ()
        self.latest: list[Prediction | None] = []
        self.smoothed: list[tuple[float, ...] | None] = []
        self.levels_dbfs: list[float | None] = []

    def configure(self, palette: EmotionPalette, names: Sequence[str]) -> None:
        """Set the colours and the channels' names (display order = channel order)."""
        self.palette = palette
        self.names = tuple(names)
        self.clear()
        self.styles.height = len(self.names) + 2

    def show_prediction(self, index: int, p: Prediction, smoothed: tuple[float, ...] | None) -> None:
        """The latest window of channel ``index`` and its channel's smoothed probabilities."""
        if 0 <= index < len(self.latest):
            self.latest[index] = p
            if smoothed is not None:
                self.smoothed[index] = smoothed
            self.refresh()

    def set_levels(self, levels_dbfs: Sequence[float]) -> None:
        """Each channel's level (dBFS), from a ``LevelMeasured`` event."""
        for i, level in enumerate(levels_dbfs[: len(self.levels_dbfs)]):
            self.levels_dbfs[i] = level
        self.refresh()

    def clear(self) -> None:
        """Forget the shown values (the ``c`` key)."""
        n = len(self.names)
        self.latest, self.smoothed, self.levels_dbfs = [None] * n, [None] * n, [None] * n
        self.refresh()

    def line_text(self, index: int) -> str:
        """Plain text of channel ``index``'s line (for tests)."""
        return self._line(index, 80).plain

    def _line(self, index: int, width: int) -> Text:
        palette = self.palette
        name_width = min(max((len(n) for n in self.names), default=4), 12)
        name = self.names[index][:name_width]
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{name:<{name_width}} ", "bold")
        p = self.latest[index]
        if p is None:
            line.append("… waiting", DIM)
        elif p.is_speech and p.label is not None and palette is not None:
            line.append("● ", "bold #5c9e3a")
            line.append(f" {p.label.upper():<9}", Style(bgcolor=palette.colours[p.label], color=palette.contrast(p.label), bold=True))
            line.append(f" {round((p.confidence or 0.0) * 100):3d}%")
        else:
            line.append("○ ", DIM)
            line.append(f" {'no speech':<9}", Style(color="#b0b0b0", bgcolor="#3a3a3a"))
            line.append("   --", DIM)
        smoothed = self.smoothed[index]
        if smoothed is not None and palette is not None:
            best = max(range(len(smoothed)), key=smoothed.__getitem__)
            label = palette.labels[best]
            line.append("  trend ", DIM)
            line.append(f"{label:<9}", palette.fg(label))
            line.append(f"{smoothed[best]:4.2f}")
        level = self.levels_dbfs[index]
        if level is not None:
            text = " <-60 dBFS" if level < METER_FLOOR_DBFS else f"{level:6.1f} dBFS"
            pad = max(2, width - line.cell_len - len(text))
            line.append(" " * pad + text, DIM)
        return line

    def render(self) -> Text:
        width = self.size.width or 80
        text = Text("\n").join([self._line(i, width) for i in range(len(self.names))])
        text.no_wrap = True
        return text


class StatusBar(Widget):
    """One line: state, stream time, predictions, latency, overflows, dropped audio, CSV.

    Latency is from the arrival of the audio completing a hop to the display of its
    prediction; overflows are input blocks PortAudio dropped; "dropped" (shown only when not
    zero) is audio the capture ring buffer lost because scoring fell behind.

    Thread: UI thread.
    """

    DEFAULT_CSS = "StatusBar { height: 1; }"

    STATES = {
        "waiting": ("OPENING", "black on #9aa0a6"),
        "live": ("LIVE", "black on #5c9e3a"),
        "calibrating": ("CALIBRATING", "black on #4fa3d1"),
        "paused": ("PAUSED", "black on #f2c12e"),
        "stopping": ("STOPPING", "black on #9aa0a6"),
        "ended": ("ENDED", "black on #9aa0a6"),
        "error": ("ERROR", "bold white on #d32f2f"),
    }

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.state = "waiting"
        self.stats = SessionStats()
        self.latency_ms: float | None = None
        self.csv_path: str | None = None

    def set(
        self,
        state: str | None = None,
        stats: SessionStats | None = None,
        latency_ms: float | None = None,
        csv_path: str | None = None,
    ) -> None:
        """Update any of the shown values (None keeps the current one)."""
        if state is not None:
            self.state = state
        if stats is not None:
            self.stats = stats
        if latency_ms is not None:
            self.latency_ms = latency_ms
        if csv_path is not None:
            self.csv_path = csv_path
        self.refresh()

    def render(self) -> Text:
        """The full wording if it fits the width, else a compact one; the CSV path is shortened
        from the left last."""
        s = self.stats
        badge, style = self.STATES.get(self.state, (self.state.upper(), "reverse"))
        # fixed width, so the layout does not jump with the value
        latency = "  -- ms" if self.latency_ms is None else f"{min(self.latency_ms, 9999):4.0f} ms"
        long = [format_mmss(s.stream_s), f"{s.predictions} predictions", f"latency {latency}", f"overflows {s.overflows}"]
        short = [format_mmss(s.stream_s), f"{s.predictions} pred", f"lat {latency}", f"ovf {s.overflows}"]
        if s.dropped_s > 0:  # audio lost because scoring fell behind capture: rare, so only then
            long.append(f"dropped {s.dropped_s:.1f} s")
            short.append(f"lost {s.dropped_s:.1f} s")
        width = self.size.width
        if self.csv_path is None:
            candidates = [(long, "no CSV"), (short, "no CSV")]
        else:
            rows = f" · {s.rows_written} rows"
            base = self.csv_path.replace("\\", "/").rsplit("/", 1)[-1]
            candidates = [(long, f"CSV {self.csv_path}{rows}"), (short, f"CSV {self.csv_path}{rows}"),
                          (short, f"CSV {base}{rows}"), (short, f"{s.rows_written} rows")]
        for pieces, tail in candidates:
            head = Text.assemble((f" {badge} ", style), " ", " │ ".join(pieces), " │ ")
            if head.cell_len + len(tail) <= width:
                break
        out = Text.assemble(head, tail)
        out.no_wrap = True
        out.overflow = "ellipsis"
        return out
