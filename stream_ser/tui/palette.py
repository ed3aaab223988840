"""Colours and letters per emotion as Rich styles, shared by every widget of the terminal UI.

One :class:`EmotionPalette` is built from the model's labels when a session starts, so a label
has the same colour in the current-emotion panel, the probability bars and the timeline, and the
same letter in the timeline and the bar legend (letters keep the timeline readable without
colour). The colours and letters themselves come from :mod:`stream_ser.display`, which the plot
uses too; this module adds the Rich styles and the timeline's glyphs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.style import Style

from ..display import assign_letters, emotion_colours

#: Muted text (axis, hints, empty values) in every widget.
DIM = Style(color="#808080")
#: Timeline glyph of a window without speech.
SILENCE_GLYPH = "·"
#: Timeline glyph of a hop that ended while scoring was paused.
PAUSE_GLYPH = "‖"
#: Glyph announcing markers at the end of a timeline row.
MARKER_GLYPH = "◆"


def _contrast_text(hex_colour: str) -> str:
    """Black or white, whichever reads better on ``hex_colour`` (WCAG relative luminance)."""
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    return "#000000" if luminance > 0.18 else "#ffffff"


class EmotionPalette:
    """Colour and letter of every label of a model.

    Args:
        labels: The model's labels in output order.

    Attributes:
        labels: As given.
        letters: Label -> uppercase timeline letter (:func:`stream_ser.display.assign_letters`).
        colours: Label -> hex RGB colour (:func:`stream_ser.display.emotion_colours`).

    Thread: built and used on the UI thread.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.letters = assign_letters(self.labels)
        self.colours = emotion_colours(self.labels)

    def fg(self, label: str, bold: bool = False) -> Style:
        """Text in the label's colour."""
        return Style(color=Color.parse(self.colours[label]), bold=bold)

    def contrast(self, label: str) -> str:
        """Black or white (hex), whichever reads better on the label's colour."""
        return _contrast_text(self.colours[label])

    def block(self, label: str, bold: bool = True) -> Style:
        """The label's colour as background, with black or white text for contrast."""
        colour = self.colours[label]
        return Style(bgcolor=Color.parse(colour), color=Color.parse(_contrast_text(colour)), bold=bold)
