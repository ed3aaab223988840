"""Two virtual input devices captured at once through real PortAudio streams (docs/calls.md).

A PulseAudio daemon of its own (``tests/virtual_mic.sh`` with a separate state directory) gets
two null sinks, ``stream_ser_agent`` (44.1 kHz mono) and ``stream_ser_customer`` (48 kHz stereo);
their monitors, "Monitor of Call Agent" and "Monitor of Call Customer", are two input sources,
which stream-ser lists through ``pactl`` and opens through ALSA's ``pulse`` device. A different
real clip is played into each sink with ``paplay``; each channel must carry its own clip (and not
the other), both clips must come out aligned in time, and the measured clock drift between the
two devices (which share PulseAudio's clock) must be small.

Skipped like ``test_capture.py`` when the virtual devices cannot be set up, unless
``STREAM_SER_REQUIRE_AUDIO`` is set.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, ListenProcess
from test_capture import SCRIPT, SETUP_TIMEOUT_S, _max_normalised_xcorr, _reinit_portaudio, _unavailable

pytestmark = pytest.mark.audio

STATE = Path(os.environ.get("VMIC_CALL_STATE", "/tmp/stream-ser-vmic-call"))
SINKS = {  # sink -> (rate, channels, description)
    "stream_ser_agent": ("44100", "1", "Call Agent"),
    "stream_ser_customer": ("48000", "2", "Call Customer"),
}


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VMIC_STATE": str(STATE)}
    env.pop("PULSE_SERVER", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, env=env)


@pytest.fixture(scope="module")
def call_devices() -> Iterator[str]:
    """A PulseAudio daemon with the two call sinks; yields its ``PULSE_SERVER``."""
    if shutil.which("bash") is None:
        _unavailable("bash not found")
    try:
        proc = _script("start")
    except subprocess.TimeoutExpired:
        _unavailable(f"{SCRIPT.name} did not finish within {SETUP_TIMEOUT_S:.0f} s")
    if proc.returncode != 0:
        _unavailable(f"{SCRIPT.name} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    server = [ln for ln in proc.stdout.splitlines() if ln.startswith("export PULSE_SERVER=")][-1].split("=", 1)[1]
    started_here = "reusing" not in proc.stderr
    for sink, (rate, channels, description) in SINKS.items():
        added = _script("add-sink", sink, rate, channels, description)
        if added.returncode != 0:
            _unavailable(f"cannot add sink {sink}: {added.stderr.strip()[-400:]}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_SERVER", server)
        try:
            _reinit_portaudio()
            yield server
        finally:
            mp.undo()
            if started_here:
                _script("stop")
            _reinit_portaudio()


def play(server: str, sink: str, clip: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["paplay", f"--device={sink}", str(clip)], env={**os.environ, "PULSE_SERVER": server},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_monitor_sources_are_listed_and_matched(call_devices) -> None:
    from stream_ser.audio import AudioSourceError, find_input_device, list_input_devices

    devices = {d.name: d for d in list_input_devices()}
    agent, customer = devices["Monitor of Call Agent"], devices["Monitor of Call Customer"]
    assert agent.is_monitor and agent.pulse_source == "stream_ser_agent.monitor"
    assert agent.max_input_channels == 1 and agent.default_sample_rate_hz in (44100.0, 48000.0)  # 48 kHz: alternate rate
    assert (customer.max_input_channels, customer.default_sample_rate_hz) == (2, 48000.0)
    assert find_input_device("Call Agent") == agent and find_input_device("stream_ser_customer") == customer
    with pytest.raises(AudioSourceError, match="matches several input devices"):
        find_input_device("Monitor of Call")


def test_two_devices_capture_their_own_clips_aligned(call_devices, shipped_model) -> None:
    from stream_ser.engine import ChannelEngines
    from stream_ser.audio import MultiDeviceSource, load_audio

    sr = 16000
    angry, happy = load_audio(ANGRY_CLIP, sr), load_audio(HAPPY_CLIP, sr)
    ChannelEngines(shipped_model, channels=(1, 2)).push(np.zeros((48000, 2), np.float32))  # warm up numba
    source = MultiDeviceSource(["Monitor of Call Agent", "Monitor of Call Customer"], sample_rate_hz=sr)
    engines = ChannelEngines(shipped_model, source=source.name, channels=source.channel_numbers,
                             channel_names=("agent", "customer"))
    blocks, preds, players = [], [], []
    watchdog = threading.Timer(30.0, source.stop)
    watchdog.daemon = True
    t0 = time.monotonic()
    try:
        source.start()
        watchdog.start()
        done_at = None
        for block in source.frames():
            blocks.append(block)
            preds += engines.push(block)
            now = time.monotonic()
            if not players and now - t0 > 0.5:
                players = [play(call_devices, "stream_ser_agent", ANGRY_CLIP),
                           play(call_devices, "stream_ser_customer", HAPPY_CLIP)]
            elif players and done_at is None and all(p.poll() is not None for p in players):
                done_at = now
            if done_at is not None and now - done_at > 1.0:
                source.stop()
        preds += engines.flush()
    finally:
        watchdog.cancel()
        source.close()
        for p in players:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)
    assert players and all(p.returncode == 0 for p in players), [p.stderr.read() for p in players if p.stderr]
    audio = np.concatenate(blocks)
    assert audio.shape[1] == 2 and audio.shape[0] / sr > angry.size / sr
    # each channel carries its own clip, not the other's
    own = [_max_normalised_xcorr(audio[:, 0], angry), _max_normalised_xcorr(audio[:, 1], happy)]
    cross = [_max_normalised_xcorr(audio[:, 0], happy)[0], _max_normalised_xcorr(audio[:, 1], angry)[0]]
    assert own[0][0] > 0.5 and own[1][0] > 0.5, own
    assert cross[0] < own[0][0] - 0.2 and cross[1] < own[1][0] - 0.2, (own, cross)
    # played at the same moment, they come out at the same moment (paplay start-up jitter aside)
    assert abs(own[0][1] - own[1][1]) / sr < 0.15, own
    # per-channel speech follows each side: speech windows only where its clip played
    for number, (_, lag), clip in ((1, own[0], angry), (2, own[1], happy)):
        speech = [p for p in preds if p.channel == number and p.is_speech]
        assert speech and all(lag / sr < p.end_s <= (lag + clip.size) / sr + 3.0 for p in speech)
    ref, other = source.clock_report()
    assert ref.drift_ppm == 0.0 and other.drift_ppm is not None
    # both sinks run on PulseAudio's clock: the drift is consistent with 0, and was not "corrected"
    assert abs(other.drift_ppm) < max(1000.0, 3 * other.drift_uncertainty_ppm), other
    assert abs(other.corrected_frames) < 0.01 * audio.shape[0] * 3, other
    assert source.stats.dropped_frames == 0


def test_cli_listen_two_devices(call_devices, tmp_path) -> None:
    out, summary = tmp_path / "call.csv", tmp_path / "summary.json"
    listen = ListenProcess(
        ["--device", "Monitor of Call Agent", "--device", "Monitor of Call Customer", "--channel-names",
         "agent,customer", "--duration", "7", "--csv", str(out), "--summary-json", str(summary)],
        {**os.environ, "PULSE_SERVER": call_devices},
    )
    proc = listen.proc
    players = []
    rest = ""
    try:
        assert listen.listening.wait(60), "stream-ser listen never started listening"
        time.sleep(0.5)
        players = [play(call_devices, "stream_ser_agent", ANGRY_CLIP), play(call_devices, "stream_ser_customer", HAPPY_CLIP)]
        stdout, rest = proc.communicate(timeout=60)  # (stderr is read by both; keep both parts)
    finally:
        for p in [proc, *players]:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)
    stderr = listen.join_reader() + (rest or "")
    assert proc.returncode == 0, stderr
    # (PulseAudio may have switched the agent sink to its alternate rate, 48 kHz, while an earlier
    # test played into it; the monitor's native rate follows)
    assert re.search(r"listening to mic:Monitor of Call Agent \+ mic:Monitor of Call Customer \((44100/)?48000 Hz "
                     r"-> 16000 Hz", stderr), stderr
    assert "call summary:" in stderr and "clock: mic:Monitor of Call Customer runs" in stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["channel"] for r in rows[:2]] == ["agent", "customer"] and len(rows) == 2 * 14
    for name in ("agent", "customer"):
        assert any(r["speech"] == "1" for r in rows if r["channel"] == name), name
    (entry,) = json.loads(summary.read_text())["summaries"]
    assert [c["channel"] for c in entry["channels"]] == ["agent", "customer"]
    assert all(c["speech_s"] > 0 for c in entry["channels"])
    assert len(entry["clocks"]) == 2 and entry["clocks"][1]["nominal_rate_hz"] == 48000
    assert len(stdout.strip().splitlines()) == 2 * 14
