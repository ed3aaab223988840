"""CPU of ``listen``'s session worker without audio capture: how much of ``listen``'s cost is ours.

    taskset -c 0 python benchmarks/bench_session_worker.py [--seconds 120] [--block-ms 40] [--profile]

Runs exactly the session ``stream-ser listen --no-tui --csv OUT`` runs (``ListenSession`` with the
shipped model, a ``LinePrinter`` to /dev/null and a ``CsvSink``), but its source hands over
``--seconds`` of real speech (the first minutes of the 10-minute benchmark recording of
``bench_analyse.py``, built if missing) in ``--block-ms`` chunks at 16 kHz at once, instead of
waiting for a device. The process CPU time of the second of two runs, over the seconds of audio,
is the worker's own share of one core in the steady state: ring buffer, speech gate, features
and model every hop, smoothing, input level, events and sink writes. What ``bench_live.py``
measures on top of it is capture: PortAudio's callback thread, the ALSA/PulseAudio client, the
thread wake-ups per block and the 48 -> 16 kHz resampling. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench_analyse import build_recording, machine  # noqa: E402


class _HandOver:
    """A source that hands over 16 kHz chunks at once (``stream_ser.audio.Source``, as a device)."""

    name = "mic:benchmark"
    channel_numbers = (0,)
    channel_descriptions = ("mic:benchmark",)
    native_rates_hz = (16000,)
    is_device = True
    failure = None

    def __init__(self, audio: np.ndarray, block: int) -> None:
        from stream_ser.audio import SourceStats

        self._audio, self._block = audio, block
        self.stats = SourceStats()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass

    def wake_at(self, samples: int) -> None:
        pass

    def clock_report(self) -> tuple:
        return ()

    def frames(self):
        for i in range(0, self._audio.size, self._block):
            yield self._audio[i : i + self._block, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of audio per run (default 120)")
    parser.add_argument("--block-ms", type=float, default=40.0, help="chunk size in ms (default 40, as listen)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one run")
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    args = parser.parse_args()

    from stream_ser.model import EmotionModel
    from stream_ser.session import ListenSession, SessionOptions
    from stream_ser.sinks import CsvSink, LinePrinter
    from stream_ser.audio import load_audio

    print(f"machine: {machine()}")
    rec = build_recording(max(10.0, args.seconds / 60), args.data, ROOT.parent / ".cache" / "bench")
    audio = load_audio(rec)[: int(args.seconds * 16000)]
    block = max(1, int(round(args.block_ms * 16)))
    model = EmotionModel()
    tmp = Path(tempfile.mkdtemp(prefix="bench_worker_"))
    devnull = open(os.devnull, "w")

    def run() -> int:
        csv_path = tmp / "t.csv"
        csv_path.unlink(missing_ok=True)
        session = ListenSession(model, lambda: _HandOver(audio, block),
                                [LinePrinter(devnull), CsvSink(csv_path, model.labels)], SessionOptions())
        return session.run(lambda event: None).stats.predictions

    run()  # warm-up: first-call costs are not the steady state
    t0, c0 = time.perf_counter(), time.process_time()
    n = run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    seconds = audio.size / 16000
    print(f"{seconds:.0f} s of audio in {args.block_ms:g} ms chunks, {n} predictions: worker CPU {cpu:.3f} s "
          f"= {100 * cpu / seconds:.2f} % of one core in real time ({wall:.2f} s wall)")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
