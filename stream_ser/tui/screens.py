"""The screens over the live view of ``stream-ser listen``: the key help and an input error.

* :data:`KEYS` - the keys and what they do, as ``?`` shows them (``docs/tui.md#keys``).
* :class:`OverlayScreen` - what both share: Esc closes, ``q`` quits.
* :class:`KeysScreen` - the key help with the emotion letters of the model's labels.
* :class:`MessageScreen` - a device error; ``q`` quits with status 1.

Thread: UI thread.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from .palette import DIM, EmotionPalette


class OverlayScreen(ModalScreen[None]):
    """A box over the live view (scoring goes on underneath): Esc closes it, ``q`` and Ctrl-C
    quit the app from it. Subclasses add their own keys (Textual merges the bindings).

    Thread: UI thread.
    """

    BINDINGS = [
        Binding("escape", "dismiss", "Close", show=False),
        Binding("q", "app.quit_session", "Quit", show=False),
        Binding("ctrl+c", "app.quit_session", "Quit", show=False, priority=True),
    ]

    async def action_dismiss(self, result: None = None) -> None:
        """Close the box."""
        self.dismiss(result)


#: The keys, as shown by ``?`` and documented in ``docs/tui.md#keys``.
KEYS: tuple[tuple[str, str], ...] = (
    ("q", "quit: score the last partial hop, close the CSV"),
    ("space", "pause / resume scoring, not capture (‖ on the timeline)"),
    ("m", "marker: a CSV row with label 'marker'; ◆ on the timeline"),
    ("c", "clear the view (timeline, bars); the CSV is untouched"),
    ("?", "show / hide this help"),
    ("↑ ↓ PgUp PgDn", "scroll the timeline back (End follows again)"),
)


class KeysScreen(OverlayScreen):
    """The key help, over the live screen (scoring goes on underneath).

    Thread: UI thread.
    """

    BINDINGS = [
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("enter", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    KeysScreen { align: center middle; }
    KeysScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    KeysScreen > Vertical > Static { width: 100%; }
    """

    #: Columns of the help's text (the box, less its border and padding); the legend of the
    #: emotion letters breaks into lines of at most this width.
    TEXT_WIDTH = 72

    def __init__(self, palette: EmotionPalette | None = None) -> None:
        super().__init__()
        self.palette = palette

    def compose(self) -> ComposeResult:
        text = Text()
        for key, what in KEYS:
            text.append(f"{key:>13}  ", "bold")
            text.append(what + "\n")
        if self.palette is not None:
            text.append("\n")
            used = 0
            for label in self.palette.labels:
                width = 3 + len(label) + 3  # " X " + " label  "
                if used and used + width > self.TEXT_WIDTH:
                    text.append("\n")
                    used = 0
                text.append(f" {self.palette.letters[label]} ", self.palette.block(label))
                text.append(f" {label}  ")
                used += width
            text.append("\n")
        text.append("\nEsc or ? closes this help.", DIM)
        with Vertical() as box:
            box.border_title = "keys"
            yield Static(text)


class MessageScreen(OverlayScreen):
    """A message over the screen (a device error); Esc closes it, ``q`` quits the app.

    Thread: UI thread.
    """

    DEFAULT_CSS = """
    MessageScreen { align: center middle; }
    MessageScreen > Vertical {
        width: 70; height: auto; border: heavy $error; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(Text(self.body))
            yield Static(Text("q quits (exit status 1) · Esc shows the session", style=DIM))
