"""Make the README's terminal UI screenshot, ``docs/tui.png``.

The audio is real speech from the corpora (``../shared/data`` or ``$STREAM_SER_DATA``): RAVDESS
actor 21, a test speaker the shipped model never heard, saying both statements as neutral, happy,
sad, angry, fearful, disgusted and surprised (strong intensity, first repetition), with 0.8 s of
silence after each clip, about 66 s in all. It is replayed at real-time pace through the live
path (``MicrophoneSource(replay=...)``, as ``stream-ser listen --input`` does) into the app at
80x24 with a CSV; at 0:20 the script presses ``m`` (a marker), at 0:33 ``space`` and at 0:35
``space`` again (a 2 s pause), and takes the screenshot at about 0:58 while someone speaks.

Textual saves SVG; the PNG is made with cairosvg (``pip install cairosvg``) or, failing that,
``rsvg-convert`` (``apt-get install librsvg2-bin``).

Usage (takes about a minute; run it again after replacing the shipped model)::

    python docs/make_tui_screenshot.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAM_SER_DATA", ROOT.parent / "shared" / "data"))
#: RAVDESS codes emotion-intensity-statement: 01 neutral (normal intensity only), 03 happy,
#: 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised; intensity 02 strong; actor 21.
CLIPS = ["01-01-01", "03-02-01", "03-02-02", "04-02-01", "04-02-02", "05-02-01", "05-02-02", "06-02-01",
         "07-02-01", "07-02-02", "08-02-01", "08-02-02", "01-01-02", "03-02-01"]
GAP_S = 0.8
SHOT_AT_S = 58.0


def make_audio(path: Path) -> None:
    parts = []
    for code in CLIPS:
        emotion, intensity, statement = code.split("-")
        x, rate = sf.read(DATA / "ravdess" / "Actor_21" / f"03-01-{emotion}-{intensity}-{statement}-01-21.flac",
                          dtype="float32")
        if rate != 16000:
            raise SystemExit(f"{code}: expected the 16 kHz copy of RAVDESS, got {rate} Hz")
        parts += [x, np.zeros(int(GAP_S * rate), dtype=np.float32)]
    sf.write(path, np.concatenate(parts), 16000)


async def shoot(svg: Path) -> None:
    from stream_ser.model import EmotionModel
    from stream_ser.sinks import CsvSink
    from stream_ser.sources import MicrophoneSource
    from stream_ser.tui import ListenApp, ListenSession
    from stream_ser.tui.widgets import LevelMeter, NowPanel, StatusBar

    model = EmotionModel()
    session = ListenSession(
        model,
        lambda: MicrophoneSource(sample_rate_hz=16000, replay="session.flac", realtime=True),
        [CsvSink("session.csv", model.labels, force=True)],
    )
    app = ListenApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)

        async def until(t_s: float) -> None:
            while status.stats.stream_s < t_s:
                await pilot.pause(0.05)

        await until(20.3)
        await pilot.press("m")
        await until(33.2)
        await pilot.press("space")
        await until(35.2)
        await pilot.press("space")
        await until(SHOT_AT_S)
        while app.query_one(NowPanel).band_text in ("no speech", "resumed") or (
            app.query_one(LevelMeter).level_dbfs or -100.0
        ) < -35.0:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.save_screenshot(svg.name, path=str(svg.parent))
        await pilot.press("q")
    session.join(10)


def to_png(svg: Path, png: Path) -> None:
    try:
        import cairosvg
    except ImportError:
        if shutil.which("rsvg-convert") is None:
            raise SystemExit("install cairosvg (pip) or rsvg-convert (apt-get install librsvg2-bin)") from None
        subprocess.run(["rsvg-convert", "-w", "1000", "-o", str(png), str(svg)], check=True)
    else:
        cairosvg.svg2png(url=str(svg), write_to=str(png), output_width=1000)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    png = ROOT / "docs" / "tui.png"
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # so the header shows the bare file names
        make_audio(Path(tmp) / "session.flac")
        svg = Path(tmp) / "tui.svg"
        asyncio.run(shoot(svg))
        to_png(svg, png)
    print(f"wrote {png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
