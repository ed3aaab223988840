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

Modules: :mod:`.protocol` (limits, start messages, decoding, close codes), :mod:`.calls`
(scoring one call on its worker thread, its files), :mod:`.server` (the event loop's
:class:`CallServer`) and :mod:`.command` (``stream-ser serve``, :func:`serve_forever`,
:class:`BackgroundServer`). Everything public is imported here.
"""

from __future__ import annotations

from .calls import CallFiles, CallScorer
from .command import BackgroundServer, add_parser, default_workers, main, options_from_args, run, serve_forever
from .protocol import (
    CALLS_PATH,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    DEFAULT_PORT,
    HEALTH_PATH,
    MAX_GAP_S,
    MIN_GAP_S,
    MIN_TOKEN_CHARS,
    TOKEN_ENV,
    TOKEN_PATTERN,
    CallFormat,
    ProtocolError,
    ServeError,
    ServeOptions,
    decode_mulaw,
    decode_pcm16,
    mulaw_table,
    parse_raw_start,
    parse_twilio_start,
)
from .server import CallServer

__all__ = [
    "CALLS_PATH",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_SERVER_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN",
    "CLOSE_UNSUPPORTED",
    "DEFAULT_PORT",
    "HEALTH_PATH",
    "MAX_GAP_S",
    "MIN_GAP_S",
    "MIN_TOKEN_CHARS",
    "TOKEN_ENV",
    "TOKEN_PATTERN",
    "BackgroundServer",
    "CallFiles",
    "CallFormat",
    "CallScorer",
    "CallServer",
    "ProtocolError",
    "ServeError",
    "ServeOptions",
    "add_parser",
    "decode_mulaw",
    "decode_pcm16",
    "default_workers",
    "main",
    "mulaw_table",
    "options_from_args",
    "parse_raw_start",
    "parse_twilio_start",
    "run",
    "serve_forever",
]
