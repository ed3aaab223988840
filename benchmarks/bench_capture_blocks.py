"""CPU of capture alone (no model) for several capture block sizes, on the virtual microphone.

    taskset -c 0 python benchmarks/bench_capture_blocks.py [--blocks 0.02 0.04 0.1] [--seconds 20]

For each block size a :class:`stream_ser.sources.MicrophoneSource` on the default input (the
``tests/virtual_mic.sh`` null-sink monitor, real clips playing into it) is started and drained
for ``--seconds``; the script prints the CPU of this process (every thread: PortAudio callback,
sound-server client, the consumer with resampling to 16 kHz) as a percentage of one core in the
steady state (after the first chunk), and the start-up time and CPU before the first chunk. This
is the figure behind the default capture block (``stream_ser.audio.DEFAULT_BLOCK_S``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_live import DEFAULT_DATA, machine, speech_on_virtual_mic


def measure(block_s: float, seconds: float) -> tuple[float, float, float]:
    """(s to the first chunk, CPU s before it, steady-state CPU % of one core) for one block size."""
    from stream_ser.sources import MicrophoneSource

    src = MicrophoneSource(block_s=block_s)
    t0, c0 = time.monotonic(), time.process_time()
    src.start()
    first = None
    try:
        for _ in src.frames():
            if first is None:
                first = (time.monotonic(), time.process_time())
            if time.monotonic() - first[0] > seconds:
                break
    finally:
        src.stop()
        src.close()
    t2, c2 = time.monotonic(), time.process_time()
    return first[0] - t0, first[1] - c0, 100.0 * (c2 - first[1]) / (t2 - first[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=float, nargs="+", default=[0.02, 0.04, 0.1], help="block sizes (s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state seconds per block size")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with speech_on_virtual_mic(60.0, args.data, prefix="bench_capture_"):
        print(f"{'block ms':>8s} {'first chunk s':>13s} {'CPU s before':>12s} {'steady CPU %':>12s}")
        for block in args.blocks:
            wait, cpu, pct = measure(block, args.seconds)
            print(f"{block * 1e3:8.0f} {wait:13.2f} {cpu:12.2f} {pct:12.2f}")

if __name__ == "__main__":
    main()
