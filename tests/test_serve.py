"""``stream-ser serve``: the WebSocket server for live calls (stream_ser/serve/, docs/serve.md).

Every server here runs in-process on an ephemeral port of 127.0.0.1 (``BackgroundServer``) and
every client is websockets' synchronous client. The audio is the fixture clips (RAVDESS, 16 kHz
PCM16 FLAC): streamed as PCM16 at 16 kHz, as µ-law at 8 kHz and as Twilio Media Streams messages,
and the replies are checked against the Python API scoring the same samples.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

pytest.importorskip("websockets")

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx  # noqa: E402
from stream_ser import analyse, analyse_channels  # noqa: E402
from stream_ser.api import StreamScorer  # noqa: E402
from stream_ser.engine import window_ends  # noqa: E402
from stream_ser.serve import (  # noqa: E402
    TOKEN_ENV,
    BackgroundServer,
    CallServer,
    ServeError,
    ServeOptions,
    add_parser,
    decode_mulaw,
    mulaw_table,
)
from stream_ser.sinks import clip_record, prediction_record  # noqa: E402
from stream_ser.summary import summarise_call  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STOP = json.dumps({"type": "stop"})


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calls")


@pytest.fixture(scope="module")
def server(out_dir):
    """The server most tests use: limits that a client streaming a clip as fast as it can stays
    within, at most 2 calls, 64 KiB messages, per-call files in ``out_dir``."""
    opts = ServeOptions(port=0, token=TOKEN, workers=2, max_calls=2, max_message_bytes=65536,
                        max_messages_per_s=100_000, max_speed=0, out_dir=str(out_dir), quiet=True)
    with BackgroundServer(opts) as srv:
        yield srv


@pytest.fixture(scope="module")
def strict_server():
    """A server with tight limits: 20 messages/s, 1 s idle, 1 s to start, 2x real time after 1 s."""
    opts = ServeOptions(port=0, token=TOKEN, workers=1, max_calls=4, max_messages_per_s=20, idle_timeout_s=1.0,
                        start_timeout_s=1.0, max_speed=2.0, burst_s=1.0, quiet=True)
    with BackgroundServer(opts) as srv:
        yield srv


def ws_url(srv, path: str = "/calls") -> str:
    """The URL of a server (a BackgroundServer, or a port number)."""
    return f"ws://127.0.0.1:{srv if isinstance(srv, int) else srv.port}{path}"


def open_call(srv, path: str = "/calls", headers=AUTH):
    return connect(ws_url(srv, path), additional_headers=headers, open_timeout=10, max_size=2**22)


def drain(ws, timeout: float = 60.0) -> tuple[list[dict], int | None, str]:
    """Every message until the server closes: (objects, close code, close reason)."""
    out = []
    while True:
        try:
            out.append(json.loads(ws.recv(timeout=timeout)))
        except ConnectionClosed:
            break
    return out, ws.close_code, ws.close_reason


def wait_for_calls(srv, n: int, timeout: float = 10.0) -> None:
    """Wait until the server has ``n`` calls open (a call ends on the server a moment after the
    client saw its close)."""
    deadline = time.monotonic() + timeout
    while srv.call(lambda s: len(s.calls)) != n:
        assert time.monotonic() < deadline, "calls did not end"
        time.sleep(0.02)


def pcm16(path: Path) -> np.ndarray:
    x, rate = sf.read(path, dtype="int16")
    assert rate == 16000 and x.ndim == 1
    return x


def mulaw_8k(path: Path) -> bytes:
    """The clip at 8 kHz (soxr) as G.711 µ-law bytes, encoded by libsndfile."""
    x, rate = sf.read(path, dtype="float32")
    y = soxr.resample(x, rate, 8000)
    buf = io.BytesIO()
    sf.write(buf, y, 8000, format="RAW", subtype="ULAW")
    return buf.getvalue()


def ulaw_samples(data: bytes) -> np.ndarray:
    """µ-law bytes decoded by libsndfile directly (the reference for the server's table)."""
    return sf.read(io.BytesIO(data), format="RAW", subtype="ULAW", samplerate=8000, channels=1, dtype="int16")[0]


def scored(model, samples: np.ndarray, rate: int, source: str, channel: int = 0, name: str | None = None) -> list[dict]:
    """The JSON-lines records of the API's StreamScorer on ``samples`` (the reference)."""
    s = StreamScorer(model, rate, source=source, channel=channel)
    preds = s.push(samples) + s.flush()
    return [{**prediction_record(p), "channel": name if name else channel} for p in preds]


def predictions(messages: list[dict], channel=None) -> list[dict]:
    return [m for m in messages if m["type"] == "prediction" and (channel is None or m["channel"] == channel)]


def twilio_messages(tracks: dict[str, bytes], call_sid: str, replies: bool, skip: dict[str, range] | None = None):
    """Twilio Media Streams messages for µ-law 8 kHz tracks: connected, start, 20 ms media per
    track (interleaved, with chunk and timestamp), stop; chunks in ``skip`` are left out (lost)."""
    sid = "MZ" + "0" * 32
    out = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
           {"event": "start", "sequenceNumber": "1", "streamSid": sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": sid, "callSid": call_sid, "tracks": list(tracks),
                      "customParameters": {"replies": "jsonl"} if replies else {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}]
    n = max(len(b) for b in tracks.values())
    seq = 2
    for k, i in enumerate(range(0, n, 160)):
        for track, data in tracks.items():
            if i >= len(data) or (skip and k in skip.get(track, ())):
                continue
            out.append({"event": "media", "sequenceNumber": str(seq), "streamSid": sid,
                        "media": {"track": track, "chunk": str(k + 1), "timestamp": str(k * 20),
                                  "payload": base64.b64encode(data[i:i + 160]).decode()}})
            seq += 1
    out.append({"event": "stop", "sequenceNumber": str(seq), "streamSid": sid,
                "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}})
    return [json.dumps(m) for m in out]


# --------------------------------------------------------------------------------------------
# audio in, predictions out


def test_pcm16_16k_stream_equals_the_api_on_the_same_file(server, shipped_model):
    x = pcm16(ANGRY_CLIP)
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "angry-1"}))
        for i in range(0, len(x), 1600):  # 100 ms messages
            ws.send(x[i:i + 1600].astype("<i2").tobytes())
        ws.send(STOP)
        messages, code, reason = drain(ws)
    assert (code, reason) == (1000, "call ended")
    started = messages[0]
    assert started["type"] == "started" and started["labels"] == list(shipped_model.labels)
    assert (started["protocol"], started["encoding"], started["sample_rate"], started["channels"]) == \
        ("raw", "pcm16", 16000, [0])
    ref = analyse(ANGRY_CLIP, model=shipped_model, source="angry-1")
    expected = [prediction_record(p) for p in ref.timeline]
    got = predictions(messages)
    assert len(got) == len(window_ends(len(x), 8000)) == 9  # one per 0.5 s hop, the last one partial
    assert all(list(m) == list(expected[0]) for m in got)  # the JSON lines' keys, in their order
    assert got == expected
    assert any(m["speech"] for m in got)
    assert [m["type"] for m in messages[1 + len(got):]] == ["clip", "summary"]
    assert messages[-2] == clip_record(ref.clip)
    summary = summarise_call(ref.timeline, "angry-1", shipped_model.labels, 0.5).to_dict()
    assert messages[-1] == {"type": "summary", **summary}


