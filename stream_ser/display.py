"""How emotions and times are shown to a person: one colour and one letter per emotion label,
and the three ways a time is written.

Position in the pipeline: beside the consumers. The terminal UI (:mod:`stream_ser.tui`), the
timeline plot (:mod:`stream_ser.plot`), the printed lines (:mod:`stream_ser.sinks`) and the call
summary (:mod:`stream_ser.summary`) all take their colours, letters and time formats from here,
so a label looks the same in the live view and in the plot, and a time reads the same in a
printed line and in the summary. Nothing here imports a UI or plotting library.

Colours
    :data:`EMOTION_COLOURS` gives the usual labels a colour (hex RGB); any other label takes the
    next of :data:`EXTRA_COLOURS` (:func:`emotion_colours`). The colours have to work as text
    and as cell backgrounds on dark and light terminals and as areas on the plot's white page.
    Red and green (angry, disgust) cannot stay apart for every colour-vision deficiency, so the
    UI always puts the label's letter on the colour as well.

    ``surprise`` is cyan, not orange. Orange sits between happy's yellow and angry's red, and
    under deuteranopia (the commonest colour-vision deficiency, simulated with the matrices of
    Machado, Oliveira and Fernandes, IEEE TVCG 2009) it lands next to happy's yellow. Cyan stays
    clear of every other label of the shipped model, with and without the simulation. Its
    nearest colour is calm's teal, and the shipped model has no calm label.

Letters
    :func:`assign_letters` gives each label one letter (``N H S A F D U`` for the shipped
    model). The UI's timeline and its bar legend show these letters, so they read without colour.

Times (seconds on the stream clock)
    * :func:`format_time`: ``mm:ss.s`` (``h:mm:ss.s`` past an hour), used in printed lines, the
      call summary and the UI's captions and messages.
    * :func:`format_mmss`: ``mm:ss`` in whole seconds, used by the UI's status bar and its
      timeline rows, where the width must not change.
    * :func:`format_clock`: ``m:ss`` (``h:mm:ss`` past an hour), with tenths only when not a
      whole second, used for the plot's axis ticks (a matplotlib ``FuncFormatter``).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Colours of the usual emotion labels (hex RGB), matched case-insensitively. They keep distinct
#: hues and a mid lightness, so they read on dark and light terminals and on white paper (see
#: the module docstring for surprise).
EMOTION_COLOURS: dict[str, str] = {
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

#: Colours for labels not in :data:`EMOTION_COLOURS`, used in order (and again from the start
#: past the seventh such label).
EXTRA_COLOURS: tuple[str, ...] = ("#e879f9", "#a3e635", "#fb7185", "#38bdf8", "#fbbf24", "#2dd4bf", "#c084fc")


def emotion_colours(labels: Sequence[str]) -> dict[str, str]:
    """The colour of every label of a model.

    Args:
        labels: The model's labels, in output order.

    Returns:
        Label -> hex RGB (``#rrggbb``): its :data:`EMOTION_COLOURS` entry, else the next of
        :data:`EXTRA_COLOURS` in label order. The same labels always get the same colours.
    """
    extra = iter(EXTRA_COLOURS * (1 + len(labels) // len(EXTRA_COLOURS)))
    return {label: EMOTION_COLOURS.get(label.lower()) or next(extra) for label in labels}


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


def format_time(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` past an hour) for printed lines, summaries and UI captions.

    Args:
        seconds: A time on the stream clock (s); negative values print as 0.

    Returns:
        E.g. ``00:03.5``; past an hour ``1:15:03.0``. Seconds that round up to 60.0 carry into the
        minute (59.97 s is ``01:00.0``).
    """
    m, s = divmod(max(seconds, 0.0), 60.0)
    sec = f"{s:04.1f}"
    if sec == "60.0":
        m, sec = m + 1, "00.0"
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec}" if h else f"{m:02d}:{sec}"


def format_mmss(seconds: float) -> str:
    """``mm:ss`` truncated to whole seconds, minutes not wrapped into hours (``75:03``).

    The UI's status bar and timeline rows use it: the width stays five characters for the first
    100 minutes.

    Args:
        seconds: A time on the stream clock (s); negative values print as ``00:00``.
    """
    total = int(max(seconds, 0.0) + 1e-6)
    return f"{total // 60:02d}:{total % 60:02d}"


def format_clock(seconds: float, _pos: object = None) -> str:
    """Axis tick label ``m:ss`` (``h:mm:ss`` past an hour; tenths when not a whole second).

    Args:
        seconds: A time on the stream clock (s).
        _pos: The tick position matplotlib's ``FuncFormatter`` passes (unused).

    Returns:
        E.g. ``0:05``, ``0:00.5``, ``1:01:01``; ``""`` for a negative time (no tick label left
        of the origin).
    """
    if seconds < 0:
        return ""
    tenths = int(round(seconds * 10))
    whole, frac = divmod(tenths, 10)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    text = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return text + (f".{frac}" if frac else "")
