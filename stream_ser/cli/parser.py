"""The ``stream-ser`` argument parser: every command's options, their checks and ``--help``.

Numeric options are checked by :func:`_number` and every usage error is one line in one style
(:class:`_Parser`): ``stream-ser: error: --hop: must be a number greater than 0 and at most
10 s, got 0 (see `stream-ser analyse --help`)``, status 2.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from .. import __version__
from .analyse import cmd_analyse
from .batch import cmd_batch
from .info import cmd_devices, cmd_info, cmd_plot
from .listen import cmd_listen

EXAMPLES = """\
examples:
  stream-ser listen                          score the default microphone live (terminal UI; piped: lines)
  stream-ser listen --csv session.csv        ... and log the timeline to a CSV file
  stream-ser listen --demo                   replay the shipped demo recording (no microphone needed)
  stream-ser listen --input clip.wav         replay a file at real-time pace through the live path
  stream-ser listen --device Mic --device "Monitor of" --channel-names me,them
                                             both sides of a call: microphone and what the computer plays
  stream-ser analyse call.wav --channels all --channel-names agent,customer --summary-json s.json
                                             score each channel of a stereo call on its own
  stream-ser analyse calls/*.wav --csv t.csv score recordings faster than real time
  stream-ser analyse a.wav --format jsonl    one JSON object per prediction, for jq and other programs
  stream-ser plot t.csv -o t.png             draw the timeline: probabilities over time, one panel per source
  stream-ser devices                         list input devices (index, name, channels, rate)
  stream-ser info                            show the model's labels, feature recipe and provenance
  stream-ser batch 'calls/**/*.wav' --out scored/
                                             score an archive on Ray (this machine or a cluster) into Parquet, resumably
  stream-ser serve                           score live calls sent over WebSocket (raw or Twilio; docs/serve.md)