def test_two_pcm16_channels_are_each_scored_as_alone(server, shipped_model):
    a, b = pcm16(ANGRY_CLIP), pcm16(HAPPY_CLIP)
    offset = len(a) // 2  # the customer starts half-way through the agent's clip
    stereo = np.zeros((max(len(a), offset + len(b)), 2), dtype=np.int16)
    stereo[: len(a), 0] = a
    stereo[offset: offset + len(b), 1] = b
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "channels": 2,
                            "channel_names": ["agent", "customer"], "call_id": "stereo"}))
        raw = stereo.astype("<i2").tobytes()
        for i in range(0, len(raw), 4 * 1000):
            ws.send(raw[i:i + 4 * 1000])
        ws.send(STOP)
        messages, code, _ = drain(ws)
    assert code == 1000
    ref = analyse_channels(stereo, 16000, channel_names=["agent", "customer"], model=shipped_model, source="stereo")
    expected = [prediction_record(p) for p in sorted(
        [p for r in ref for p in r.timeline], key=lambda p: (round(p.end_s * 1e6), p.channel))]
    assert predictions(messages) == expected  # per hop: agent, then customer
    assert [m for m in messages if m["type"] == "clip"] == [clip_record(r.clip) for r in ref]
    summary = summarise_call([p for r in ref for p in r.timeline], "stereo", shipped_model.labels, 0.5, (1, 2),
                             ("agent", "customer")).to_dict()
    assert messages[-1] == {"type": "summary", **summary}


