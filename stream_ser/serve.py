"""``stream-ser serve``: a WebSocket server that scores live calls.

One WebSocket connection is one call with one or two channels (agent, customer). The server
takes the call's audio as it happens and sends back one JSON object per hop and channel, in the
schema of the JSON lines (``stream-ser analyse --format jsonl``, :mod:`stream_ser.sinks`), and,
when the call ends, the call summary (:mod:`stream_ser.summary`). ``docs/serve.md`` is the
user's guide: how to run it, both protocols with examples, the limits and the security notes.

Library: `websockets <https://websockets.readthedocs.io>`_ (its asyncio implementation,
``websockets.asyncio.server``). It is one package (Python, with an optional C speed-up) with no
dependencies of its own, maintained since 2013 (uvicorn's own WebSocket support is built on it or
on wsproto), and does everything this server needs itself: the handshake's ``process_request``
hook answers plain HTTP on the same port (``GET /health``) and refuses a
connection before it is upgraded (a missing token, too many calls); ``max_size`` bounds every
message and closes the connection with 1009 when one is larger; it sends keep-alive pings and
closes a connection whose peer stopped answering. Starlette or FastAPI would need an ASGI server
(uvicorn) and several more packages for the same result.

Protocols (the first text message of a connection decides which one it speaks):

* **raw**: a JSON text message ``{"type": "start", "encoding": "pcm16" | "mulaw",
  "sample_rate": 8000 | 16000, "channels": 1 | 2, "channel_names": [...], "call_id": "..."}``,
  then binary messages of interleaved samples (PCM16 little-endian or G.711 µ-law bytes, whole
  frames), then ``{"type": "stop"}``.
* **twilio**: Twilio Media Streams' messages (``connected``, ``start``, ``media``, ``stop``;
  base64 µ-law at 8 kHz, ``media.track`` ``inbound`` / ``outbound`` as two channels), so a call
  forked with ``<Start><Stream>`` needs no glue. Twilio itself must not get messages back on such
  a stream, so replies are off unless the ``start`` message's ``customParameters`` ask for them
  (``"replies": "jsonl"``; a relay or a test client).

Messages sent back: ``started`` (once, after the start message), ``prediction`` (one per hop and
channel, exactly :func:`stream_ser.sinks.prediction_record`), at the end ``clip`` (one per
channel, :func:`~stream_ser.sinks.clip_record`) and ``summary`` (``{"type": "summary", ...}`` with
the keys of :meth:`stream_ser.summary.CallSummary.to_dict`), or ``error``
(:func:`~stream_ser.sinks.error_record`) before the connection is closed for a bad message.

Scoring: every channel has its own :class:`stream_ser.api.StreamScorer` (its own engine, window,
speech gate and resampler; 8 kHz audio is resampled to the model's 16 kHz with soxr), so a call
streamed at 16 kHz PCM16 gives exactly the predictions :func:`stream_ser.analyse` gives for the
same samples. Scoring never runs on the event loop: each call is pinned to one of ``workers``
scoring threads (a one-thread executor with its own model, since a model is used by one thread
at a time), and the loop only parses messages and sends results.

Safety: the server binds to 127.0.0.1 unless told otherwise; it needs a token
(``STREAM_SER_TOKEN``, :data:`TOKEN_ENV`) sent as ``Authorization: Bearer TOKEN``, as
``?token=TOKEN`` or as the last path segment (``/calls/TOKEN``, for Twilio, which can set neither
headers nor query strings on a stream's URL) and refuses a connection without it before the
upgrade (HTTP 401/403); it refuses to start without a token unless ``insecure_no_auth``. Message
size, message rate, audio speed, idle time and the number of concurrent calls are bounded
(:class:`ServeOptions`); a bad message closes that connection only (1003 unsupported or malformed
data, 1008 a limit or policy, 1009 too big, 1011 a server fault such as a full disk, 1013 too
many calls), and the other calls go on.

Files: with ``out_dir``, every call writes ``<UTC time>-<call id>.csv`` (the timeline CSV),
``.jsonl`` (its predictions and clips) and ``.summary.json`` (``--summary-json``'s format), with
the writers of ``listen`` (:class:`~stream_ser.sinks.CsvSink`, :class:`~stream_ser.sinks.JsonLinesSink`,
:class:`~stream_ser.summary.SummaryJsonFile`): rows handed to the OS one at a time, never
overwritten, closed complete when the call ends, however it ends.

Threads: the event loop (one thread) owns the connections; each call's scorer runs on its
worker thread only. :class:`BackgroundServer` runs the loop on a thread of its own (tests,
benchmarks, embedding).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import dataclasses
import functools
import hmac
import io
import ipaddress
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

#: Environment variable holding the shared secret clients must send.
TOKEN_ENV = "STREAM_SER_TOKEN"
#: Shortest token accepted (characters).
MIN_TOKEN_CHARS = 16
#: A token's characters: URL-safe, so it can stand in a path, a query and a header as it is.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{%d,512}" % MIN_TOKEN_CHARS)
#: Default TCP port.
DEFAULT_PORT = 8765
#: Path of the WebSocket endpoint (``/calls``, or ``/calls/TOKEN``).
CALLS_PATH = "/calls"
#: Path of the HTTP health report.
HEALTH_PATH = "/health"

#: Default limits (see :class:`ServeOptions`).
DEFAULT_MAX_CALLS = 32
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGES_PER_S = 200.0
DEFAULT_MAX_SPEED = 2.0
DEFAULT_BURST_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_START_TIMEOUT_S = 10.0
#: Longest gap in a Twilio track's timestamps filled with silence (s); a longer jump is filled
#: with this much only.
MAX_GAP_S = 60.0
#: Shortest gap filled (s): half of Twilio's 20 ms chunk, so a timestamp a millisecond or two off
#: (jitter) adds nothing, and one lost chunk is filled.
MIN_GAP_S = 0.01
#: How often idle calls are looked for (s): the precision of the idle and start timeouts.
WATCH_INTERVAL_S = 0.1
#: Sample rates the server takes (Hz) and encodings (raw protocol names).
SAMPLE_RATES_HZ = (8000, 16000)
ENCODINGS = ("pcm16", "mulaw")
#: Twilio's name of its µ-law encoding in ``start.mediaFormat.encoding``.
TWILIO_MULAW = "audio/x-mulaw"
#: Twilio's track names, in the channel order the server gives them.
TWILIO_TRACKS = ("inbound", "outbound")
#: Longest call id and channel name (characters).
MAX_CALL_ID_CHARS = 128
MAX_NAME_CHARS = 32

# WebSocket close codes (RFC 6455, section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN = 1013


class ServeError(Exception):
    """The server cannot start as configured (no token, a bad option, an unusable ``out_dir``)."""


class ProtocolError(Exception):
    """A message that ends its call: the connection is closed with ``code`` and ``reason``.

    Args:
        code: WebSocket close code (1003, 1008, 1009, 1011, ...).
        message: What was wrong, for the ``error`` message and the server's log; the close
            frame's reason is this, cut to the 123 bytes a close frame holds.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        """The close reason: the message, at most 123 bytes of UTF-8."""
        return self.message.encode("utf-8")[:123].decode("utf-8", "ignore")


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How the server runs.

    Attributes:
        host: Address to bind (default 127.0.0.1, this machine only).
        port: TCP port; 0 picks a free one (:attr:`CallServer.port` tells which).
        token: The shared secret clients must send, or None with ``insecure_no_auth``.
        insecure_no_auth: Accept connections without a token.
        model: ONNX model file, or None for the shipped model.
        threads: onnxruntime threads per worker model.
        workers: Scoring threads (each with its own model); a call stays on one.
        hop_s: Seconds of new audio between predictions (None: the model's, 0.5 s).
        gate: The speech gate, ``"vad"`` or ``"level"`` (see :class:`~stream_ser.engine.Engine`).
        max_calls: Most calls (connections) open at once; more are refused (HTTP 503 at the
            handshake, or close 1013 when two arrive together).
        max_message_bytes: Largest message taken (bytes); a larger one closes its call with 1009.
        max_messages_per_s: Sustained message rate allowed per call (bursts of one second's
            worth); faster closes the call with 1008.
        max_speed: Audio taken per call, as a multiple of real time, after ``burst_s`` seconds
            ahead; a faster sender is slowed down (its messages are read later), not refused.
            0 means no limit.
        burst_s: Seconds of audio a call may send ahead of real time before ``max_speed`` applies.
        idle_timeout_s: A call with no message for this long is closed (1008).
        start_timeout_s: A connection must send its start message within this time (1008).
        out_dir: Folder for each call's CSV, JSON lines and summary files, or None for none.
        twilio_names: Channel names of Twilio's ``inbound`` and ``outbound`` tracks.
        quiet: No per-call lines on standard error.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    insecure_no_auth: bool = False
    model: str | None = None
    threads: int = 1
    workers: int = 1
    hop_s: float | None = None
    gate: str = "vad"
    max_calls: int = DEFAULT_MAX_CALLS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_messages_per_s: float = DEFAULT_MAX_MESSAGES_PER_S
    max_speed: float = DEFAULT_MAX_SPEED
    burst_s: float = DEFAULT_BURST_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    out_dir: str | None = None
    twilio_names: tuple[str, str] = TWILIO_TRACKS
    quiet: bool = False

    def check(self) -> None:
        """Refuse an unusable configuration.

        Raises:
            ServeError: No token without ``insecure_no_auth`` (or both), a token that is too
                short or not URL-safe, a limit out of range, or an ``out_dir`` that is not a
                writable folder.
        """
        if self.token is None and not self.insecure_no_auth:
            raise ServeError(
                f"serve needs a token: set {TOKEN_ENV} to a secret of at least {MIN_TOKEN_CHARS} URL-safe characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), or pass --insecure-no-auth "
                "to let anyone who can reach the port send audio"
            )
        if self.token is not None and self.insecure_no_auth:
            raise ServeError(f"{TOKEN_ENV} is set and --insecure-no-auth is given: choose one")
        if self.token is not None and not TOKEN_PATTERN.fullmatch(self.token):
            raise ServeError(
                f"{TOKEN_ENV} must be {MIN_TOKEN_CHARS} to 512 characters from A-Z a-z 0-9 . _ ~ - "
                f"(got {len(self.token)} characters)"
            )
        checks = [
            ("--port", 0 <= self.port <= 65535, "0 to 65535"),
            ("--workers", 1 <= self.workers <= 64, "1 to 64"),
            ("--max-calls", 1 <= self.max_calls <= 100_000, "1 to 100000"),
            ("--max-message-bytes", 256 <= self.max_message_bytes <= 64 * 1024 * 1024, "256 to 67108864"),
            ("--max-messages-per-s", 1 <= self.max_messages_per_s <= 1e6, "1 to 1000000"),
            ("--max-speed", self.max_speed == 0 or 1 <= self.max_speed <= 1000, "0 (no limit) or 1 to 1000"),
            ("--burst", 0 <= self.burst_s <= 3600, "0 to 3600 s"),
            ("--idle-timeout", 0.1 <= self.idle_timeout_s <= 86400, "0.1 to 86400 s"),
            ("--start-timeout", 0.1 <= self.start_timeout_s <= 3600, "0.1 to 3600 s"),
        ]
        for option, ok, rule in checks:
            if not ok:
                raise ServeError(f"{option} must be {rule}")
        _check_names(self.twilio_names, 2, "--twilio-names", ServeError)
        if self.out_dir is not None:
            path = Path(self.out_dir)
            if not path.is_dir():
                raise ServeError(f"--out-dir {self.out_dir}: not a folder (create it first)")
            if not os.access(path, os.W_OK | os.X_OK):
                raise ServeError(f"--out-dir {self.out_dir}: not writable")


def _check_names(names: Sequence[Any], count: int, what: str, error: type[Exception]) -> tuple[str, ...]:
    """Validate channel names: ``count`` distinct, printable strings of 1 to 32 characters that
    are not numbers (numbers are what unnamed channels get).

    Raises:
        ``error``: Naming ``what`` and the rule broken (a :class:`ProtocolError` is made with 1003).
    """

    def fail(text: str) -> Exception:
        return error(CLOSE_UNSUPPORTED, text) if error is ProtocolError else error(text)

    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise fail(f"{what} must be a list of {count} name(s), one per channel")
    for n in names:
        if not isinstance(n, str) or not 1 <= len(n) <= MAX_NAME_CHARS or not n.isprintable() or n != n.strip():
            raise fail(f"{what}: each name must be 1 to {MAX_NAME_CHARS} printable characters without outer spaces")
        if n.lstrip("-").isdigit():
            raise fail(f"{what}: names must not be numbers")
    if len(set(names)) != len(names):
        raise fail(f"{what}: a name is given twice")
    return tuple(names)


# --------------------------------------------------------------------------------------------
# Audio decoding


@functools.lru_cache(maxsize=1)
def mulaw_table() -> np.ndarray:
    """The G.711 µ-law decoding table: int16 ``(256,)``, entry ``b`` the linear value of byte ``b``.

    Made once by libsndfile (soundfile's ``RAW``/``ULAW`` decoder) from the 256 possible bytes, so
    no codec is written here (Python 3.13 removed ``audioop``); e.g. byte 0xFF is 0 and 0x00 is
    -32124.
    """
    import soundfile as sf

    table, _ = sf.read(io.BytesIO(bytes(range(256))), format="RAW", subtype="ULAW", samplerate=8000, channels=1,
                       dtype="int16")
    return np.ascontiguousarray(table, dtype=np.int16)


def decode_mulaw(data: bytes) -> np.ndarray:
    """G.711 µ-law bytes to int16 samples, shape ``(len(data),)`` (one byte per sample)."""
    return mulaw_table()[np.frombuffer(data, dtype=np.uint8)]


def decode_pcm16(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes to int16 samples, shape ``(len(data) // 2,)``.

    Raises:
        ValueError: If ``len(data)`` is odd.
    """
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


#: Bytes per sample of each encoding.
BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1}
DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {"pcm16": decode_pcm16, "mulaw": decode_mulaw}


# --------------------------------------------------------------------------------------------
# Start messages


@dataclasses.dataclass(frozen=True)
class CallFormat:
    """What a call's start message announced.

    Attributes:
        protocol: ``"raw"`` or ``"twilio"``.
        source: The call's name (the predictions' ``source``): the raw ``call_id``, Twilio's
            ``callSid`` (else ``streamSid``), or ``call-N``.
        encoding: ``"pcm16"`` or ``"mulaw"``.
        sample_rate_hz: 8000 or 16000.
        channels: 1 or 2.
        channel_names: A name per channel, or None (unnamed: mono is channel 0, two channels
            are 1 and 2).
        replies: Whether predictions and the summary are sent back.
        tracks: Twilio only: the track name of each channel (``inbound``, ``outbound``).
        descriptions: What each channel is, for the summary (None: ``channel N``).
    """

    protocol: str
    source: str
    encoding: str
    sample_rate_hz: int
    channels: int
    channel_names: tuple[str, ...] | None = None
    replies: bool = True
    tracks: tuple[str, ...] = ()
    descriptions: tuple[str, ...] | None = None

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (one sample of every channel) in a raw binary message."""
        return BYTES_PER_SAMPLE[self.encoding] * self.channels


RAW_START_KEYS = {"type", "encoding", "sample_rate", "channels", "channel_names", "call_id"}


def _call_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CALL_ID_CHARS or not value.isprintable():
        raise ProtocolError(CLOSE_UNSUPPORTED, f"{what} must be 1 to {MAX_CALL_ID_CHARS} printable characters")
    return value


def parse_raw_start(message: dict[str, Any], default_source: str) -> CallFormat:
    """The :class:`CallFormat` of a raw protocol start message.

    Args:
        message: The decoded JSON object (``"type": "start"``).
        default_source: The call's name when the message has no ``call_id``.

    Raises:
        ProtocolError: 1003 naming the field: an unknown key, an encoding other than ``pcm16`` or
            ``mulaw``, a rate other than 8000 or 16000, channels other than 1 or 2, bad names or
            call id.
    """
    unknown = sorted(set(message) - RAW_START_KEYS)
    if unknown:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"start: unknown field(s) {', '.join(unknown)[:60]}; the fields are "
                            + ", ".join(sorted(RAW_START_KEYS)))
    encoding = message.get("encoding")
    if encoding not in ENCODINGS:
        raise ProtocolError(CLOSE_UNSUPPORTED, "start: encoding must be pcm16 or mulaw")
    rate = message.get("sample_rate")
    if isinstance(rate, bool) or rate not in SAMPLE_RATES_HZ:
        raise ProtocolError(CLOSE_UNSUPPORTED, "start: sample_rate must be 8000 or 16000")
    channels = message.get("channels", 1)
    if isinstance(channels, bool) or channels not in (1, 2):
        raise ProtocolError(CLOSE_UNSUPPORTED, "start: channels must be 1 or 2")
    names = message.get("channel_names")
    if names is not None:
        names = _check_names(names, channels, "start: channel_names", ProtocolError)
    source = _call_id(message["call_id"], "start: call_id") if "call_id" in message else default_source
    return CallFormat("raw", source, encoding, int(rate), int(channels), names)


def parse_twilio_start(message: dict[str, Any], default_source: str, names: tuple[str, str]) -> CallFormat:
    """The :class:`CallFormat` of a Twilio Media Streams ``start`` message.

    Twilio's ``start`` message (https://www.twilio.com/docs/voice/media-streams/websocket-messages)::

        {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...",
         "start": {"accountSid": "AC...", "streamSid": "MZ...", "callSid": "CA...",
                   "tracks": ["inbound", "outbound"], "customParameters": {...},
                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}

    Each track listed in ``tracks`` becomes a channel (``inbound`` first), named by ``names``.

    Args:
        message: The decoded JSON object (``"event": "start"``).
        default_source: The call's name when the message has neither ``callSid`` nor ``streamSid``.
        names: Channel names of the ``inbound`` and ``outbound`` tracks.

    Raises:
        ProtocolError: 1003: no ``start`` object, a media format other than µ-law at 8 or
            16 kHz mono, unknown or no tracks, a bad SID.
    """
    start = message.get("start")
    if not isinstance(start, dict):
        raise ProtocolError(CLOSE_UNSUPPORTED, "twilio start: no start object")
    fmt = start.get("mediaFormat", {"encoding": TWILIO_MULAW, "sampleRate": 8000, "channels": 1})
    if not isinstance(fmt, dict) or fmt.get("encoding") != TWILIO_MULAW:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"twilio start: mediaFormat.encoding must be {TWILIO_MULAW}")
    rate = fmt.get("sampleRate", 8000)
    if isinstance(rate, bool) or rate not in SAMPLE_RATES_HZ:
        raise ProtocolError(CLOSE_UNSUPPORTED, "twilio start: mediaFormat.sampleRate must be 8000 or 16000")
    if fmt.get("channels", 1) != 1:
        raise ProtocolError(CLOSE_UNSUPPORTED, "twilio start: mediaFormat.channels must be 1 (one per track)")
    tracks = start.get("tracks", ["inbound"])
    if isinstance(tracks, str):
        tracks = [tracks]
    if not isinstance(tracks, list) or not tracks or any(t not in TWILIO_TRACKS for t in tracks) \
            or len(set(tracks)) != len(tracks):
        raise ProtocolError(CLOSE_UNSUPPORTED, "twilio start: tracks must list inbound and/or outbound")
    ordered = tuple(t for t in TWILIO_TRACKS if t in tracks)
    sid = start.get("callSid") or start.get("streamSid") or message.get("streamSid")
    source = _call_id(sid, "twilio start: callSid") if sid is not None else default_source
    params = start.get("customParameters") or {}
    replies = isinstance(params, dict) and params.get("replies") == "jsonl"
    track_names = dict(zip(TWILIO_TRACKS, names))
    return CallFormat("twilio", source, "mulaw", int(rate), len(ordered), tuple(track_names[t] for t in ordered),
                      replies, ordered, tuple(f"Twilio {t} track" for t in ordered))


