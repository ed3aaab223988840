"""Colours and letters per emotion, shared by every widget of the terminal UI.

One :class:`EmotionPalette` is built from the model's labels when a session starts, so a label
has the same colour in the current-emotion panel, the probability bars and the timeline, and the
same letter in the timeline and the bar legend (letters keep the timeline readable without
colour). Labels come from the model's metadata; the names below only choose nicer colours for
the common ones, and any other label gets the next colour of :data:`EXTRA_COLOURS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.style import Style

#: Colours of the usual emotion labels (hex RGB). Chosen to stay distinct from each other on dark
#: and light terminals and for the common colour-vision deficiencies as far as seven hues allow;
#: the letters carry the meaning anyway.
KNOWN_COLOURS: dict[str, str] = {
    "neutral": "#9aa0a6",
    "calm": "#5fb3a1",
    "happy": "#f2c12e",
    "sad": "#4a7fe0",
    "angry": "#e5484d",
    "fear": "#a36bd9",
    "disgust": "#5c9e3a",
    "surprise": "#22b8cf",
    "boredom": "#a0785a",
}

#: Colours for labels not in :data:`KNOWN_COLOURS`, used in order.
EXTRA_COLOURS: tuple[str, ...] = ("#e879f9", "#a3e635", "#fb7185", "#38bdf8", "#fbbf24", "#2dd4bf", "#c084fc")

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


def assign_letters(labels: Sequence[str]) -> dict[str, str]:
    """A distinct uppercase letter (or digit) per label, in model order.

    Each label takes its first letter if still free, else its next free letter, else the first
    free letter of the alphabet: ``neutral happy sad angry fear disgust surprise`` give
    ``N H S A F D U``.

    Args:
        labels: The model's labels.

    Returns:
        Label -> one-character code, unique case-insensitively.
    """
    used: set[str] = set()
    out: dict[str, str] = {}
    spare = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for label in labels:
        candidates = [c.upper() for c in label if c.isalnum()] + list(spare)
        letter = next(c for c in candidates if c not in used)
        used.add(letter)
        out[label] = letter
    return out


class EmotionPalette:
    """Colour and letter of every label of a model.

    Args:
        labels: The model's labels in output order.

    Attributes:
        labels: As given.
        letters: Label -> uppercase timeline letter (:func:`assign_letters`).
        colours: Label -> hex RGB colour.

    Thread: built and used on the UI thread.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.letters = assign_letters(self.labels)
        extra = iter(EXTRA_COLOURS * (1 + len(self.labels) // len(EXTRA_COLOURS)))
        self.colours = {label: KNOWN_COLOURS.get(label.lower()) or next(extra) for label in self.labels}

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
