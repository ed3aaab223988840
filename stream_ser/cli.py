"""The ``stream-ser`` command line: ``listen``, ``analyse``, ``devices``, ``info``.

Exit status: 0 success; 1 a file or device failed (analyse goes on with the other files and
exits 1 at the end); 2 bad arguments, unusable model or unwritable output (nothing was
processed). Ctrl-C and SIGTERM stop cleanly: the current row is finished, the last partial hop is
scored, the CSV is closed complete, and the exit status is 0 for ``listen`` (stopping is how a
listening session normally ends) and 130/143 for ``analyse`` (interrupted work).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import numpy as np

from . import __version__

log = logging.getLogger("stream_ser")

EXAMPLES = """\
examples:
  stream-ser listen                          score the default microphone, one line per hop
  stream-ser listen --csv session.csv        ... and log the timeline to a CSV file
  stream-ser listen --input clip.wav         replay a file at real-time pace through the live path
  stream-ser analyse calls/*.wav --csv t.csv score recordings faster than real time
  stream-ser devices                         list input devices (index, name, channels, rate)
  stream-ser info                            show the model's labels, feature recipe and provenance
"""


class _Stop:
    """Turns SIGINT/SIGTERM into a stop request (a second signal exits at once)."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.event = threading.Event()
        self.signum = 0
        self._on_stop = on_stop
        self._old: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise SystemExit(128 + signum)
        self.signum = signum
        self.event.set()
        if self._on_stop is not None:
            self._on_stop()

    def __enter__(self) -> "_Stop":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def _warm_up(config) -> None:
    """Run the feature recipe once so the first hop is not slow; say why if it takes a while
    (librosa compiles numba code on the first run after installation: 30-60 s)."""
    from .features import window_features

    timer = threading.Timer(
        4.0,
        lambda: print(
            "stream-ser: preparing the feature pipeline (the first run after installing compiles "
            "librosa's numba code; this can take a minute)...",
            file=sys.stderr,
            flush=True,
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        t = np.arange(config.window_samples, dtype=np.float32) / config.sample_rate_hz
        window_features((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), config)
    finally:
        timer.cancel()


def _load_model(args: argparse.Namespace):
    from .model import EmotionModel

    model = EmotionModel(args.model, num_threads=args.threads)
    log.info("model %s: labels %s", model.path, ", ".join(model.labels))
    return model


def _open_csv(args: argparse.Namespace, labels: tuple[str, ...]):
    from .sinks import CsvSink

    if not args.csv:
        return None
    return CsvSink(args.csv, labels, force=args.force, append=args.append)


def cmd_devices(args: argparse.Namespace) -> int:
    from .sources import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no input devices found", file=sys.stderr)
        return 1
    print(f"{'':2}{'index':>5}  {'channels':>8}  {'rate_hz':>8}  {'host API':12}  name")
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark:2}{d.index:>5}  {d.max_input_channels:>8}  {d.default_sample_rate_hz:>8.0f}  {d.hostapi[:12]:12}  {d.name}")
    print("(* = default input; choose one with --device INDEX or --device 'name substring')")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    model = _load_model(args)
    print(f"model:    {model.path}")
    print(f"labels:   {', '.join(model.labels)}")
    print(f"features: {json.dumps(model.feature_config.to_dict())}")
    print(f"provenance: {json.dumps(model.metadata.provenance, indent=2)}")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from .engine import Engine, summarize
    from .sinks import LinePrinter, format_clip
    from .sources import AudioSourceError, FileSource

    model = _load_model(args)
    csv_sink = _open_csv(args, model.labels)
    sinks: list = ([csv_sink] if csv_sink else []) + ([LinePrinter()] if args.timeline else [])
    _warm_up(model.feature_config)
    failed: list[str] = []
    sr = model.feature_config.sample_rate_hz
    with _Stop() as stop:

        def until_stopped(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            for chunk in chunks:
                yield chunk
                if stop.event.is_set():
                    return

        try:
            for path in args.files:
                if stop.event.is_set():
                    break
                try:
                    source = FileSource(path, sr)
                    engine = Engine(model, hop_s=args.hop, source=source.name)
                    preds = []
                    for p in engine.run(until_stopped(source.chunks())):
                        preds.append(p)
                        for sink in sinks:
                            sink.write(p)
                    result = summarize(preds, source.name, engine.samples_seen / sr, model.labels)
                    print(format_clip(result), flush=True)
                except AudioSourceError as exc:
                    print(f"stream-ser: error: {exc}", file=sys.stderr, flush=True)
                    failed.append(str(path))
        finally:
            for sink in sinks:
                sink.close()
    if failed:
        print(f"stream-ser: {len(failed)} of {len(args.files)} file(s) failed: {', '.join(failed)}", file=sys.stderr)
    if stop.event.is_set():
        print("stream-ser: interrupted; the CSV holds every row written so far", file=sys.stderr)
        return 128 + stop.signum
    return 1 if failed else 0


def cmd_listen(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .sinks import LinePrinter
    from .sources import MicrophoneSource

    model = _load_model(args)
    cfg = model.feature_config
    csv_sink = _open_csv(args, model.labels)
    try:
        _warm_up(cfg)
        source = MicrophoneSource(
            device=args.device, sample_rate_hz=cfg.sample_rate_hz, replay=args.input, realtime=not args.fast
        )
    except BaseException:
        if csv_sink:
            csv_sink.close()
        raise
    engine = Engine(model, hop_s=args.hop, source=source.name)
    sinks: list = [LinePrinter()] + ([csv_sink] if csv_sink else [])
    n = 0
    max_samples = int(args.duration * cfg.sample_rate_hz) if args.duration else None
    print(
        f"stream-ser: listening to {source.name} ({source.device_sample_rate_hz} Hz -> {cfg.sample_rate_hz} Hz), "
        f"model {model.name} [{', '.join(model.labels)}], hop {engine.hop_s:g} s, window {cfg.window_s:g} s. "
        "Ctrl-C to stop.",
        file=sys.stderr,
        flush=True,
    )

    def emit(p) -> None:
        nonlocal n
        n += 1
        for sink in sinks:
            sink.write(p)

    with _Stop(on_stop=source.stop):
        try:
            source.start()
            for chunk in source.chunks():
                if max_samples is not None:
                    chunk = chunk[: max(0, max_samples - engine.samples_seen)]
                for p in engine.push(chunk):
                    emit(p)
                if max_samples is not None and engine.samples_seen >= max_samples:
                    source.stop()
            for p in engine.flush():
                emit(p)
        finally:
            source.close()
            for sink in sinks:
                sink.close()
    extra = f", CSV {args.csv} ({csv_sink.rows_written} rows)" if csv_sink else ""
    print(
        f"stream-ser: stopped after {engine.samples_seen / cfg.sample_rate_hz:.1f} s of audio: {n} predictions, "
        f"{source.overflows} input overflows, {source.dropped_frames} dropped frames{extra}",
        file=sys.stderr,
    )
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="stream-ser",
        description="Real-time speech emotion recognition (neutral, happy, sad, angry, fear, disgust, surprise) "
        "from a microphone or recorded files. Every hop (0.5 s) the latest 3 s window is scored by a small ONNX model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-ser {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="ONNX model file (default: the shipped model)")
    common.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default: 1)")

    scoring = argparse.ArgumentParser(add_help=False)
    scoring.add_argument("--hop", type=_positive_float, default=None, metavar="S",
                         help="seconds of new audio between predictions (default: the model's, 0.5)")
    scoring.add_argument("--csv", default=None, metavar="OUT", help="write the timeline CSV here (flushed per row)")
    scoring.add_argument("--force", action="store_true", help="replace an existing CSV")
    scoring.add_argument("--append", action="store_true", help="append to an existing CSV with the same columns")

    p = sub.add_parser(
        "listen", parents=[common, scoring], help="score the microphone live, one line per hop",
        description="Score live audio: every hop, the latest 3 s window of the input device (or of a file replayed "
        "at real-time pace with --input) is scored and printed. Ctrl-C stops; the CSV is closed complete.",
        epilog="examples:\n  stream-ser listen\n  stream-ser listen --device 'USB' --csv today.csv\n"
        "  stream-ser listen --input clip.flac --duration 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default=None, help="input device index or name substring (see `stream-ser devices`)")
    p.add_argument("--input", default=None, metavar="FILE", help="replay FILE through the live path instead of a device")
    p.add_argument("--duration", type=_positive_float, default=None, metavar="S", help="stop after S seconds of audio")
    p.add_argument("--fast", action="store_true", help="with --input: do not pace the replay in real time")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "analyse", aliases=["analyze"], parents=[common, scoring], help="score recorded files faster than real time",
        description="Stream each file through the same engine as `listen`, as fast as it decodes. Prints one summary "
        "line per file: the clip label is the argmax of the mean probabilities over speech windows, with that mean "
        "as confidence. A file that cannot be read is reported and skipped; the exit status is then 1.",
        epilog="examples:\n  stream-ser analyse clip.wav\n  stream-ser analyse recordings/*.flac --csv timeline.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG, MP3, any rate/channels)")
    p.add_argument("--timeline", action="store_true", help="also print one line per hop")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("devices", help="list input devices", description="List input devices: index, channels, "
                       "default sample rate, host API and name; * marks the default.")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("info", parents=[common], help="show the model's labels, feature recipe and provenance")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stream-ser`` console script; returns the exit status."""
    from .model import ModelError
    from .sinks import OutputError
    from .sources import AudioSourceError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="stream-ser: %(levelname)s: %(message)s"
    )
    if getattr(args, "force", False) and getattr(args, "append", False):
        parser.error("--force and --append exclude each other")
    try:
        return int(args.func(args))
    except (ModelError, OutputError) as exc:
        if args.verbose:
            raise
        print(f"stream-ser: error: {exc}", file=sys.stderr)
        return 2
    except AudioSourceError as exc:
        if args.verbose:
            raise
        print(f"stream-ser: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
