"""Text that is safe to show on a terminal: file names, device names and labels escaped.

File names, device names, channel names and a model's labels come from outside; printed raw, a
name holding a newline could forge an output line and one holding an escape sequence could move
the cursor or clear the screen. Every human-readable line stream-ser prints (results, summaries,
errors, log messages) goes through :func:`printable`; CSV and JSON lines quote such characters
themselves.
"""

from __future__ import annotations

import re

#: Characters escaped by :func:`printable`: C0 and C1 control characters (escape, newline,
#: carriage return, tab, backspace, ...) and DEL, the Unicode line and paragraph separators, the
#: bidirectional formatting characters (which reorder what follows them on screen) and lone
#: surrogates (bytes of a file name that are not UTF-8, as Python decodes them).
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    r"""``text`` (converted with ``str``) with its unprintable characters escaped as Python writes
    them in a string literal: ``\n``, ``\t``, ``\x1b``, ``\u202e``; a byte of a file name that is
    not UTF-8 as ``\xff``. Other text, non-ASCII letters included, is returned unchanged.
    """
    s = str(text)
    return UNPRINTABLE.sub(_escape, s) if UNPRINTABLE.search(s) else s
