"""Soak test of the live path: hours of audio through capture -> ring buffer -> engine -> sinks.

A long recording is built from the committed real clips (tests/fixtures/) separated by pauses,
then replayed through exactly what ``stream-ser listen --input FILE --fast`` uses (the
FileInputStream calling the capture callback, MicrophoneSource's ring buffer and resampler, the
Engine, the CSV sink and the line printer), without real-time pacing but with back-pressure.
Prints RSS growth, prediction count against the count the hop implies, overflows and dropped
frames.

    python benchmarks/soak.py --minutes 60

``tests/test_soak.py`` runs the 5-minute version in CI.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def make_recording(path: Path, minutes: float, sample_rate_hz: int = 16000) -> float:
    """Write a WAV of real clips separated by 1 s pauses, block by block; returns its length (s)."""
    import soundfile as sf

    from stream_ser.audio import load_audio

    clips = [load_audio(p, sample_rate_hz) for p in sorted(FIXTURES.glob("*.flac"))]
    pause = np.zeros(sample_rate_hz, np.float32)
    target = int(minutes * 60 * sample_rate_hz)
    written = 0
    with sf.SoundFile(path, "w", samplerate=sample_rate_hz, channels=1, subtype="PCM_16") as f:
        i = 0
        while written < target:
            block = np.concatenate([clips[i % len(clips)], pause])[: target - written]
            f.write(block)
            written += block.size
            i += 1
    return written / sample_rate_hz


@dataclass(frozen=True)
class SoakResult:
    """Figures of one soak run (sizes in MB, times in s)."""

    audio_s: float
    wall_s: float
    predictions: int
    expected_predictions: int
    speech_predictions: int
    overflows: int
    dropped_frames: int
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    csv_rows: int

    @property
    def rss_growth_mb(self) -> float:
        """Peak RSS after the first 10 % of the run minus RSS at that point."""
        return self.rss_peak_mb - self.rss_start_mb


def run_soak(recording: Path, csv_path: Path) -> SoakResult:
    """Replay ``recording`` through the live path; see the module docstring."""
    import soundfile as sf

    from stream_ser.engine import Engine, window_ends
    from stream_ser.model import EmotionModel
    from stream_ser.sinks import CsvSink, LinePrinter
    from stream_ser.sources import MicrophoneSource

    model = EmotionModel()
    cfg = model.feature_config
    n_samples = sf.info(str(recording)).frames
    expected = len(window_ends(n_samples, cfg.hop_samples))
    source = MicrophoneSource(replay=recording, realtime=False)
    engine = Engine(model, source=source.name)
    sinks = [CsvSink(csv_path, model.labels, force=True), LinePrinter(io.StringIO())]
    samples: list[tuple[float, float]] = []  # (audio seconds, RSS MB)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append((engine.samples_seen / cfg.sample_rate_hz, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    n = speech = 0
    t0 = time.monotonic()
    sampler.start()
    try:
        source.start()
        for chunk in source.chunks():
            for p in engine.push(chunk):
                n += 1
                speech += p.is_speech
                for s in sinks:
                    s.write(p)
        for p in engine.flush():
            n += 1
            speech += p.is_speech
            for s in sinks:
                s.write(p)
    finally:
        done.set()
        sampler.join()
        source.close()
        for s in sinks:
            s.close()
    wall = time.monotonic() - t0
    audio_s = n_samples / cfg.sample_rate_hz
    after_warmup = [r for a, r in samples if a >= 0.1 * audio_s] or [rss_mb()]
    return SoakResult(
        audio_s=audio_s,
        wall_s=wall,
        predictions=n,
        expected_predictions=expected,
        speech_predictions=speech,
        overflows=source.overflows,
        dropped_frames=source.dropped_frames,
        rss_start_mb=after_warmup[0],
        rss_peak_mb=max(after_warmup),
        rss_end_mb=after_warmup[-1],
        csv_rows=sinks[0].rows_written,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "soak.wav"
        audio_s = make_recording(rec, args.minutes)
        print(f"recording: {audio_s / 60:.1f} min of real clips with 1 s pauses")
        r = run_soak(rec, Path(tmp) / "soak.csv")
    print(f"wall time {r.wall_s:.1f} s ({r.audio_s / r.wall_s:.0f}x real time)")
    print(f"predictions {r.predictions} (expected {r.expected_predictions}), speech {r.speech_predictions}, CSV rows {r.csv_rows}")
    print(f"overflows {r.overflows}, dropped frames {r.dropped_frames}")
    print(f"RSS after warm-up {r.rss_start_mb:.1f} MB, peak {r.rss_peak_mb:.1f} MB, end {r.rss_end_mb:.1f} MB, growth {r.rss_growth_mb:.1f} MB")


if __name__ == "__main__":
    main()