# --------------------------------------------------------------------------------------------
# Scoring one call (worker thread)


class CallFiles:
    """A call's output files in ``out_dir``: ``STEM.csv``, ``STEM.jsonl``, ``STEM.summary.json``.

    ``STEM`` is the UTC start time and the call's name with every character outside
    ``A-Z a-z 0-9 . _ -`` replaced by ``_`` (at most 80 of them), e.g.
    ``20250101T120000Z-CA0123.csv``; ``-2``, ``-3``, ... is added when a file of that name exists, so
    no file is ever overwritten.

    Args:
        out_dir: The folder.
        source: The call's name.
        labels: The model's labels (the CSV's columns).

    Raises:
        OutputError: If the files cannot be created.

    Thread: the call's worker.
    """

    def __init__(self, out_dir: str | os.PathLike[str], source: str, labels: tuple[str, ...]) -> None:
        from .sinks import CsvSink, JsonLinesSink, OutputError
        from .summary import SummaryJsonFile

        safe = re.sub(r"[^A-Za-z0-9._-]", "_", source)[:80].lstrip(".") or "call"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        folder = Path(out_dir)
        for n in range(1, 1000):
            stem = f"{stamp}-{safe}" + ("" if n == 1 else f"-{n}")
            paths = [folder / f"{stem}{suffix}" for suffix in (".csv", ".jsonl", ".summary.json")]
            if not any(os.path.lexists(p) for p in paths):
                break
        else:
            raise OutputError(f"{folder}: no free file name for call {safe}")
        self.csv_path, self.jsonl_path, self.summary_path = paths
        self.csv = CsvSink(self.csv_path, labels)
        try:
            self.jsonl = JsonLinesSink(self.jsonl_path)
            try:
                self.summary = SummaryJsonFile(self.summary_path)
            except BaseException:
                self.jsonl.close()
                raise
        except BaseException:
            self.csv.close()
            raise

    def close(self, summary=None) -> None:
        """Write the summary (if given) and close the three files (idempotent).

        Raises:
            OutputError: If a file cannot be finished (a full disk); all are closed anyway.
        """
        from .sinks import OutputError

        failure = None
        if summary is not None and not self.summary.summaries:
            self.summary.add(summary)
        for closing in (self.summary.close, self.jsonl.close, self.csv.close):
            try:
                closing()
            except OutputError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class CallScorer:
    """Scores one call: one :class:`~stream_ser.api.StreamScorer` per channel.

    Args:
        model: The worker's model.
        fmt: The call's format.
        hop_s: Seconds of new audio between predictions (None: the model's).
        gate: The speech gate.
        out_dir: Folder for the call's files, or None.

    Attributes:
        fmt: As given.
        numbers: The channels' numbers (``(0,)`` for unnamed mono, else 1, 2).
        received: Samples taken per channel, at the call's rate (gap silence included).
        files: The call's :class:`CallFiles`, or None.

    Raises:
        ModelError: If the speech gate's model cannot be loaded.
        OutputError: If the call's files cannot be created.

    Thread: one at a time (the call's worker).
    """

    def __init__(self, model, fmt: CallFormat, hop_s: float | None = None, gate: str = "vad",
                 out_dir: str | None = None) -> None:
        from .api import StreamScorer
        from .engine import ClipAccumulator
        from .summary import CallSummaryBuilder

        self.fmt = fmt
        self.model = model
        self.gate = gate
        self.labels = model.labels
        self.numbers = (0,) if fmt.channels == 1 and not fmt.channel_names else tuple(range(1, fmt.channels + 1))
        self.names = fmt.channel_names or (None,) * fmt.channels
        self.scorers = [StreamScorer(model, fmt.sample_rate_hz, hop_s=hop_s, source=fmt.source, channel=n, gate=gate)
                        for n in self.numbers]
        self.hop_s = self.scorers[0].hop_s
        self.builder = CallSummaryBuilder(fmt.source, self.labels, self.hop_s, self.numbers, self.names,
                                          fmt.descriptions)
        self.clips = [ClipAccumulator(self.labels) for _ in self.numbers]
        self.received = [0] * fmt.channels
        self.predictions = 0
        self.files = CallFiles(out_dir, fmt.source, self.labels) if out_dir else None
        self.finished = False

    @property
    def audio_s(self) -> float:
        """Audio taken so far (s): the longest channel's."""
        return max(self.received) / self.fmt.sample_rate_hz

    def started_record(self) -> dict[str, Any]:
        """The ``started`` message: the call's format and the model's labels, hop and window."""
        cfg = self.model.feature_config
        from .types import channel_id_of

        return {
            "type": "started",
            "source": self.fmt.source,
            "protocol": self.fmt.protocol,
            "encoding": self.fmt.encoding,
            "sample_rate": self.fmt.sample_rate_hz,
            "channels": [channel_id_of(n, name) for n, name in zip(self.numbers, self.names)],
            "model": self.model.name,
            "labels": list(self.labels),
            "hop_s": self.hop_s,
            "window_s": cfg.window_s,
            "gate": self.gate,
        }

    def _take(self, index: int, predictions) -> list:
        name = self.names[index]
        out = []
        for p in predictions:
            if name is not None:
                p = dataclasses.replace(p, channel_name=name)
            self.builder.add(p)
            self.clips[index].add(p)
            if self.files is not None:
                self.files.csv.write(p)
                self.files.jsonl.write(p)
            out.append(p)
        self.predictions += len(out)
        return out

    def push_frames(self, data: bytes) -> list[str]:
        """Score a raw binary message: interleaved frames in the call's encoding.

        Args:
            data: ``k * fmt.frame_bytes`` bytes.

        Returns:
            The JSON text of each new prediction, in stream order (per hop, channel order).

        Raises:
            ValueError: If ``data`` is not whole frames.
            OutputError: If a file cannot be written.
        """
        fmt = self.fmt
        if len(data) % fmt.frame_bytes:
            raise ValueError(f"a binary message of {len(data)} bytes is not whole frames of {fmt.frame_bytes} bytes")
        samples = DECODERS[fmt.encoding](data).reshape(-1, fmt.channels)
        per_channel = []
        for i, scorer in enumerate(self.scorers):
            self.received[i] += samples.shape[0]
            per_channel.append(self._take(i, scorer.push(samples[:, i])))
        return self._lines(per_channel)

    def push_channel(self, index: int, data: bytes, at_sample: int | None = None) -> list[str]:
        """Score one channel's µ-law or PCM16 bytes (a Twilio ``media`` payload).

        Args:
            index: The channel (0-based, in :attr:`numbers` order).
            data: The encoded samples.
            at_sample: Where the payload starts on the channel's clock (samples at the call's
                rate, from Twilio's ``media.timestamp``), or None. When it is ahead of the samples
                taken by at least :data:`MIN_GAP_S`, the gap is filled with silence first (at
                most :data:`MAX_GAP_S`), so the channels stay on one clock when packets are lost.

        Returns:
            The JSON text of each new prediction.

        Raises:
            ValueError: If PCM16 bytes are odd in number.
            OutputError: If a file cannot be written.
        """
        x = DECODERS[self.fmt.encoding](data)
        if at_sample is not None and at_sample - self.received[index] >= MIN_GAP_S * self.fmt.sample_rate_hz:
            gap = min(at_sample - self.received[index], int(MAX_GAP_S * self.fmt.sample_rate_hz))
            x = np.concatenate([np.zeros(gap, dtype=np.int16), x])
        self.received[index] += x.size
        return self._lines([self._take(index, self.scorers[index].push(x))])

    def _lines(self, per_channel: list[list]) -> list[str]:
        from .sinks import json_line, prediction_record

        if len(per_channel) == 1:
            merged = per_channel[0]
        else:  # stream order: by window end, then channel order (as ChannelEngines)
            tagged = [(round(p.end_s * 1e6), i, k, p) for i, ps in enumerate(per_channel) for k, p in enumerate(ps)]
            merged = [t[3] for t in sorted(tagged, key=lambda t: t[:3])]
        return [json_line(prediction_record(p)) for p in merged]

    def finish(self) -> tuple[list[str], dict[str, Any]]:
        """End the call: score every channel's last partial hop, then make the clips and summary,
        and close the files (the summary written to ``STEM.summary.json``).

        Returns:
            The JSON text of the last predictions and of one ``clip`` per channel, and the
            ``summary`` message (a dict). Later calls return nothing new.

        Raises:
            OutputError: If a file cannot be written or finished; the files are closed anyway.
        """
        from .sinks import clip_record, json_line

        if self.finished:
            return [], {}
        self.finished = True
        try:
            lines = self._lines([self._take(i, s.flush()) for i, s in enumerate(self.scorers)])
            duration_s = max(s.elapsed_s for s in self.scorers)
            clips = [acc.result(self.fmt.source, duration_s, n, name)
                     for acc, n, name in zip(self.clips, self.numbers, self.names)]
            for clip in clips:
                if self.files is not None:
                    self.files.jsonl.write_clip(clip)
                lines.append(json_line(clip_record(clip)))
            self.builder.set_stream(self.audio_s)
            summary = self.builder.result()
        except BaseException:
            self.close()
            raise
        if self.files is not None:
            files, self.files = self.files, None
            files.close(summary)
        return lines, {"type": "summary", **summary.to_dict()}

    def close(self) -> None:
        """Close the files without finishing (after a write failure); idempotent."""
        self.finished = True
        if self.files is not None:
            files, self.files = self.files, None
            try:
                files.close()
            except Exception:
                pass