def test_mulaw_8k_stream_equals_the_api_at_8k(server, shipped_model):
    data = mulaw_8k(ANGRY_CLIP)
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000, "call_id": "ulaw"}))
        for i in range(0, len(data), 800):
            ws.send(data[i:i + 800])
        ws.send(STOP)
        messages, code, _ = drain(ws)
    assert code == 1000
    got = predictions(messages)
    assert got == scored(shipped_model, ulaw_samples(data), 8000, "ulaw")
    assert len(got) == len(window_ends(2 * len(data), 8000))
    assert any(m["speech"] for m in got)
    assert messages[-1]["type"] == "summary" and messages[-1]["duration_s"] == pytest.approx(len(data) / 8000, abs=1e-3)


def test_mulaw_table_is_libsndfiles_g711_decoder():
    table = mulaw_table()
    assert table.dtype == np.int16 and table.shape == (256,)
    assert (table[0xFF], table[0x7F], table[0x00], table[0x80]) == (0, 0, -32124, 32124)  # G.711 values
    data = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    np.testing.assert_array_equal(decode_mulaw(data), ulaw_samples(data))


def test_twilio_media_streams_two_tracks(server, shipped_model):
    inbound, outbound = mulaw_8k(ANGRY_CLIP), mulaw_8k(HAPPY_CLIP)
    call_sid = "CA" + "1" * 32
    with open_call(server, f"/calls/{TOKEN}", headers={}) as ws:  # Twilio: the token in the path
        for m in twilio_messages({"inbound": inbound, "outbound": outbound}, call_sid, replies=True):
            ws.send(m)
        messages, code, _ = drain(ws)
    assert code == 1000
    assert messages[0]["type"] == "started" and messages[0]["channels"] == ["inbound", "outbound"]
    assert messages[0]["source"] == call_sid
    for number, (name, data) in enumerate((("inbound", inbound), ("outbound", outbound)), start=1):
        assert predictions(messages, name) == scored(shipped_model, ulaw_samples(data), 8000, call_sid, number, name)
    summary = messages[-1]
    assert summary["type"] == "summary"
    assert [c["channel"] for c in summary["channels"]] == ["inbound", "outbound"]
    assert [c["description"] for c in summary["channels"]] == ["Twilio inbound track", "Twilio outbound track"]


def test_twilio_without_replies_sends_nothing_and_writes_the_files(server, out_dir, shipped_model):
    inbound = mulaw_8k(ANGRY_CLIP)
    call_sid = "CA" + "2" * 32
    lost = range(50, 75)  # 0.5 s of packets lost: the timestamps put the rest where it belongs
    with open_call(server, f"/calls/{TOKEN}", headers={}) as ws:
        for m in twilio_messages({"inbound": inbound}, call_sid, replies=False, skip={"inbound": lost}):
            ws.send(m)
        messages, code, _ = drain(ws)
    assert (messages, code) == ([], 1000)  # Twilio gets nothing back (its errors 31924/31951)
    wait_for_calls(server, 0)
    stem = next(out_dir.glob(f"*-{call_sid}.csv")).name[: -len(".csv")]
    rows = (out_dir / f"{stem}.csv").read_text().splitlines()
    lines = [json.loads(line) for line in (out_dir / f"{stem}.jsonl").read_text().splitlines()]
    doc = json.loads((out_dir / f"{stem}.summary.json").read_text())
    # the reference: the same audio with the lost packets as silence
    samples = ulaw_samples(inbound)
    samples[50 * 160: 75 * 160] = 0
    expected = scored(shipped_model, samples, 8000, call_sid, 1, "inbound")
    assert [m for m in lines if m["type"] == "prediction"] == expected
    assert [m["type"] for m in lines[len(expected):]] == ["clip"]
    assert rows[0].startswith("source,channel,start_s,end_s,speech,label,confidence,p_neutral")
    assert len(rows) == 1 + len(expected) and all(r.startswith(f"{call_sid},inbound,") for r in rows[1:])
    assert doc["format"] == "stream-ser call summary" and doc["version"] == 2
    assert doc["summaries"][0]["duration_s"] == pytest.approx(len(inbound) / 8000, abs=1e-3)


