"""The demo recording that ``stream-ser listen --demo`` replays.

``demo.flac`` (21 s, 16 kHz mono FLAC) is seven RAVDESS clips, one per emotion of the shipped
model, by three actors, with 1 s pauses; ``make_demo.py`` builds it from the corpus and
``ATTRIBUTION.md`` credits the corpus. Unlike the code, the recording is licensed CC BY-NC-SA 4.0
(as RAVDESS is).
"""

from __future__ import annotations

from pathlib import Path

#: File name of the demo recording inside this package.
DEMO_FILE_NAME = "demo.flac"


def demo_recording() -> Path:
    """The installed demo recording's path.

    Returns:
        The path of ``stream_ser/demo/demo.flac`` (16 kHz mono 16-bit FLAC, about 21 s).

    Raises:
        FileNotFoundError: If the installation lacks it (a package built without its data
            files), naming the path looked for.
    """
    path = Path(__file__).resolve().with_name(DEMO_FILE_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the demo recording is missing from this installation")
    return path