class _Worker:
    """A scoring thread with its own model; the calls pinned to it run there one job at a time.

    Attributes:
        calls: Calls pinned to this worker now.
        busy_s: Wall time spent in jobs (s), and ``cpu_s`` the thread's CPU time in them.
    """

    def __init__(self, index: int, model) -> None:
        self.index = index
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stream-ser-score-{index}")
        self.calls = 0
        self.busy_s = 0.0
        self.cpu_s = 0.0

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on this worker's thread and return its result (or raise its error)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, fn, *args)


class _LoadMeter:
    """Process CPU and worker busy time over the last minute, sampled every 5 s."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.samples: collections.deque = collections.deque(maxlen=13)
        self.sample()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), time.process_time(), sum(w.busy_s for w in self.workers),
                             sum(w.cpu_s for w in self.workers)))

    def report(self) -> dict[str, Any]:
        now = (time.monotonic(), time.process_time(), sum(w.busy_s for w in self.workers),
               sum(w.cpu_s for w in self.workers))
        t0, cpu0, busy0, score0 = self.samples[0]
        wall = max(now[0] - t0, 1e-9)
        return {
            "window_s": round(wall, 1),
            "process_cpu": round((now[1] - cpu0) / wall, 4),
            "scoring_cpu": round((now[3] - score0) / wall, 4),
            "workers_busy": round((now[2] - busy0) / wall / max(len(self.workers), 1), 4),
            "scoring_cpu_s_total": round(now[3], 3),
        }


# --------------------------------------------------------------------------------------------
# The server (event loop)


class _Call:
    """A connection's state on the event loop."""

    def __init__(self, number: int, ws, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        self.number = number
        self.ws = ws
        self.worker = worker
        self.stopping: asyncio.Future = loop.create_future()
        self.scorer: CallScorer | None = None
        self.fmt: CallFormat | None = None
        self.opened = time.monotonic()
        self.tokens = 0.0
        self.last_refill = self.opened
        self.audio_started: float | None = None
        self.twilio = False
        self.task = asyncio.current_task()
        self.receiving = False
        self.deadline = math.inf
        self.interrupt: str | None = None


class CallServer:
    """The WebSocket server: accepts calls, scores them on worker threads, answers ``/health``.

    Args:
        options: How to run (checked with :meth:`ServeOptions.check`).
        log: Where per-call lines go (default: standard error unless ``options.quiet``).

    Attributes:
        port: The port listened on (after :meth:`start`).
        calls: The calls open now.
        total_calls: Calls accepted so far; ``refused`` connections refused at the handshake.

    Raises:
        ServeError: From :meth:`ServeOptions.check`.
        ModelError: If the model cannot be loaded.

    Thread: all methods on the event loop's thread, except construction.
    """

    def __init__(self, options: ServeOptions, log: Callable[[str], None] | None = None) -> None:
        from .model import EmotionModel
        from .vad import check_gate

        options.check()
        check_gate(options.gate)
        self.options = options
        self._log = log or (lambda line: None if options.quiet else print(line, file=sys.stderr, flush=True))
        self.workers = [_Worker(i, EmotionModel(options.model, num_threads=options.threads))
                        for i in range(options.workers)]
        self.model = self.workers[0].model
        cfg = self.model.feature_config
        hop = cfg.hop_s if options.hop_s is None else options.hop_s
        if not (math.isfinite(hop) and 1 <= round(hop * cfg.sample_rate_hz) <= cfg.window_samples):
            raise ServeError(f"--hop must be from one sample to the model's window ({cfg.window_s:g} s), got {hop}")
        self.hop_s = hop
        self.calls: dict[int, _Call] = {}
        self.total_calls = 0
        self.refused = 0
        self.started_at = time.monotonic()
        self.port: int | None = None
        self._server = None
        self._closing = False
        self._meter = _LoadMeter(self.workers)
        self._meter_task: asyncio.Task | None = None
        self._token = None if options.token is None else options.token.encode()
        mulaw_table()  # decode the table once, before any call

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start accepting connections; :attr:`port` then holds the port.

        Raises:
            OSError: If the address cannot be bound (in use, not this machine's).
        """
        from websockets.asyncio.server import serve

        o = self.options
        self._server = await serve(
            self._handle, o.host, o.port,
            process_request=self._process_request,
            max_size=o.max_message_bytes,
            compression=None,  # audio does not deflate; and no decompression to bound
            server_header="stream-ser",
            open_timeout=10,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._meter_task = asyncio.get_running_loop().create_task(self._sample_load())

    async def _sample_load(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self._watch()
            ticks += 1
            if ticks % round(5.0 / WATCH_INTERVAL_S) == 0:
                self._meter.sample()

    def _watch(self) -> None:
        """Interrupt the calls waiting for a message past their deadline, or during a shutdown."""
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.receiving and call.interrupt is None and (call.stopping.done() or now > call.deadline):
                call.interrupt = "stop" if call.stopping.done() else "idle"
                call.task.cancel()

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, end every open call as its own stop would (last hop scored, summary
        sent, files closed; close code 1001), then stop the workers."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close(close_connections=False)
        for call in list(self.calls.values()):
            if not call.stopping.done():
                call.stopping.set_result(None)
        self._watch()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout_s)
            except asyncio.TimeoutError:
                self._server.close(close_connections=True)
                await self._server.wait_closed()
        if self._meter_task is not None:
            self._meter_task.cancel()
        for w in self.workers:
            w.executor.shutdown(wait=True)

    # -- HTTP --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The ``GET /health`` report: model, calls open, load (CPU over the last minute as a
        fraction of one core: the whole process, and the scoring threads), and the limits."""
        cfg = self.model.feature_config
        from . import __version__

        return {
            "status": "ok",
            "version": __version__,
            "model": {"name": self.model.name, "labels": list(self.model.labels), "sample_rate_hz": cfg.sample_rate_hz,
                      "window_s": cfg.window_s, "hop_s": self.hop_s, "gate": self.options.gate},
            "calls": {"open": len(self.calls), "max": self.options.max_calls, "total": self.total_calls,
                      "refused": self.refused, "accepting": not self._closing and len(self.calls) < self.options.max_calls},
            "load": {"workers": len(self.workers), **self._meter.report(),
                     "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    def _respond(self, connection, status: int, body: Any, headers: dict[str, str] | None = None):
        text = json.dumps(body) + "\n" if not isinstance(body, str) else body
        response = connection.respond(status, text)
        if not isinstance(body, str):
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    def _process_request(self, connection, request):
        """The handshake hook: ``/health``, then the path, the token and the call limit; None lets
        the WebSocket handshake go on."""
        url = urlsplit(request.path)
        if url.path == HEALTH_PATH:
            return self._respond(connection, 200, self.health())
        rest = url.path[len(CALLS_PATH) + 1:] if url.path.startswith(CALLS_PATH + "/") else None
        if url.path != CALLS_PATH and (rest is None or "/" in rest):
            return self._respond(connection, 404, f"not found: WebSocket calls go to {CALLS_PATH}, the health report "
                                 f"is {HEALTH_PATH}\n")
        if self._token is not None:
            offered = []
            auth = request.headers.get("Authorization")
            if auth:
                scheme, _, value = auth.partition(" ")
                if scheme.lower() == "bearer":
                    offered.append(value.strip())
            offered += parse_qs(url.query).get("token", [])
            if rest:
                offered.append(unquote(rest))
            if not offered:
                self.refused += 1
                return self._respond(connection, 401, "a token is needed: Authorization: Bearer TOKEN, ?token=TOKEN "
                                     f"or {CALLS_PATH}/TOKEN\n", {"WWW-Authenticate": "Bearer"})
            if not any(hmac.compare_digest(t.encode("utf-8", "replace"), self._token) for t in offered):
                self.refused += 1
                return self._respond(connection, 403, "wrong token\n")
        if self._closing:
            self.refused += 1
            return self._respond(connection, 503, "the server is shutting down\n")
        if len(self.calls) >= self.options.max_calls:
            self.refused += 1
            return self._respond(connection, 503, f"too many calls ({self.options.max_calls} open); try again later\n",
                                 {"Retry-After": "5"})
        return None

    # -- a call ------------------------------------------------------------------------------

    async def _handle(self, ws) -> None:
        """One connection: register the call, read its messages, score, reply, end it."""
        if self._closing or len(self.calls) >= self.options.max_calls:
            self.refused += 1
            await ws.close(CLOSE_TRY_AGAIN, f"too many calls ({self.options.max_calls} open); try again later")
            return
        self.total_calls += 1
        worker = min(self.workers, key=lambda w: w.calls)
        call = _Call(self.total_calls, ws, worker, asyncio.get_running_loop())
        call.tokens = self.options.max_messages_per_s
        self.calls[call.number] = call
        worker.calls += 1
        code, reason, ended = CLOSE_NORMAL, "call ended", "stop"
        try:
            try:
                await self._serve_call(call)
                if call.stopping.done() and self._closing:
                    code, reason, ended = CLOSE_GOING_AWAY, "server shutting down", "server shutting down"
            except ProtocolError as exc:
                code, reason, ended = exc.code, exc.reason, exc.message
                await self._send_error(call, exc.message)
            except _ClientGone as exc:
                code, reason, ended = None, "", f"connection closed by the client ({exc})"
            except Exception as exc:  # a fault of ours or a full disk: this call only
                from .sinks import OutputError

                message = str(exc) if isinstance(exc, OutputError) else f"internal error: {type(exc).__name__}: {exc}"
                code, reason, ended = CLOSE_SERVER_ERROR, message, message
                await self._send_error(call, message)
            await self._finish(call, send=code in (CLOSE_NORMAL, CLOSE_GOING_AWAY))
        except _ClientGone as exc:
            code, ended = None, f"{ended}; connection lost while finishing ({exc})"
        except Exception as exc:
            code, reason, ended = CLOSE_SERVER_ERROR, "internal error", f"{ended}; finishing failed: {exc}"
        finally:
            worker.calls -= 1
            del self.calls[call.number]
            if call.scorer is not None and not call.scorer.finished:
                await worker.run(call.scorer.close)
        if code is not None:
            try:
                await ws.close(code, ProtocolError(code, reason).reason)
            except Exception:
                pass
        self._log_call(call, ended)

    async def _finish(self, call: _Call, send: bool) -> None:
        """Score the last hop, make the clips and summary, close the files; send them if ``send``."""
        if call.scorer is None:
            return
        lines, summary = await call.worker.run(call.scorer.finish)
        if send and call.fmt is not None and call.fmt.replies:
            for line in lines:
                await self._send(call, line)
            from .sinks import json_line

            await self._send(call, json_line(summary))

    async def _send(self, call: _Call, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await call.ws.send(text)
        except ConnectionClosed as exc:
            raise _ClientGone(_closed_text(exc)) from None

    async def _send_error(self, call: _Call, message: str) -> None:
        if (call.fmt is not None and not call.fmt.replies) or (call.fmt is None and call.twilio):
            return  # Twilio takes no messages it does not know (its errors 31924 and 31951)
        from .sinks import error_record, json_line

        source = call.fmt.source if call.fmt is not None else f"call-{call.number}"
        try:
            await self._send(call, json_line(error_record(source, message)))
        except _ClientGone:
            pass

    async def _receive(self, call: _Call, timeout_s: float):
        """The next message (str or bytes), or None when the server is shutting down.

        Raises:
            ProtocolError: 1008 after ``timeout_s`` without a message, or above the message rate.
            _ClientGone: When the connection closed (the client went away, or a message was too
                big: the library closed it with 1009).
        """
        from websockets.exceptions import ConnectionClosed

        if call.stopping.done():
            return None
        # The watchdog (:meth:`_watch`) cancels this wait, and only this one (recv() may be
        # cancelled safely), when the deadline passes or the server shuts down: cheaper than a
        # timer task per message.
        call.deadline = time.monotonic() + timeout_s
        call.interrupt = None
        call.receiving = True
        try:
            message = await call.ws.recv()
        except asyncio.CancelledError:
            if call.interrupt is None:
                raise  # not ours
            if hasattr(call.task, "uncancel"):  # Python >= 3.11: the request is handled
                call.task.uncancel()
            if call.interrupt == "stop":
                return None
            raise ProtocolError(CLOSE_POLICY, f"no message for {timeout_s:g} s") from None
        except ConnectionClosed as exc:
            raise _ClientGone(_closed_text(exc)) from None
        finally:
            call.receiving = False
        now = time.monotonic()
        rate = self.options.max_messages_per_s
        call.tokens = min(rate, call.tokens + (now - call.last_refill) * rate) - 1.0
        call.last_refill = now
        if call.tokens < 0:
            raise ProtocolError(CLOSE_POLICY, f"more than {rate:g} messages per second")
        return message

    async def _pace(self, call: _Call) -> None:
        """Slow a sender that is ahead of ``max_speed`` x real time (after ``burst_s``)."""
        speed = self.options.max_speed
        if not speed or call.scorer is None:
            return
        now = time.monotonic()
        if call.audio_started is None:
            call.audio_started = now
        ahead_s = call.scorer.audio_s - self.options.burst_s - (now - call.audio_started) * speed
        if ahead_s > 0:  # (a shutdown does not wait for it)
            await asyncio.wait({call.stopping}, timeout=min(ahead_s / speed, 5.0))

    async def _serve_call(self, call: _Call) -> None:
        first = await self._receive(call, self.options.start_timeout_s)
        if first is None:
            return
        message = self._json(first, "the first message must be a JSON start message (raw protocol) or Twilio's "
                             "connected/start")
        if "event" in message:
            call.twilio = True
            await self._serve_twilio(call, message)
        elif message.get("type") == "start":
            await self._start(call, parse_raw_start(message, f"call-{call.number}"))
            await self._serve_raw(call)
        else:
            raise ProtocolError(CLOSE_UNSUPPORTED, 'the first message must be {"type": "start", ...} or Twilio\'s '
                                "connected/start")

    def _json(self, message, expected: str) -> dict[str, Any]:
        if not isinstance(message, str):
            raise ProtocolError(CLOSE_UNSUPPORTED, f"binary message where a text message was expected: {expected}")
        try:
            obj = json.loads(message)
        except (ValueError, RecursionError):
            raise ProtocolError(CLOSE_UNSUPPORTED, "a text message that is not JSON") from None
        if not isinstance(obj, dict):
            raise ProtocolError(CLOSE_UNSUPPORTED, "a text message that is not a JSON object")
        return obj

    async def _start(self, call: _Call, fmt: CallFormat) -> None:
        call.fmt = fmt
        o = self.options
        call.scorer = await call.worker.run(CallScorer, call.worker.model, fmt, self.hop_s, o.gate, o.out_dir)
        if fmt.replies:
            from .sinks import json_line

            await self._send(call, json_line(call.scorer.started_record()))

    async def _serve_raw(self, call: _Call) -> None:
        while True:
            message = await self._receive(call, self.options.idle_timeout_s)
            if message is None:
                return
            if isinstance(message, bytes):
                if not message:
                    continue
                if len(message) % call.fmt.frame_bytes:
                    raise ProtocolError(CLOSE_UNSUPPORTED, f"a binary message of {len(message)} bytes is not whole "
                                        f"frames of {call.fmt.frame_bytes} bytes ({call.fmt.encoding}, "
                                        f"{call.fmt.channels} channel(s))")
                lines = await call.worker.run(call.scorer.push_frames, message)
                await self._reply(call, lines)
                await self._pace(call)
                continue
            obj = self._json(message, "")
            kind = obj.get("type")
            if kind == "stop":
                return
            raise ProtocolError(CLOSE_UNSUPPORTED, f"unexpected message type {str(kind)[:40]!r}: after start, send "
                                'binary audio and {"type": "stop"}')

    async def _serve_twilio(self, call: _Call, message: dict[str, Any]) -> None:
        if message.get("event") == "connected":
            message = self._json(await self._receive_or_end(call, self.options.start_timeout_s),
                                 "Twilio's start message")
        if message.get("event") != "start":
            raise ProtocolError(CLOSE_UNSUPPORTED, f"twilio: expected the start message, got event "
                                f"{str(message.get('event'))[:40]!r}")
        fmt = parse_twilio_start(message, f"call-{call.number}", self.options.twilio_names)
        await self._start(call, fmt)
        channel_of = {track: i for i, track in enumerate(fmt.tracks)}
        while True:
            raw = await self._receive(call, self.options.idle_timeout_s)
            if raw is None:
                return
            message = self._json(raw, "Twilio messages are JSON text")
            event = message.get("event")
            if event == "stop":
                return
            if event in ("connected", "mark", "dtmf"):
                continue
            if event != "media":
                raise ProtocolError(CLOSE_UNSUPPORTED, f"twilio: unexpected event {str(event)[:40]!r}")
            media = message.get("media")
            if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
                raise ProtocolError(CLOSE_UNSUPPORTED, "twilio media: no media.payload")
            track = media.get("track", fmt.tracks[0])
            if track not in channel_of:
                raise ProtocolError(CLOSE_UNSUPPORTED, f"twilio media: track {str(track)[:20]!r} is not one of the "
                                    f"start message's tracks ({', '.join(fmt.tracks)})")
            try:
                data = base64.b64decode(media["payload"], validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(CLOSE_UNSUPPORTED, "twilio media: payload is not base64") from None
            at = None
            stamp = media.get("timestamp")
            if isinstance(stamp, (str, int)) and not isinstance(stamp, bool) and str(stamp).isdigit():
                at = int(stamp) * fmt.sample_rate_hz // 1000
            lines = await call.worker.run(call.scorer.push_channel, channel_of[track], data, at)
            await self._reply(call, lines)
            await self._pace(call)

    async def _receive_or_end(self, call: _Call, timeout_s: float):
        message = await self._receive(call, timeout_s)
        if message is None:
            raise ProtocolError(CLOSE_GOING_AWAY, "server shutting down")
        return message

    async def _reply(self, call: _Call, lines: list[str]) -> None:
        if call.fmt.replies:
            for line in lines:
                await self._send(call, line)

    def _log_call(self, call: _Call, ended: str) -> None:
        from .text import printable

        fmt, scorer = call.fmt, call.scorer
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if fmt is None or scorer is None:
            self._log(printable(f"stream-ser: serve: {when} connection {call.number} ended before its start message: "
                                f"{ended}"))
            return
        summary = scorer.builder.result()
        sides = []
        for ch in summary.channels:
            shares = ch.emotion_share() or {}
            top = max(shares.items(), key=lambda kv: kv[1])[0] if shares else "no speech"
            sides.append(f"{ch.channel_id}: {top}, speech {ch.speech_s:.1f} s")
        files = f", files {scorer.files.csv_path.parent}" if scorer.files else ""
        self._log(printable(f"stream-ser: serve: {when} call {fmt.source} ({fmt.protocol}, {fmt.encoding} "
                            f"{fmt.sample_rate_hz} Hz) ended ({ended}): {scorer.audio_s:.1f} s of audio, "
                            f"{scorer.predictions} predictions; {'; '.join(sides)}{files}"))


class _ClientGone(Exception):
    """The connection closed under the call (the client left, or the library closed it)."""


def _closed_text(exc) -> str:
    rcvd = getattr(exc, "rcvd", None)
    sent = getattr(exc, "sent", None)
    frame = sent if sent is not None else rcvd
    if frame is None:
        return "no close frame"
    return f"code {frame.code}" + (f", {frame.reason}" if frame.reason else "")


# --------------------------------------------------------------------------------------------
# Running it


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
    return _check_names(tuple(x.strip() for x in text.split(",")), 2, "names", argparse.ArgumentTypeError)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """As the other commands' help: the description wrapped, the examples as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


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

    from .features import one_blas_thread
    from .model import ModelError
    from .text import printable

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


if __name__ == "__main__":
    sys.exit(main())