def test_twilio_timestamps_fill_lost_chunks_and_ignore_jitter(shipped_model):
    from stream_ser.serve import CallFormat, CallScorer

    fmt = CallFormat("twilio", "CA-gaps", "mulaw", 8000, 1, ("inbound",), False, ("inbound",))
    scorer = CallScorer(shipped_model, fmt, gate="level")
    chunk = b"\xff" * 160  # 20 ms of µ-law silence
    scorer.push_channel(0, chunk, at_sample=0)
    scorer.push_channel(0, chunk, at_sample=21 * 8)  # 1 ms late: jitter, nothing added
    assert scorer.received == [320]
    scorer.push_channel(0, chunk, at_sample=60 * 8)  # the chunk at 40 ms was lost: 20 ms of silence
    assert scorer.received == [640]
    scorer.push_channel(0, chunk, at_sample=3_600_000 * 8)  # an hour ahead: at most 60 s filled
    assert scorer.received == [640 + 60 * 8000 + 160]
    lines, summary = scorer.finish()
    assert summary["duration_s"] == pytest.approx((640 + 60 * 8000 + 160) / 8000, abs=1e-3)
    assert len(lines) == 2 and json.loads(lines[-1])["type"] == "clip"  # the last partial hop, then the clip


def test_a_hostile_call_id_names_files_inside_the_folder(server, out_dir):
    before = set(out_dir.iterdir())
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "../../etc/x y"}))
        ws.send(np.zeros(16000, dtype="<i2").tobytes())
        ws.send(STOP)
        messages, code, _ = drain(ws)
    assert code == 1000 and messages[1]["source"] == "../../etc/x y"
    wait_for_calls(server, 0)
    new = sorted(p.name for p in set(out_dir.iterdir()) - before)
    assert len(new) == 3 and all(n.split("-", 1)[1].startswith("_.._etc_x_y.") for n in new), new


# --------------------------------------------------------------------------------------------
# authentication


def test_no_token_is_refused_before_the_upgrade(server):
    with pytest.raises(InvalidStatus) as e:
        open_call(server, headers={})
    assert e.value.response.status_code == 401


@pytest.mark.parametrize("how", ["header", "query", "path"])
def test_a_wrong_token_is_refused(server, how):
    wrong = "wrong-token-0123456789abcd"
    path, headers = {"header": ("/calls", {"Authorization": f"Bearer {wrong}"}),
                     "query": (f"/calls?token={wrong}", {}), "path": (f"/calls/{wrong}", {})}[how]
    with pytest.raises(InvalidStatus) as e:
        open_call(server, path, headers)
    assert e.value.response.status_code == 403


def test_the_token_in_the_query_is_accepted_and_other_paths_are_not_found(server):
    with open_call(server, f"/calls?token={TOKEN}", headers={}) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000}))
        assert json.loads(ws.recv(timeout=10))["type"] == "started"
    with pytest.raises(InvalidStatus) as e:
        open_call(server, "/other")
    assert e.value.response.status_code == 404
    wait_for_calls(server, 0)


def test_serve_refuses_to_start_without_a_token(monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    args = parser.parse_args(["serve", "--port", "0"])
    assert args.host == "127.0.0.1"
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("stream-ser: error: serve needs a token: set STREAM_SER_TOKEN") and "--insecure-no-auth" in err
    monkeypatch.setenv(TOKEN_ENV, "short")
    assert args.func(args) == 2
    assert "must be 16 to 512 characters" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    args = parser.parse_args(["serve", "--insecure-no-auth"])
    assert args.func(args) == 2
    assert "choose one" in capsys.readouterr().err
    with pytest.raises(ServeError):
        ServeOptions().check()
    ServeOptions(insecure_no_auth=True).check()
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "websockets" else object())
    assert args.func(args) == 2
    assert 'serve needs the websockets package: pip install "stream-ser[serve]"' in capsys.readouterr().err


