"""The ``stream-ser`` command line: ``listen``, ``analyse``, ``plot``, ``devices``, ``info``
(and ``serve``, :mod:`stream_ser.serve`).

Exit status: 0 success; 1 a file or device failed (analyse goes on with the other files and
exits 1 at the end; plot: the timeline CSV cannot be read), or an unexpected error; 2 bad
arguments, unusable model, unwritable output or a missing optional extra (nothing was
processed). Ctrl-C and SIGTERM stop cleanly: the current row is finished, the last partial hop is
scored, the CSV is closed complete, and the exit status is 0 for ``listen`` (stopping is how a
listening session normally ends) and 130/143 for ``analyse`` (interrupted work). Without a
command, ``stream-ser`` prints its help (as ``--help`` does) with status 0.

Modules: :mod:`.parser` (every option and ``--help``), :mod:`.common` (the outputs, stop
signals, error lines and checks the commands share), and one module per command group:
:mod:`.analyse`, :mod:`.listen`, :mod:`.info` (``info``, ``devices``, ``plot``). This one runs
a command: logging, errors and exit status, Ctrl-C while starting.
"""

from __future__ import annotations

import sys

# The console script imports this module before it calls main(): Ctrl-C meanwhile is the same
# one line and status 130 as in main(), not a traceback. The heavy libraries (numpy,
# onnxruntime, soundfile) load inside main(), which handles Ctrl-C itself.
try:
    import logging
    import os
    import signal
    import threading
    from types import FrameType

    from ..text import printable
    from .analyse import _progress_console, default_jobs  # noqa: F401 (re-exported)
    from .common import NO_INPUT_DEVICE, Outputs, _check_output_paths, _Stop, _warm_up  # noqa: F401
    from .info import model_licence
    from .listen import _listen_source, _listen_wants_tui, _use_demo  # noqa: F401
    from .parser import build_parser
except KeyboardInterrupt:
    print("stream-ser: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

__all__ = ["NO_INPUT_DEVICE", "build_parser", "default_jobs", "main", "model_licence"]
# Also here for the benchmarks and tests that drive the command's pieces: _Stop, _warm_up,
# _progress_console, _listen_source, _listen_wants_tui.

log = logging.getLogger("stream_ser")


class _PrintableFormatter(logging.Formatter):
    """Log lines with the unprintable characters of names in them escaped (a traceback, with
    -v, keeps its line breaks)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stream-ser`` console script; returns the exit status.

    Ctrl-C at any moment, even while the libraries load in the first quarter second, ends with
    one line, ``stream-ser: interrupted``, and status 130 (a command that handles it itself,
    ``listen`` and ``analyse``, stops cleanly first).
    """
    _INTERRUPTED.clear()
    _standard_streams_open()
    try:
        old = signal.getsignal(signal.SIGINT)
        if old is signal.default_int_handler:  # not when SIGINT is ignored (a background job)
            signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread
        old = None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        if _INTERRUPTED.is_set():  # Ctrl-C inside a C extension's import surfaces as ImportError
            return _interrupted()
        raise
    finally:
        if old is signal.default_int_handler:
            signal.signal(signal.SIGINT, old)


def _standard_streams_open() -> None:
    """Give a closed standard input, output or error (``2>&-``) the null device.

    Otherwise the next file opened (the CSV) would take its descriptor and receive what is
    written there (C libraries' diagnostics into the CSV), and Python, which has no
    ``sys.stderr`` then, would print error lines on standard output, into the JSON lines. With
    standard error closed, error lines go nowhere; the exit status still says what happened.
    """
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


#: Set when SIGINT arrives outside a command's own handling (:func:`_interrupt`).
_INTERRUPTED = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT while stream-ser starts or loads: noted, then Python's KeyboardInterrupt (a C
    extension interrupted while it loads raises ImportError instead; the note tells them apart)."""
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _interrupted() -> int:
    """Say ``stream-ser: interrupted`` on stderr; the status of Ctrl-C, 130."""
    try:
        print("stream-ser: interrupted", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError, KeyboardInterrupt):
        pass
    return 130


def _main(argv: list[str] | None) -> int:
    from ..model import ModelError
    from ..plot import MissingDependencyError, TimelineError
    from ..sinks import OutputError
    from ..audio import AudioSourceError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `stream-ser`: what it can do, as --help prints it
        parser.print_help()
        return 0
    if args.verbose and args.quiet:
        parser.error("--verbose and --quiet exclude each other")
    if getattr(args, "force", False) and getattr(args, "append", False):
        parser.error("--force and --append exclude each other")
    level = logging.ERROR if args.quiet else {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("stream-ser: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("stream_ser").setLevel(level)
    # names from outside (a file name's bytes that are not UTF-8) never make a write to stdout fail
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")

    def fail(exc: BaseException, status: int, what: str = "error") -> int:
        if args.verbose:
            raise exc
        print(f"stream-ser: {what}: {printable(exc)}", file=sys.stderr)
        return status

    def run(outputs: Outputs) -> int:
        try:
            _use_demo(args)
            _check_output_paths(args)  # before any output is opened (opening truncates)
            if getattr(args, "scoring", False):
                # --jsonl OUT and --summary-json FILE before any model or audio, so a bad path fails first
                outputs.open()
                from ..features import one_blas_thread

                with one_blas_thread():  # scoring: numpy's BLAS on one thread (see one_blas_thread)
                    return int(args.func(args, outputs))
            return int(args.func(args))
        except (ModelError, OutputError, MissingDependencyError) as exc:
            return fail(exc, 2)
        except (AudioSourceError, TimelineError) as exc:
            return fail(exc, 1)
        except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. while loading)
            if args.verbose:
                raise
            return _interrupted()
        except BrokenPipeError:  # standard output's reader went away (`stream-ser info | head -1`)
            from ..sinks import _silence_broken_stdout

            _silence_broken_stdout()
            return 0
        except Exception as exc:  # no traceback for users; -v shows it
            if _INTERRUPTED.is_set():  # Ctrl-C while a C extension loaded (an ImportError)
                return _interrupted()
            if args.verbose:
                raise
            print(
                f"stream-ser: unexpected error: {type(exc).__name__}: {printable(exc)} (run with --verbose for the "
                "traceback)",
                file=sys.stderr,
            )
            return 1

    with Outputs(args) as outputs:  # every output file is closed when the command ends, however it ends
        status = run(outputs)
    # a file that cannot be finished (a full disk) is its own error line and status 2, after
    # whatever the command reported
    for exc in outputs.close_errors:
        status = fail(exc, 2)
    return status

