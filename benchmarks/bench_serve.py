"""Cost of ``stream-ser serve`` per live call: server CPU per call and reply latency.

Starts the server as its own process (``python -m stream_ser.serve --port 0``, the options of
``stream-ser serve``, a random token in ``STREAM_SER_TOKEN``), then plays N concurrent simulated
calls into it from this process for ``--seconds`` at real-time pace, as Twilio Media Streams
would send them: per call two tracks (inbound, outbound), one ``media`` message of 20 ms of 8 kHz
µ-law per track every 20 ms, replies on (``customParameters.replies = "jsonl"``), so the figures
include sending one JSON object per hop and channel back. The audio is a real recording, the
shipped demo (``stream_ser/demo/demo.flac``: RAVDESS speech, 21 s) or ``--clip``, looped; the
outbound track is the same recording started half-way, so both sides talk.

It measures, after a warm-up of ``--warmup`` seconds:

* server CPU: utime + stime of the server process (``/proc/PID/stat``, every thread) over the
  wall time, as a percentage of one core, in total and per call;
* latency of each prediction: when it arrived here minus when the media message that completed
  its hop was sent (so it includes the loopback network, decoding, resampling, the speech gate,
  features, the model and the reply), median and p99;
* predictions received against expected (2 channels x hops).

    python benchmarks/bench_serve.py --calls 1 4 16 --seconds 30
    taskset -c 0 python benchmarks/bench_serve.py --calls 8 --workers 1   # one core

It prints the figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "stream_ser" / "demo" / "demo.flac"


def mulaw_8k(path: Path) -> bytes:
    """The recording at 8 kHz mono as G.711 µ-law bytes (libsndfile's encoder)."""
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    y = soxr.resample(x.mean(axis=1), rate, 8000)
    buf = io.BytesIO()
    sf.write(buf, y, 8000, format="RAW", subtype="ULAW")
    return buf.getvalue()


def cpu_s(pid: int) -> float:
    """utime + stime of a process (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workers: int | None, token: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "stream_ser.serve", "--port", "0", "--max-calls", "1000", *extra]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "STREAM_SER_TOKEN": token}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"ws://127\.0\.0\.1:(\d+)/calls", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # never let its pipe fill
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stderr.read()}")


def scoring_cpu_s(port: int) -> float:
    """CPU seconds the server's scoring threads have used so far (its ``/health`` report)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return json.loads(r.read())["load"]["scoring_cpu_s_total"]


async def one_call(port: int, token: str, audio: bytes, number: int, seconds: float, stats: dict) -> None:
    from websockets.asyncio.client import connect

    sid = f"MZ{number:032d}"
    half = (len(audio) // 2) // 160 * 160
    sent_at: dict[tuple[str, int], float] = {}  # (track, chunk index) -> monotonic time sent
    async with connect(f"ws://127.0.0.1:{port}/calls/{token}", max_size=2**22, compression=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "start", "streamSid": sid, "start": {
            "streamSid": sid, "callSid": f"CA{number:032d}", "tracks": ["inbound", "outbound"],
            "customParameters": {"replies": "jsonl"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))

        async def reader() -> None:
            async for text in ws:
                m = json.loads(text)
                if m["type"] != "prediction":
                    continue
                now = time.monotonic()
                chunk = int(round(m["end_s"] * 8000)) // 160 - 1  # the chunk that completed the hop
                t = sent_at.get((m["channel"], chunk))
                stats["predictions"] += 1
                if t is not None and now >= stats["measure_from"]:
                    stats["latency"].append(now - t)

        task = asyncio.create_task(reader())
        t0 = time.monotonic() + 0.001 * (number % 20)  # calls spread over the 20 ms frame
        n = int(seconds * 50)
        for k in range(n):
            delay = t0 + k * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for track, offset in (("inbound", 0), ("outbound", half)):
                i = (offset + k * 160) % (len(audio) - 160)
                payload = base64.b64encode(audio[i:i + 160]).decode()
                sent_at[(track, k)] = time.monotonic()
                await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {
                    "track": track, "chunk": str(k + 1), "timestamp": str(k * 20), "payload": payload}}))
        await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
        await task
    stats["calls_done"] += 1


async def run_calls(port: int, token: str, audio: bytes, calls: int, seconds: float, warmup: float,
                    pid: int) -> dict:
    stats = {"predictions": 0, "latency": [], "calls_done": 0, "measure_from": time.monotonic() + warmup}
    tasks = [asyncio.create_task(one_call(port, token, audio, i, seconds + warmup, stats)) for i in range(calls)]
    await asyncio.sleep(warmup)
    c0, w0, h0 = cpu_s(pid), time.monotonic(), scoring_cpu_s(port)
    await asyncio.sleep(seconds - 0.5)
    c1, w1, h1 = cpu_s(pid), time.monotonic(), scoring_cpu_s(port)
    await asyncio.gather(*tasks)
    stats["cpu_core_pct"] = 100 * (c1 - c0) / (w1 - w0)
    stats["scoring_share"] = (h1 - h0) / max(c1 - c0, 1e-9)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[1, 4, 16], help="concurrent calls, one run each")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run (after the warm-up)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument("--workers", type=int, default=None, help="the server's --workers (default: its own)")
    ap.add_argument("--clip", type=Path, default=DEMO, help="recording to play (default: the shipped demo)")
    ap.add_argument("--gate", choices=("vad", "level"), default="vad")
    args = ap.parse_args()
    audio = mulaw_8k(args.clip)
    token = secrets.token_urlsafe(24)
    print(f"clip {args.clip.name} ({len(audio) / 8000:.1f} s), 2 tracks per call, 20 ms Twilio media messages, "
          f"{args.seconds:g} s measured after {args.warmup:g} s; gate {args.gate}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'calls':>5} {'server CPU %core':>16} {'per call':>9} {'of it scoring':>14} {'predictions':>12} "
          f"{'latency p50':>12} {'p99':>8}")
    for calls in args.calls:
        proc, port = start_server(args.workers, token, ["--gate", args.gate, "-q"])
        try:
            stats = asyncio.run(run_calls(port, token, audio, calls, args.seconds, args.warmup, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        expected = calls * 2 * int((args.seconds + args.warmup) / 0.5)
        lat = sorted(stats["latency"])
        p50 = 1000 * statistics.median(lat) if lat else float("nan")
        p99 = 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
        print(f"{calls:>5} {stats['cpu_core_pct']:>15.1f}% {stats['cpu_core_pct'] / calls:>8.2f}% "
              f"{100 * stats['scoring_share']:>13.0f}% "
              f"{stats['predictions']:>5}/{expected:<6} {p50:>10.1f}ms {p99:>6.1f}ms")


if __name__ == "__main__":
    main()