def test_insecure_no_auth_accepts_a_call_without_a_token():
    with BackgroundServer(ServeOptions(port=0, insecure_no_auth=True, gate="level", quiet=True)) as srv:
        with open_call(srv, headers={}) as ws:
            ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000}))
            ws.send(pcm16(HAPPY_CLIP).astype("<i2").tobytes()[:32000])
            ws.send(STOP)
            messages, code, _ = drain(ws)
    assert code == 1000 and messages[0]["gate"] == "level"
    assert len(predictions(messages)) == 2 and messages[-1]["type"] == "summary"


# --------------------------------------------------------------------------------------------
# limits and bad messages


def test_an_oversized_message_closes_its_call_and_the_other_call_goes_on(server, shipped_model):
    x = pcm16(ANGRY_CLIP)
    start = json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "good"})
    with open_call(server) as good, open_call(server) as bad:
        good.send(start)
        bad.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "bad"}))
        half = len(x) // 2 // 1600 * 1600
        for i in range(0, half, 1600):
            good.send(x[i:i + 1600].astype("<i2").tobytes())
        bad.send(b"\0" * (65536 + 2))
        bad_messages, code, reason = drain(bad)
        assert code == 1009 and "65536" in reason, reason
        assert "summary" not in [m["type"] for m in bad_messages]  # at most "started" came before
        for i in range(half, len(x), 1600):
            good.send(x[i:i + 1600].astype("<i2").tobytes())
        good.send(STOP)
        messages, code, _ = drain(good)
    assert code == 1000
    ref = analyse(ANGRY_CLIP, model=shipped_model, source="good")
    assert predictions(messages) == [prediction_record(p) for p in ref.timeline]
    assert messages[-1]["type"] == "summary"
    wait_for_calls(server, 0)


def test_max_calls_is_enforced(server):
    start = json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000})
    with open_call(server) as a, open_call(server) as b:
        for ws in (a, b):
            ws.send(start)
            assert json.loads(ws.recv(timeout=10))["type"] == "started"
        with pytest.raises(InvalidStatus) as e:
            open_call(server)
        assert e.value.response.status_code == 503
        assert e.value.response.headers["Retry-After"] == "5"
        a.send(STOP)
        drain(a)
        wait_for_calls(server, 1)
        with open_call(server) as c:  # a place is free again
            c.send(start)
            assert json.loads(c.recv(timeout=10))["type"] == "started"
    wait_for_calls(server, 0)


@pytest.mark.parametrize("first, second, code, words", [
    ("not json", None, 1003, "not JSON"),
    (b"\0\0", None, 1003, "binary message where a text message was expected"),
    ("[" * 30_000 + "]" * 30_000, None, 1003, "not JSON"),  # nested past Python's recursion limit
    (json.dumps({"hello": 1}), None, 1003, "the first message must be"),
    (json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 44100}), None, 1003, "sample_rate must be"),
    (json.dumps({"type": "start", "encoding": "alaw", "sample_rate": 8000}), None, 1003, "encoding must be"),
    (json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 8000, "rate": 1}), None, 1003, "unknown field"),
    (json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 8000, "channels": 2,
                 "channel_names": ["a", "1"]}), None, 1003, "names must not be numbers"),
    (json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 8000}), b"\0\0\0", 1003, "not whole frames"),
    (json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 8000}), json.dumps({"type": "pause"}), 1003,
     "unexpected message type"),
    (json.dumps({"event": "start", "start": {"mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000}}}), None,
     1003, "mediaFormat.encoding"),
    (json.dumps({"event": "start", "start": {"tracks": ["inbound"]}}),
     json.dumps({"event": "media", "media": {"track": "inbound", "payload": "%%%"}}), 1003, "not base64"),
    (json.dumps({"event": "start", "start": {"tracks": ["inbound"]}}),
     json.dumps({"event": "media", "media": {"track": "outbound", "payload": ""}}), 1003, "not one of the start"),
])
def test_a_bad_message_closes_its_call_with_a_reason(server, first, second, code, words):
    with open_call(server) as ws:
        ws.send(first)
        if second is not None:
            ws.send(second)
        messages, got_code, reason = drain(ws)
    assert got_code == code and words in reason, reason
    if not (isinstance(first, str) and first.startswith('{"event"')):  # Twilio gets no messages back
        assert messages[-1]["type"] == "error" and words in messages[-1]["message"]
    wait_for_calls(server, 0)


def test_message_rate_idle_and_start_timeouts(strict_server):
    start = json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000})
    with open_call(strict_server) as ws:  # 60 messages at once: 20/s with a one-second burst
        ws.send(start)
        for _ in range(60):
            ws.send(b"\xff" * 160)
        _, code, reason = drain(ws)
    assert (code, reason) == (1008, "more than 20 messages per second")
    with open_call(strict_server) as ws:
        ws.send(start)
        t0 = time.monotonic()
        _, code, reason = drain(ws)
    assert (code, reason) == (1008, "no message for 1 s") and 0.9 < time.monotonic() - t0 < 5
    with open_call(strict_server) as ws:
        _, code, reason = drain(ws)
    assert (code, reason) == (1008, "no message for 1 s")
    wait_for_calls(strict_server, 0)


