"""The WebSocket server on its event loop: :class:`CallServer` accepts a connection (token, call
limit, ``/health`` on the same port), reads the call's messages, hands the audio to the call's
worker thread and sends the results back; a bad message closes that call only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..adaptation import resolve_adapt
from .calls import CallScorer, _LoadMeter, _Worker
from .protocol import (
    CALLS_PATH,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    HEALTH_PATH,
    WATCH_INTERVAL_S,
    CallFormat,
    ProtocolError,
    ServeError,
    ServeOptions,
    mulaw_table,
    parse_raw_start,
    parse_twilio_start,
)


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
        ServeError: From :meth:`ServeOptions.check`, or an ``adapt`` the model does not carry.
        ModelError: If the model cannot be loaded.

    Thread: all methods on the event loop's thread, except construction.
    """

    def __init__(self, options: ServeOptions, log: Callable[[str], None] | None = None) -> None:
        from ..model import EmotionModel
        from ..vad import check_gate

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
        try:
            #: The adaptation to the voice every call runs (``options.adapt`` resolved against the model).
            self.adaptation = resolve_adapt(options.adapt, self.model.metadata.embedding_adaptation,
                                            self.model.metadata.output_prior)
        except ValueError as exc:
            raise ServeError(f"--adapt {options.adapt}: model {self.model.name}: {exc}") from None
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
        from .. import __version__

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
                from ..sinks import OutputError

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
            from ..sinks import json_line

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
        from ..sinks import error_record, json_line

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
        call.scorer = await call.worker.run(CallScorer, call.worker.model, fmt, self.hop_s, o.gate, o.out_dir,
                                            self.adaptation)
        if fmt.replies:
            from ..sinks import json_line

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
        from ..text import printable

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
