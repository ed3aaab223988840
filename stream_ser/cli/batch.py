"""``stream-ser batch``: score an archive of recordings on Ray Data, resumably.

The work is :func:`stream_ser.batch.run_batch`; this module checks the options, reports each
recording that failed and the progress on stderr, and sets the exit status: 0 when every
recording is scored, 1 when some failed (their rows in ``summary.parquet`` say why), 2 when the
batch could not start (bad options, no input, the output folder, the model, no Ray cluster at
the address, the ``batch`` extra missing), 128 + the signal when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..text import printable
from .common import _checked_model, _error, _names_problem

log = logging.getLogger("stream_ser")

#: Seconds between two progress lines on stderr.
PROGRESS_EVERY_S = 10.0


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import STATUS_OK, BatchError, BatchOptions, read_inputs, run_batch

    if _checked_model(args, _names_problem(args)) is None:  # the model and --hop, before Ray starts
        return 2
    try:
        recordings = read_inputs(args.inputs)
    except BatchError as exc:
        _error(str(exc))
        return 2
    options = BatchOptions(model=args.model, threads=args.threads, hop_s=args.hop, gate=args.gate,
                           adapt=args.adapt, channels=args.channels,
                           channel_names=args.channel_names, csv=args.write_csv)
    done = [0, 0]  # recordings finished, of them failed
    last = [time.monotonic()]

    def on_row(row: dict) -> None:
        done[0] += 1
        if row.get("status") != STATUS_OK:
            done[1] += 1
            _error(str(row.get("error")))
        now = time.monotonic()
        if not args.quiet and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            print(f"stream-ser: batch: {done[0]} recording(s) scored ({done[1]} failed) so far ...", file=sys.stderr,
                  flush=True)

    if not args.quiet:
        print(printable(f"stream-ser: batch: {len(recordings)} recording(s), output in {args.out}; starting Ray ..."),
              file=sys.stderr, flush=True)
    try:
        report = run_batch(recordings, args.out, options, workers=args.workers, ray_address=args.ray_address,
                           redo=args.redo, on_row=on_row, verbose=args.verbose > 0)
    except (BatchError, ConnectionError) as exc:
        _error(str(exc))
        return 2
    if not args.quiet or report.failed or report.interrupted:
        speed = f" ({report.audio_s / report.run_s:.0f}x real time)" if report.run_s > 0 and report.audio_s else ""
        ray = (f" on {report.workers} worker(s) in {report.run_s:.1f} s{speed}, Ray started in {report.ray_init_s:.1f} s"
               if report.workers else "")
        missing = len(recordings) - len(report.rows)
        print(printable(
            f"stream-ser: batch: {len(recordings)} recording(s): {report.scored} scored now ({report.failed} failed), "
            f"{report.skipped} done before" + (f", {missing} not reached" if missing else "") +
            f"; {report.audio_s:.1f} s of audio{ray}. Summary: {args.out.rstrip('/')}/summary.parquet"), file=sys.stderr)
    if report.interrupted:
        print("stream-ser: interrupted; every recording finished so far is committed: run the same command again to go "
              "on", file=sys.stderr)
        return 130
    return 1 if report.failed else 0
