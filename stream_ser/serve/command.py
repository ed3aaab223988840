"""Running the server: ``stream-ser serve`` (its options, :func:`run`), :func:`serve_forever`
(until SIGINT or SIGTERM) and :class:`BackgroundServer` (a thread of its own, for tests,
benchmarks and embedding).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from .protocol import (
    CALLS_PATH,
    DEFAULT_BURST_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CALLS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_MESSAGES_PER_S,
    DEFAULT_MAX_SPEED,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT_S,
    HEALTH_PATH,
    TOKEN_ENV,
    TWILIO_TRACKS,
    ServeError,
    ServeOptions,
    _check_names,
)
from ..cli.parser import _HelpFormatter  # the help of every command looks the same
from .server import CallServer


class BackgroundServer:
    """A :class:`CallServer` on an event loop in a thread of its own (tests, benchmarks, embedding).

    Example::

        with BackgroundServer(ServeOptions(port=0, token=TOKEN)) as srv:
            url = f"ws://127.0.0.1:{srv.port}/calls"

    Args:
        options: As for :class:`CallServer`.
        log: As for :class:`CallServer`.

    Raises:
        ServeError, ModelError, OSError: From starting the server (in :meth:`start`).
    """

    def __init__(self, options: ServeOptions, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.log = log
        self.server: CallServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def start(self) -> "BackgroundServer":
        """Start the thread and wait until the server listens (or failed, re-raising its error)."""
        self._thread = threading.Thread(target=self._main, name="stream-ser-serve", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        async def main() -> None:
            try:
                self.server = CallServer(self.options, self.log)
                self.loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.server.shutdown()

        asyncio.run(main())

    def call(self, fn: Callable[[CallServer], Any]) -> Any:
        """Run ``fn(server)`` on the server's loop and return its result."""
        import concurrent.futures

        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(self.server))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def stop(self) -> None:
        """End every call (as a server shutdown does) and stop the thread; idempotent."""
        if self._thread is None:
            return
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(options: ServeOptions, on_ready: Callable[[CallServer], None] | None = None) -> None:
    """Run the server until SIGINT or SIGTERM, then end every call cleanly (the calling thread's
    event loop; the main thread, for the signals).

    Raises:
        ServeError, ModelError, OSError: If the server cannot start.
    """

    async def main() -> None:
        server = CallServer(options)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass
        if on_ready is not None:
            on_ready(server)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
            await server.shutdown()

    asyncio.run(main())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive(kind: type, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def _names(text: str) -> tuple[str, ...]:
    return _check_names(tuple(x.strip() for x in text.split(",")), "names", argparse.ArgumentTypeError, count=2)


def default_workers() -> int:
    """Scoring threads by default: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` command to the CLI's sub-parsers; returns its parser.

    Args:
        subparsers: The object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser(
        "serve", help="score live calls sent over WebSocket (raw PCM16/µ-law or Twilio Media Streams)",
        description="Serve live calls over WebSocket: one connection is one call with one or two channels; every hop "
        "(0.5 s) each channel's latest 3 s window is scored and one JSON object per hop and channel is sent back, in "
        "the schema of `analyse --format jsonl`; when the call ends, its clips and call summary. Takes raw PCM16 or "
        f"µ-law at 8 or 16 kHz, or Twilio Media Streams. Clients authenticate with the token in ${TOKEN_ENV} "
        f"(Authorization: Bearer TOKEN, ?token=TOKEN, or the path {CALLS_PATH}/TOKEN). GET {HEALTH_PATH} reports the "
        "model, the calls open and the load. Ctrl-C or SIGTERM ends every call cleanly (summary sent, files closed). "
        "Guide: docs/serve.md.",
        epilog="examples:\n"
        f"  export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\n"
        "  stream-ser serve                                 ws://127.0.0.1:8765/calls\n"
        "  stream-ser serve --out-dir calls/                also write each call's CSV, JSON lines and summary\n"
        "  stream-ser serve --host 0.0.0.0 --max-calls 100  all interfaces (put TLS in front: docs/serve.md)\n"
        "  curl -s http://127.0.0.1:8765/health",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log details and show tracebacks of errors (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no per-call lines on stderr (the line saying where it listens is still printed)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=_positive(int, 0, 65535), default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0: any free port, printed at start)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help=f"accept connections without a token (without it, serve refuses to start unless {TOKEN_ENV} "
                   "is set)")
    p.add_argument("--model", default=None, help="ONNX model file (default: the shipped model)")
    p.add_argument("--threads", type=_positive(int, 1, 64), default=1, metavar="N",
                   help="onnxruntime threads per scoring thread (default 1)")
    p.add_argument("--workers", type=_positive(int, 1, 64), default=None, metavar="N",
                   help="scoring threads, each with its own copy of the model; a call stays on one (default: the "
                   f"CPUs this process may use, at most 8; here {default_workers()})")
    p.add_argument("--hop", type=_positive(float, 1e-4, 60), default=None, metavar="S",
                   help="seconds of new audio between predictions (default: the model's, 0.5)")
    p.add_argument("--gate", choices=("vad", "level"), default="vad",
                   help="which windows are scored, as for listen (default vad: loud enough and a voice)")
    p.add_argument("--adapt", choices=("auto", "embedding", "output", "none"), default="auto",
                   help="adaptation to each channel's voice, as for listen (default auto: the best the model "
                   "carries, see `stream-ser info`; none: each window on its own)")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help="write each call's timeline CSV, JSON lines and summary JSON into DIR (an existing folder; "
                   "names: UTC start time and call id; nothing is overwritten)")
    p.add_argument("--twilio-names", type=_names, default=TWILIO_TRACKS, metavar="IN,OUT",
                   help="channel names of Twilio's inbound and outbound tracks (default inbound,outbound; e.g. "
                   "customer,agent when customers call in)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-calls", type=_positive(int, 1, 100_000), default=DEFAULT_MAX_CALLS, metavar="N",
                        help=f"calls open at once; more are refused with HTTP 503 (default {DEFAULT_MAX_CALLS})")
    limits.add_argument("--max-message-bytes", type=_positive(int, 256, 64 * 1024 * 1024),
                        default=DEFAULT_MAX_MESSAGE_BYTES, metavar="N",
                        help=f"largest message; a larger one closes its call with 1009 (default {DEFAULT_MAX_MESSAGE_BYTES}"
                        ": 2 s of 16 kHz mono PCM16)")
    limits.add_argument("--max-messages-per-s", type=_positive(float, 1, 1e6), default=DEFAULT_MAX_MESSAGES_PER_S,
                        metavar="N", help="messages per second per call, bursts of one second allowed; faster closes "
                        f"the call with 1008 (default {DEFAULT_MAX_MESSAGES_PER_S:g}; Twilio sends 50 per track)")
    limits.add_argument("--max-speed", type=_positive(float, 0, 1000), default=DEFAULT_MAX_SPEED, metavar="X",
                        help="audio per call as a multiple of real time; a faster sender is read more slowly "
                        f"(default {DEFAULT_MAX_SPEED:g}; 0: no limit)")
    limits.add_argument("--burst", type=_positive(float, 0, 3600), default=DEFAULT_BURST_S, metavar="S",
                        help=f"seconds of audio a call may send ahead before --max-speed applies (default {DEFAULT_BURST_S:g})")
    limits.add_argument("--idle-timeout", type=_positive(float, 0.1, 86400), default=DEFAULT_IDLE_TIMEOUT_S,
                        metavar="S", help=f"close a call silent for S seconds with 1008 (default {DEFAULT_IDLE_TIMEOUT_S:g})")
    limits.add_argument("--start-timeout", type=_positive(float, 0.1, 3600), default=DEFAULT_START_TIMEOUT_S,
                        metavar="S", help=f"the start message must come within S seconds (default {DEFAULT_START_TIMEOUT_S:g})")
    p.set_defaults(func=run)
    return p


def options_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServeOptions:
    """The :class:`ServeOptions` of parsed ``serve`` arguments and the environment's token.

    Raises:
        ServeError: As :meth:`ServeOptions.check`.
    """
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV) or None
    options = ServeOptions(
        host=args.host, port=args.port, token=token, insecure_no_auth=args.insecure_no_auth, model=args.model,
        threads=args.threads, workers=args.workers or default_workers(), hop_s=args.hop, gate=args.gate,
        adapt=getattr(args, "adapt", "auto"),
        max_calls=args.max_calls, max_message_bytes=args.max_message_bytes,
        max_messages_per_s=args.max_messages_per_s, max_speed=args.max_speed, burst_s=args.burst,
        idle_timeout_s=args.idle_timeout, start_timeout_s=args.start_timeout, out_dir=args.out_dir,
        twilio_names=tuple(args.twilio_names), quiet=bool(getattr(args, "quiet", False)),
    )
    options.check()
    return options


def run(args: argparse.Namespace) -> int:
    """``stream-ser serve``: run the server until Ctrl-C or SIGTERM.

    Returns:
        0 after a clean stop; 2 when it cannot start (no token, a bad option, the model, the
        address in use), with one ``stream-ser: error:`` line on standard error.
    """
    import importlib.util

    from ..features import one_blas_thread
    from ..model import ModelError
    from ..text import printable

    quiet = bool(getattr(args, "quiet", False))
    if importlib.util.find_spec("websockets") is None:
        print('stream-ser: error: serve needs the websockets package: pip install "stream-ser[serve]"', file=sys.stderr)
        return 2
    try:
        options = options_from_args(args)
    except ServeError as exc:
        print(f"stream-ser: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if options.insecure_no_auth:
        where = "" if _is_loopback(options.host) else f" on {options.host}, reachable from other machines"
        print(f"stream-ser: warning: serving without authentication{where} (--insecure-no-auth)", file=sys.stderr)

    def ready(server: CallServer) -> None:  # printed even with -q: it says where the server listens
        host = options.host if ":" not in options.host else f"[{options.host}]"
        print(printable(
            f"stream-ser: serving calls on ws://{host}:{server.port}{CALLS_PATH} (health: http://{host}:{server.port}"
            f"{HEALTH_PATH}), model {server.model.name}, hop {server.hop_s:g} s, gate {options.gate}, up to "
            f"{options.max_calls} calls, {len(server.workers)} scoring thread(s)"
            + (f", files in {options.out_dir}" if options.out_dir else "") + ". Ctrl-C stops."),
            file=sys.stderr, flush=True)

    try:
        with one_blas_thread():
            serve_forever(options, ready)
    except (ServeError, ModelError) as exc:
        print(f"stream-ser: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"stream-ser: error: cannot listen on {printable(options.host)}:{options.port} ({exc.strerror or exc})",
              file=sys.stderr)
        return 2
    if not quiet:
        print("stream-ser: serve stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m stream_ser.serve ...``: the ``serve`` command on its own (same options)."""
    parser = argparse.ArgumentParser(prog="stream-ser")
    parser.set_defaults(quiet=False, verbose=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
