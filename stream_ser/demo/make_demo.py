"""Build the demo recording ``stream_ser/demo/demo.flac`` from the RAVDESS corpus.

The demo is seven RAVDESS speech clips, one per emotion the shipped model knows (neutral, happy,
sad, angry, fear, surprise, disgust), by three actors, each trimmed to its speech (leading and
trailing silence cut, :data:`MARGIN_S` kept on either side) and joined with :data:`PAUSE_S` of
digital silence between clips. ``stream-ser listen --demo`` replays it; ``ATTRIBUTION.md`` beside
it credits the corpus and states the licence.

Run from the repository (the corpus is the project's shared copy, 16 kHz mono 16-bit FLAC)::

    python -m stream_ser.demo.make_demo --data ../shared/data

It writes the same samples every time; ``tests/test_demo.py`` rebuilds them from the corpus and
compares them with the shipped file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: The clips, in playing order: ``(RAVDESS file stem, emotion)``. Actors 21 (male), 22 and 24
#: (female) are test speakers of the committed split (``training/splits/si_v1.json``), so the
#: shipped model never saw them. Strong intensity for the emotions (neutral has only normal).
#: Among those speakers' clips, ones the shipped model labels correctly when scored on their own
#: were picked, so the demo shows the labels change; it is no measure of accuracy.
CLIPS: tuple[tuple[str, str], ...] = (
    ("03-01-01-01-01-01-22", "neutral"),
    ("03-01-03-02-01-01-21", "happy"),
    ("03-01-04-02-01-02-22", "sad"),
    ("03-01-05-02-01-01-24", "angry"),
    ("03-01-06-02-01-01-22", "fear"),
    ("03-01-08-02-01-02-21", "surprise"),
    ("03-01-07-02-01-01-24", "disgust"),
)
#: RAVDESS emotion codes (third field of a file name).
EMOTION_CODES = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear", "07": "disgust",
                 "08": "surprise"}
#: Sample rate of the corpus copy and of the demo (Hz).
SAMPLE_RATE_HZ = 16000
#: Silence between two clips (s).
PAUSE_S = 1.0
#: Audio kept before the first and after the last loud frame of each clip (s).
MARGIN_S = 0.15
#: A 25 ms frame (10 ms hop) counts as speech when its RMS is within this many dB of the clip's
#: loudest frame.
TRIM_DB = 30.0
#: Where the demo is written.
OUT = Path(__file__).with_name("demo.flac")


def clip_path(data: Path, stem: str) -> Path:
    """The corpus file of a RAVDESS stem (``data/ravdess/Actor_AA/<stem>.flac``)."""
    return data / "ravdess" / f"Actor_{stem.split('-')[6]}" / f"{stem}.flac"


def trim(x: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """The clip from :data:`MARGIN_S` before its first to :data:`MARGIN_S` after its last frame
    within :data:`TRIM_DB` of its loudest frame.

    Args:
        x: int16 samples ``(n,)``.
        sample_rate_hz: Their rate (Hz).

    Returns:
        A slice of ``x`` (int16).
    """
    frame, hop = int(0.025 * sample_rate_hz), int(0.010 * sample_rate_hz)
    f = x.astype(np.float64)
    n = max(1, 1 + (len(f) - frame) // hop)
    rms = np.array([np.sqrt(np.mean(f[i * hop : i * hop + frame] ** 2) + 1e-12) for i in range(n)])
    db = 20 * np.log10(rms / rms.max())
    loud = np.flatnonzero(db > -TRIM_DB)
    margin = int(round(MARGIN_S * sample_rate_hz))
    start = max(0, loud[0] * hop - margin)
    end = min(len(x), loud[-1] * hop + frame + margin)
    return x[start:end]


def build(data: Path) -> tuple[np.ndarray, list[tuple[str, str, float, float]]]:
    """The demo's samples and where each clip sits.

    Args:
        data: The corpus folder (holding ``ravdess/``).

    Returns:
        ``(samples, placements)``: int16 ``(n,)`` at :data:`SAMPLE_RATE_HZ`, and per clip
        ``(stem, emotion, start_s, end_s)`` in the demo.

    Raises:
        FileNotFoundError: If a clip is missing.
        ValueError: If a clip is not 16 kHz mono, or its name does not code its emotion.
    """
    import soundfile as sf

    pause = np.zeros(int(round(PAUSE_S * SAMPLE_RATE_HZ)), dtype=np.int16)
    parts: list[np.ndarray] = []
    placements = []
    at = 0
    for i, (stem, emotion) in enumerate(CLIPS):
        if EMOTION_CODES[stem.split("-")[2]] != emotion:
            raise ValueError(f"{stem} is not a {emotion} clip")
        path = clip_path(data, stem)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such clip (give the shared data folder with --data)")
        x, sr = sf.read(path, dtype="int16")
        if sr != SAMPLE_RATE_HZ or x.ndim != 1:
            raise ValueError(f"{path}: expected 16 kHz mono, got {sr} Hz, shape {x.shape}")
        if i:
            parts.append(pause)
            at += len(pause)
        clip = trim(x)
        parts.append(clip)
        placements.append((stem, emotion, at / SAMPLE_RATE_HZ, (at + len(clip)) / SAMPLE_RATE_HZ))
        at += len(clip)
    return np.concatenate(parts), placements


def main(argv: list[str] | None = None) -> int:
    """Write the demo (``--out``, default ``stream_ser/demo/demo.flac``) and print where each
    clip sits; returns the exit status."""
    import soundfile as sf

    parser = argparse.ArgumentParser(description="Build stream-ser's demo recording from the RAVDESS corpus.")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="corpus folder (holds ravdess/)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output FLAC (default: {OUT})")
    args = parser.parse_args(argv)
    try:
        samples, placements = build(args.data)
    except (OSError, ValueError) as exc:
        print(f"make_demo: error: {exc}", file=sys.stderr)
        return 1
    sf.write(args.out, samples, SAMPLE_RATE_HZ, subtype="PCM_16", format="FLAC")
    for stem, emotion, start, end in placements:
        print(f"{start:6.2f}-{end:6.2f} s  {emotion:9} {stem}")
    print(f"wrote {args.out}: {len(samples) / SAMPLE_RATE_HZ:.2f} s, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