"""


#: Longest ``listen --duration`` (s): a week; without the option a session runs until stopped.
MAX_DURATION_S = 7 * 24 * 3600.0
#: Longest ``listen --calibrate`` (s of speech per channel): an hour.
MAX_CALIBRATE_S = 3600.0
#: Most panels ``plot --max-panels`` draws: 100 make an image about 32,000 pixels tall, half of
#: the 65,536 that matplotlib can render.
MAX_PANELS = 100


def _number_rule(kind: type, low: float, high: float, unit: str = "", above_low: bool = False) -> str:
    """What a numeric option must be, e.g. ``a number greater than 0 and at most 10 s`` or
    ``an integer from 1 to 2``."""
    what = "an integer" if kind is int else "a number"
    if above_low:
        return f"{what} greater than {low:g} and at most {high:g}{unit}"
    return f"{what} from {low:g} to {high:g}{unit}"


def _number(kind: type, low: float, high: float, unit: str = "", above_low: bool = False) -> Callable[[str], Any]:
    """An argparse ``type``: a finite number of ``kind`` (int or float) from ``low`` to ``high``
    (greater than ``low`` with ``above_low``). Anything else is a one-line usage error in the one
    style of every numeric option (:class:`_Parser`), naming the option, the rule and the value
    given: ``stream-ser: error: --hop: must be a number greater than 0 and at most 10 s, got 0``
    (a text that is no number at all is quoted: ``got 'abc'``)."""
    rule = _number_rule(kind, low, high, unit, above_low)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:  # also an integer of more than 4300 digits
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ((kind is int or math.isfinite(value)) and (value > low if above_low else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrapped to the terminal's width; a text with line breaks of its own (the
    examples of an epilog) printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line: ``stream-ser: error: --hop: must be ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)  # "argument --hop: x" -> "--hop: x"
        # "--input: not allowed with argument --demo" -> "--input and --demo exclude each other"
        message = re.sub(r"^([^:]+): not allowed with argument (.+)$", r"\1 and \2 exclude each other", message)
        self.exit(2, f"stream-ser: error: {message} (see `{self.prog} --help`)\n")


def _channel_selection(text: str):
    from ..audio import parse_channel_selection

    try:
        return parse_channel_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(","))
    if any(not n for n in names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r} (names are separated by commas)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a name is given twice in {text!r}")
    if any(n.lstrip("-").isdigit() for n in names):
        raise argparse.ArgumentTypeError(f"names must not be numbers (numbers are what unnamed channels get): {text!r}")
    return names


def _audio_formats() -> str:
    """The audio formats this installation decodes, as ``--help`` states them: the common ones
    that soundfile's libsndfile offers here (MP3 needs libsndfile 1.1, Ogg Opus 1.0.29), and what
    it never decodes."""
    try:
        import soundfile as sf

        formats = sf.available_formats()
        ogg = [name for name in ("Vorbis", "Opus") if name.upper() in sf.available_subtypes("OGG")]
        version = f" {sf.__libsndfile_version__}"
    except (ImportError, OSError, AttributeError):  # libsndfile missing: reading fails later, in one line
        return "WAV, FLAC, Ogg and the other formats libsndfile decodes"
    common = [("WAV", "WAV"), ("FLAC", "FLAC"), ("OGG", f"Ogg ({', '.join(ogg)})" if ogg else "Ogg"),
              ("MP3", "MP3"), ("AIFF", "AIFF"), ("CAF", "CAF")]
    named = ", ".join(text for key, text in common if key in formats)
    return (f"{named} and the other formats of libsndfile{version}; not M4A/AAC, WMA or video files (convert "
            "those first, e.g. with ffmpeg)")


def _add_hop_option(p: argparse.ArgumentParser, max_window_s: float) -> None:
    """``--hop``: seconds between predictions (``analyse``, ``listen``, ``batch``)."""
    p.add_argument("--hop", type=_number(float, 0, max_window_s, " s", above_low=True), default=None, metavar="S",
                   help="seconds of new audio between predictions, from one sample to the model's window (3 s "
                   "for the shipped model; default: the model's, 0.5)")


def _add_channel_options(p: argparse.ArgumentParser) -> None:
    """How a recording is scored: ``--channels``, ``--channel-names``, ``--adapt``, ``--gate``."""
    p.add_argument("--channels", type=_channel_selection, default=None, metavar="LIST",
                   help="score these channels each on its own instead of averaging them: numbers counted "
                   "from 1 ('1,2') or 'all' (at most 8). The CSV's channel column then holds the channel's "
                   "number (or name); without this option it is 0, the average")
    p.add_argument("--channel-names", type=_name_list, default=None, metavar="NAMES",
                   help="names for the channels, comma-separated in channel order (e.g. agent,customer); "
                   "written in the CSV's channel column instead of the numbers")
    p.add_argument("--adapt", choices=("auto", "embedding", "output", "none"), default="auto",
                   help="adapt the scores to each channel's voice as it talks, from running statistics of that "
                   "voice started from the training voices' (nothing from the future): 'auto' (default) takes the "
                   "best the model carries (see `stream-ser info`): embedding, else output, else none. 'embedding' "
                   "standardises the network's embedding with the voice's running mean and spread before the "
                   "model's embedding head (`stream-ser info` says which); 'output' removes the voice's running shift of the log-probabilities; "
                   "'none' scores each window on its own. Asking for one the model does not carry is an error. "
                   "The CSV's and JSON lines' adaptation field says which ran")
    p.add_argument("--gate", choices=("vad", "level"), default="vad",
                   help="which windows are scored (the rest get no label): vad (default, it measures best, "
                   "docs/vad.md) needs the window loud enough and a voice by the Silero VAD, so music, noise "
                   "and effects are not scored; level only needs it loud enough. "
                   "'stream-ser info' says which gate the model's training windows passed. The speech column, the speech light and speech time follow it")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    from ..features import MAX_WINDOW_S
    from ..model import MAX_THREADS

    parser = _Parser(
        prog="stream-ser",
        description="Real-time speech emotion recognition (neutral, happy, sad, angry, fear, disgust, surprise) "
        "from a microphone or recorded files. Every hop (0.5 s) the latest 3 s window is scored by a small ONNX model.",
        epilog=EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-ser {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log details and show tracebacks of errors (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no progress bar and no log messages below errors (results still go to stdout)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # none: the help (see _main)

    # -v/-q also after the command (stream-ser analyse -q ...); SUPPRESS keeps a value given
    # before the command from being reset by the sub-parser's default.
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                           help="log details and show tracebacks of errors (-vv: debug)")
    verbosity.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="no progress bar and no log messages below errors")

    common = argparse.ArgumentParser(add_help=False, parents=[verbosity])
    common.add_argument("--model", default=None, help="ONNX model file (default: the shipped model)")
    common.add_argument("--threads", type=_number(int, 1, MAX_THREADS), default=1, metavar="N",
                        help=f"onnxruntime threads, 1 to {MAX_THREADS} (default: 1)")

    scoring = argparse.ArgumentParser(add_help=False)
    _add_hop_option(scoring, MAX_WINDOW_S)
    scoring.add_argument("--csv", default=None, metavar="OUT", help="write the timeline CSV here (flushed per row)")
    scoring.add_argument("--format", choices=("lines", "jsonl"), default="lines",
                         help="standard output: human-readable lines (default) or JSON lines, one object per "
                         "prediction (schema in docs/output-formats.md)")
    scoring.add_argument("--jsonl", default=None, metavar="OUT", help="also write JSON lines to this file (flushed per line)")
    scoring.add_argument("--force", action="store_true", help="replace existing output files (CSV, JSON lines)")
    scoring.add_argument("--append", action="store_true",
                         help="append to existing output files (a CSV must have the same columns)")
    _add_channel_options(scoring)
    scoring.add_argument("--summary-json", default=None, metavar="FILE",
                         help="write the call summary (per channel: speech time, time in each emotion, longest "
                         "span of each emotion, emotion changes) to FILE as JSON")

    p = sub.add_parser(
        "listen", parents=[common, scoring], help="score the microphone live (terminal UI, or one line per hop)",
        description="Score live audio: every hop, the latest 3 s window of the input device (or of a file replayed "
        "at real-time pace with --input, or the shipped demo recording with --demo) is scored. On a terminal a "
        "full-screen UI shows the input level, the current emotion, smoothed probabilities and the emotion timeline "
        "(keys: q quit, space pause, m marker, c clear, ? keys); piped, or with --no-tui, one line per hop is "
        "printed. Ctrl-C (or q) stops; the CSV is closed complete.",
        epilog="examples:\n  stream-ser listen\n"
        "  stream-ser listen --demo                     no microphone needed: replay the demo recording\n"
        "  stream-ser listen --device 'USB' --csv today.csv\n"
        "  stream-ser listen --input clip.flac --duration 10\n"
        "  stream-ser listen --no-tui --csv today.csv   lines instead of the terminal UI\n"
        "  stream-ser listen --device Microphone --device 'Monitor of' --channel-names me,them --csv call.csv\n"
        "                                             both sides of a call, one channel per device\n"
        "  stream-ser listen --device 'USB' --channels 1,2 --channel-names agent,customer\n"
        "                                             two channels of one device, each scored on its own\n"
        "\nAt the end a call summary is printed on stderr (per channel: speech time, time in each emotion,\n"
        "longest span of each emotion, emotion changes; with several devices the measured clock drift).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--device", default=None, action="append",
                   help="input device index or name substring (see `stream-ser devices`); give it twice or more to "
                   "capture several devices at once as the channels of one session, aligned on the first one's clock")
    replay = p.add_mutually_exclusive_group()
    replay.add_argument("--input", default=None, metavar="FILE",
                        help="replay FILE through the live path at real-time pace instead of a device (the formats "
                        "of `stream-ser analyse --help`)")
    replay.add_argument("--demo", action="store_true",
                        help="replay the demo recording shipped with stream-ser (21 s: seven RAVDESS clips, one per "
                        "emotion, by three actors; CC BY-NC-SA 4.0) through the live path, as --input does")
    p.add_argument("--duration", type=_number(float, 0, MAX_DURATION_S, " s", above_low=True), default=None,
                   metavar="S", help=f"stop after S seconds of audio (> 0, at most {MAX_DURATION_S:.0f}: a week)")
    p.add_argument("--fast", action="store_true", help="with --input or --demo: do not pace the replay in real time")
    p.add_argument("--calibrate", type=_number(float, 0, MAX_CALIBRATE_S, " s", above_low=True), default=None,
                   metavar="S",
                   help="for a speaker-normalised model (`stream-ser info` shows it): first learn the voice from S "
                   f"seconds of speech per channel (e.g. 30; > 0, at most {MAX_CALIBRATE_S:.0f}) and only then "
                   "predict; those hops write no CSV row. "
                   "The running voice statistics go on updating afterwards")
    p.add_argument("--no-tui", action="store_true",
                   help="print one line per hop instead of the terminal UI (the default when stdout is not a terminal)")
    p.set_defaults(func=cmd_listen, scoring=True)  # scoring commands write through Outputs

    p = sub.add_parser(
        "analyse", aliases=["analyze"], parents=[common, scoring], help="score recorded files faster than real time",
        description="Stream each file through the same engine as `listen`, as fast as it decodes. Prints one summary "
        "line per file: the clip label is the argmax of the mean probabilities over speech windows, with that mean "
        "as confidence. A file that cannot be read is reported and skipped; the exit status is then 1. On a terminal "
        "a progress bar (files, seconds of audio, speed as a multiple of real time) is shown on stderr.",
        epilog="examples:\n  stream-ser analyse clip.wav\n  stream-ser analyse recordings/*.flac --csv timeline.csv\n"
        "  stream-ser analyse clip.wav --timeline          also one line per hop\n"
        "  stream-ser analyse *.wav --format jsonl | jq -c 'select(.type == \"clip\") | {source, label}'\n"
        "  stream-ser analyse *.wav --jsonl out.jsonl --csv out.csv -q\n"
        "  stream-ser analyse call.wav --channels all --channel-names agent,customer --csv call.csv\n"
        "                                             each side of a stereo call on its own, with a call summary",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=f"audio files: {_audio_formats()}; any number of channels (averaged, or chosen with "
                   "--channels), native rates 8-192 kHz (resampled to the model's 16 kHz)")
    p.add_argument("--timeline", action="store_true", help="also print one line per hop (implied by --format jsonl)")
    p.add_argument("--summary", action="store_true",
                   help="print the call summary of each file on stderr (always with --channels)")
    p.add_argument("-j", "--jobs", type=_number(int, 1, 2), default=None, metavar="N",
                   help="scoring threads: 1 runs decoding, features and the model on one thread; 2 runs the model "
                   "on a second thread while the next windows' features are computed (identical results; faster "
                   "when two cores are free, see benchmarks/README.md). Default: 2 if this process may use two or "
                   "more CPUs (taskset limits it), else 1")
    p.set_defaults(func=cmd_analyse, scoring=True)

    p = sub.add_parser(
        "plot", parents=[verbosity], help="draw a timeline CSV: probabilities over time (needs matplotlib)",
        description="Draw a timeline CSV (from `listen --csv` or `analyse --csv`): for each source and channel a "
        "strip of the most probable emotion per hop (grey where there was no speech) above the stacked class "
        "probabilities, with a m:ss time axis. Needs the optional extra: pip install \"stream-ser[plot]\".",
        epilog="examples:\n  stream-ser analyse clip.wav --csv t.csv && stream-ser plot t.csv -o t.png\n"
        "  stream-ser plot session.csv                      writes session.png\n"
        "  stream-ser plot t.csv -o t.svg --source clip.wav --title 'Call 12'",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("timeline", metavar="TIMELINE.csv", help="a timeline CSV written by stream-ser")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="image file, written under exactly this name; the format follows the suffix (.png, .svg, "
                   ".pdf; PNG for a name without one). Default: TIMELINE.png")
    p.add_argument("--source", default=None, metavar="TEXT", help="only sources whose name contains TEXT")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--max-panels", type=_number(int, 1, MAX_PANELS), default=12, metavar="N",
                   help=f"draw at most N panels, 1 to {MAX_PANELS} (default: 12)")
    p.add_argument("--force", action="store_true", help="replace an existing image")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "devices", parents=[verbosity], help="list input devices",
        description="List input devices: index, channels, default sample rate, host API and name; * marks the "
        "default. Choose one for `listen` with --device INDEX or --device 'name substring'.",
        epilog="examples:\n  stream-ser devices\n  stream-ser listen --device 3",
        formatter_class=_HelpFormatter,
    )
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "info", parents=[common], help="show the model's labels, feature recipe and provenance",
        description="Show a model's labels, its feature recipe and its provenance (data, split, training "
        "command), all read from the ONNX file's metadata.",
        epilog="examples:\n  stream-ser info\n  stream-ser info --model models/my-model.onnx",
        formatter_class=_HelpFormatter,
    )
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "batch", parents=[common], help="score an archive of recordings on Ray (this machine or a cluster), resumably",
        description="Score many recordings on Ray Data: a pool of workers (each one CPU and one copy of the model) "
        "scores the recordings the manifests or patterns name, as `analyse` does, and writes per recording a "
        "timeline in Parquet (OUT/timelines/recording_id=ID/, Hive partitions for DuckDB, Spark and pandas), and "
        "a summary table with one row per recording (OUT/summary.parquet: label shares, call summary, duration, "
        "status and error). Each recording is committed on its own: run the same command again to skip what is "
        "done and retry what failed. A recording that cannot be read is a row with its error; the exit status is "
        "then 1. Without --ray-address (or RAY_ADDRESS) Ray runs on this machine. Needs the optional extra: pip "
        "install \"stream-ser[batch]\". Guide: docs/batch.md.",
        epilog="examples:\n  stream-ser batch 'calls/**/*.wav' --out scored/\n"
        "  stream-ser batch manifest.txt --out scored/ --csv       also each recording's CSV, as analyse --csv\n"
        "  stream-ser batch calls.csv --out /shared/scored --ray-address 10.0.0.5:6379\n"
        "  stream-ser batch 'stereo/*.flac' --out scored/ --channels all --channel-names agent,customer\n"
        "\nMANIFEST: a .txt/.lst/.list file with one path per line, or a .csv with a 'path' column (and optionally\n"
        "'recording_id'); relative paths are from the manifest's folder. Anything else is a glob pattern: quote it.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="MANIFEST|GLOB",
                   help="manifests or glob patterns of audio files ('**' matches folders at any depth)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created if missing; on a cluster, a folder every node can write)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="the Ray cluster to use, as `ray start --head` prints it (default: $RAY_ADDRESS, else a Ray "
                   "started on this machine with `ray start`, else a new one for this command)")
    p.add_argument("--workers", type=_number(int, 1, 100_000), default=None, metavar="N",
                   help="workers, each one CPU and one copy of the model (default: every CPU of the cluster)")
    p.add_argument("--csv", action="store_true", dest="write_csv",
                   help="also write each recording's timeline CSV (OUT/csv/ID.csv), byte for byte as analyse --csv")
    p.add_argument("--redo", action="store_true", help="score every recording again, also those done before")
    _add_hop_option(p, MAX_WINDOW_S)
    _add_channel_options(p)
    p.set_defaults(func=cmd_batch)

    from ..serve import add_parser as add_serve_parser

    add_serve_parser(sub)  # `stream-ser serve`: the WebSocket server for live calls (docs/serve.md)
    return parser