def test_a_fast_sender_is_slowed_to_max_speed(strict_server):
    data = mulaw_8k(ANGRY_CLIP)  # 4.4 s of audio; 1 s ahead allowed, then 2x real time: >= 1.6 s
    with open_call(strict_server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000}))
        t0 = time.monotonic()
        for i in range(0, len(data), 4000):  # 0.5 s messages, 9 of them (within 20 messages/s)
            ws.send(data[i:i + 4000])
        ws.send(STOP)
        messages, code, _ = drain(ws)
        took = time.monotonic() - t0
    assert code == 1000 and messages[-1]["type"] == "summary"
    assert took >= (len(data) / 8000 - 1.0) / 2.0 - 0.2


def test_a_file_that_cannot_be_written_ends_that_call_with_1011(server, out_dir, monkeypatch):
    from stream_ser.sinks import CsvSink, OutputError

    write = CsvSink.write

    def full_disk(self, p):
        if p.source == "full" and p.end_s > 1.0:
            raise OutputError(f"{self.path}: cannot write (No space left on device)")
        write(self, p)

    monkeypatch.setattr(CsvSink, "write", full_disk)
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "full"}))
        ws.send(pcm16(HAPPY_CLIP).astype("<i2").tobytes()[:64000])
        messages, code, reason = drain(ws)
    assert code == 1011 and reason.endswith("cannot write (No space left on device)")
    assert messages[-1]["type"] == "error" and messages[-1]["source"] == "full"
    assert predictions(messages) == []  # the message whose rows failed gets no reply
    wait_for_calls(server, 0)
    rows = next(out_dir.glob("*-full.csv")).read_text().splitlines()
    assert [r.split(",")[3] for r in rows[1:]] == ["0.500", "1.000"]  # the rows before the failure, whole


def test_a_slow_scorer_blocks_neither_the_loop_nor_the_other_calls(server, monkeypatch):
    """Scoring runs on the calls' worker threads: while one call's scoring is stuck for 3 s, the
    health report answers and a call on the other worker is scored to the end."""
    import stream_ser.serve as serve

    push = serve.CallScorer.push_frames

    def slow_push(self, data):
        if self.fmt.source == "slow":
            time.sleep(3.0)
        return push(self, data)

    monkeypatch.setattr(serve.CallScorer, "push_frames", slow_push)
    x = pcm16(HAPPY_CLIP)
    with open_call(server) as slow, open_call(server) as fast:
        slow.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "slow"}))
        assert json.loads(slow.recv(timeout=10))["type"] == "started"
        slow.send(x[:1600].astype("<i2").tobytes())  # its worker is now asleep for 3 s
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as r:
            assert json.loads(r.read())["calls"]["open"] == 2
        fast.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000, "call_id": "fast"}))
        fast.send(x.astype("<i2").tobytes()[:64000])
        fast.send(STOP)
        messages, code, _ = drain(fast)
        took = time.monotonic() - t0
        assert code == 1000 and messages[-1]["type"] == "summary" and len(predictions(messages)) == 4
        assert took < 2.5, took
        slow.send(STOP)
        messages, code, _ = drain(slow)
        assert code == 1000 and messages[-1]["type"] == "summary"
    wait_for_calls(server, 0)


