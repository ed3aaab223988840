"""Make the timeline plot shown in ``docs/usage.md`` (section "Plots"), ``docs/timeline.png``.

The recording is real speech from the corpora (``../shared/data`` or ``$STREAM_SER_DATA``):
RAVDESS actor 21, a test speaker the shipped model never heard, saying "Kids are talking by the
door" as neutral, happy, sad, angry, fearful, disgusted and surprised (strong intensity, first
repetition), in that order, with 1 s of silence after each. It is scored with the shipped model
through ``stream-ser analyse --csv`` and drawn with ``stream-ser plot``, exactly as a user would.

Usage (after replacing the shipped model, run it again so the picture matches the model)::

    python docs/make_timeline.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAM_SER_DATA", ROOT.parent / "shared" / "data"))
# RAVDESS codes: emotion 01 neutral (normal intensity only), 03 happy, 04 sad, 05 angry,
# 06 fearful, 07 disgust, 08 surprised; intensity 02 strong; statement 01; repetition 01; actor 21
CLIPS = ["03-01-01-01-01-01-21"] + [f"03-01-{e}-02-01-01-21" for e in ("03", "04", "05", "06", "07", "08")]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from stream_ser.cli import main as cli

    parts = []
    for stem in CLIPS:
        x, rate = sf.read(DATA / "ravdess" / "Actor_21" / f"{stem}.flac", dtype="float32")
        if rate != 16000:
            raise SystemExit(f"{stem}: expected the 16 kHz copy of RAVDESS, got {rate} Hz")
        parts += [x, np.zeros(rate, dtype=np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "actor21_seven_emotions.flac"
        sf.write(audio, np.concatenate(parts), 16000)
        csv_path = Path(tmp) / "timeline.csv"
        os.chdir(tmp)  # so the panel title is the bare file name
        status = cli(["analyse", audio.name, "--csv", csv_path.name, "-q"])
        if status:
            return status
        return cli([
            "plot", csv_path.name, "-o", str(ROOT / "docs" / "timeline.png"), "--force", "-q",
            "--title", "RAVDESS actor 21: neutral, happy, sad, angry, fearful, disgust, surprised (1 s pauses)",
        ])


if __name__ == "__main__":
    sys.exit(main())
