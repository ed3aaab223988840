"""What a call sends and what the server accepts: the limits (:class:`ServeOptions`), the start
messages of both protocols (:class:`CallFormat`), µ-law and PCM16 decoding, and the errors that
close a connection (:class:`ProtocolError`, with its WebSocket close code).

Nothing here touches the network or the model, so it is tested on its own.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..channels import ChannelPlan, ChannelPlanError

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
        adapt: The adaptation to each channel's voice, ``"auto"`` (default), ``"embedding"``,
            ``"output"`` or ``"none"`` (see :class:`~stream_ser.engine.Engine`).
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
    adapt: str = "auto"
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
        _check_names(self.twilio_names, "--twilio-names", ServeError, count=2)
        if self.out_dir is not None:
            path = Path(self.out_dir)
            if not path.is_dir():
                raise ServeError(f"--out-dir {self.out_dir}: not a folder (create it first)")
            if not os.access(path, os.W_OK | os.X_OK):
                raise ServeError(f"--out-dir {self.out_dir}: not writable")


def _check_names(names: Sequence[Any], what: str, error: type[Exception], count: int | None = None) -> tuple[str, ...]:
    """Validate channel names: a list of distinct, printable strings of 1 to 32 characters that
    are not numbers (numbers are what unnamed channels get); ``count`` of them when given (an
    option of fixed arity such as ``--twilio-names IN,OUT``; a call's names are matched to its
    channels by its :class:`~stream_ser.channels.ChannelPlan`).

    Raises:
        ``error``: Naming ``what`` and the rule broken (a :class:`ProtocolError` is made with 1003).
    """

    def fail(text: str) -> Exception:
        return error(CLOSE_UNSUPPORTED, text) if error is ProtocolError else error(text)

    if not isinstance(names, (list, tuple)) or (count is not None and len(names) != count):
        raise fail(f"{what} must be a list of {count or 'channel'} name(s), one per channel")
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
        plan: The call's :class:`~stream_ser.channels.ChannelPlan`, made from the above: mono
            without a name is channel 0, otherwise the channels are 1 and 2.

    Raises:
        ChannelPlanError: If the names or descriptions do not match the channels in number.
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
    plan: ChannelPlan = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numbers = (0,) if self.channels == 1 and not self.channel_names else tuple(range(1, self.channels + 1))
        plan = ChannelPlan.of(numbers, self.channel_names, self.descriptions, source=self.source)
        object.__setattr__(self, "plan", plan)

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
        names = _check_names(names, "start: channel_names", ProtocolError)
    source = _call_id(message["call_id"], "start: call_id") if "call_id" in message else default_source
    try:
        return CallFormat("raw", source, encoding, int(rate), int(channels), names)
    except ChannelPlanError:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"start: channel_names must be a list of {channels} name(s), one per "
                            "channel") from None


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