# --------------------------------------------------------------------------------------------
# health and shutdown


def test_health_reports_the_model_calls_and_load(server):
    with open_call(server) as ws:
        ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000}))
        ws.recv(timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json"
            health = json.loads(r.read())
    assert health["status"] == "ok"
    assert health["model"]["name"] == "stream-ser" and health["model"]["hop_s"] == 0.5
    assert health["calls"]["open"] == 1 and health["calls"]["max"] == 2 and health["calls"]["accepting"]
    assert set(health["load"]) >= {"workers", "process_cpu", "scoring_cpu", "workers_busy"}
    assert health["load"]["workers"] == 2
    wait_for_calls(server, 0)


def test_health_is_plain_http_and_unknown_paths_are_404(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nothing", timeout=10)
    assert e.value.code == 404


def test_shutdown_ends_open_calls_with_their_summary(shipped_model):
    srv = BackgroundServer(ServeOptions(port=0, token=TOKEN, quiet=True)).start()
    x = pcm16(HAPPY_CLIP)
    try:
        with open_call(srv) as ws:
            ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000}))
            raw = x.astype("<i2").tobytes()
            for i in range(0, len(raw), 3200):
                ws.send(raw[i:i + 3200])
            assert json.loads(ws.recv(timeout=10))["type"] == "started"
            while len(predictions([json.loads(ws.recv(timeout=10))])) == 0:
                pass
            stopper = threading.Thread(target=srv.stop)
            stopper.start()
            messages, code, reason = drain(ws)
            stopper.join()
    finally:
        srv.stop()
    assert (code, reason) == (1001, "server shutting down")
    assert [m["type"] for m in messages][-2:] == ["clip", "summary"]
    assert messages[-1]["duration_s"] == max(m["end_s"] for m in predictions(messages)) > 0


def test_the_command_serves_until_sigterm_and_ends_the_open_call(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, TOKEN_ENV: TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "stream_ser.serve", "--port", "0", "--workers", "1", "--out-dir",
                             str(tmp_path)], cwd=Path(__file__).resolve().parents[1], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/calls", first).group(1))
        with open_call(port) as ws:
            ws.send(json.dumps({"type": "start", "encoding": "mulaw", "sample_rate": 8000, "call_id": "cli"}))
            data = mulaw_8k(HAPPY_CLIP)
            for i in range(0, len(data), 800):
                ws.send(data[i:i + 800])
            assert json.loads(ws.recv(timeout=30))["type"] == "started"
            proc.send_signal(signal.SIGTERM)
            messages, code, reason = drain(ws)
        assert (code, reason) == (1001, "server shutting down") and messages[-1]["type"] == "summary"
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "call cli (raw, mulaw 8000 Hz) ended (server shutting down)" in rest
        assert rest.rstrip().endswith("stream-ser: serve stopped")
        assert len(list(tmp_path.glob("*-cli.summary.json"))) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_adapt_option_runs_in_every_call_and_is_checked_at_start(tmp_path):
    """--adapt reaches every call's scorers (the predictions say which adaptation ran), and one
    the model does not carry stops the server before it listens."""
    plain = make_tiny_onnx(tmp_path / "plain.onnx", ("neutral", "happy", "sad"))
    with pytest.raises(ServeError, match="--adapt embedding: model plain: .*carries no adaptation"):
        CallServer(ServeOptions(port=0, insecure_no_auth=True, adapt="embedding", quiet=True, model=str(plain)))
    with BackgroundServer(ServeOptions(port=0, insecure_no_auth=True, gate="level", adapt="none", quiet=True)) as srv:
        with open_call(srv, headers={}) as ws:
            ws.send(json.dumps({"type": "start", "encoding": "pcm16", "sample_rate": 16000}))
            x = pcm16(HAPPY_CLIP)
            for i in range(0, len(x), 16000):
                ws.send(x[i:i + 16000].astype("<i2").tobytes())
            ws.send(STOP)
            messages, code, _ = drain(ws)
    got = predictions(messages)
    assert code == 1000 and got and {p["adaptation"] for p in got} == {"none"}
    want = analyse(HAPPY_CLIP, gate="level", adapt="none").timeline
    assert [p["label"] for p in got] == [p.label for p in want]
