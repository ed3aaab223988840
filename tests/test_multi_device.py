"""Several devices on one clock (:class:`~stream_ser.sources.MultiDeviceSource`, ``listen
--device A --device B``) and the channels of one device, with fake PortAudio streams that run
at a chosen real rate. Real PulseAudio devices are tested in ``test_call_capture.py``."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soxr
from conftest import ANGRY_CLIP, HAPPY_CLIP, padded

from stream_ser.audio import devices as sources
from stream_ser.cli import main
from stream_ser.engine import ChannelEngines
from stream_ser.sources import AudioSourceError, ClockAligner, InputDevice, MicrophoneSource, MultiDeviceSource

RATE = 48000


class PacedStream:
    """A fake PortAudio input stream delivering ``audio`` at ``actual_rate_hz`` frames per second
    of the wall clock from a thread, through the capture callback, while it claims the nominal
    rate it was opened at: a device whose crystal runs fast or slow.

    With ``epoch`` (a ``time.monotonic()`` value), ``audio`` is what plays in the room from that
    moment on, and the device records it from when its thread actually starts (skipping what
    played before), as a real device does: devices started a few ms apart hear the same sound at
    the same wall time."""

    def __init__(self, audio: np.ndarray, actual_rate_hz: float, then: str = "finish", epoch: float | None = None,
                 before_finish=None, **kw) -> None:
        self.audio, self.rate, self.then, self.epoch = audio, actual_rate_hz, then, epoch
        self.before_finish = before_finish  # called before finishing (a test orders events with it)
        self.delivered = 0  # frames passed to the callback so far
        self.callback, self.finished = kw["callback"], kw["finished_callback"]
        self.blocksize = kw["blocksize"]
        self.opened_with = kw
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        audio = self.audio
        if self.epoch is not None:
            audio = audio[max(0, int(round((t0 - self.epoch) * self.rate))) :]
        done = 0
        while done < audio.shape[0] and not self.stopped.is_set():
            block = audio[done : done + self.blocksize]
            block = block[:, None] if block.ndim == 1 else block
            delay = t0 + (done + block.shape[0]) / self.rate - time.monotonic()
            if delay > 0:
                self.stopped.wait(delay)
            self.callback(block, block.shape[0], None, None)
            done += block.shape[0]
            self.delivered = done
        if self.then == "finish":
            if self.before_finish is not None:
                self.before_finish()
            self.finished()
        else:
            self.stopped.wait()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join(5)

    def close(self) -> None:
        pass


def call_audio(repeat: int = 1) -> np.ndarray:
    """Real speech at 48 kHz: two clips back to back (8.7 s), ``repeat`` times."""
    return soxr.resample(np.tile(np.concatenate(padded(ANGRY_CLIP, HAPPY_CLIP)), repeat), 16000, RATE).astype(np.float32)


def lag_samples(x: np.ndarray, y: np.ndarray, center: int, half: int = 4000, max_lag: int = 800) -> int:
    """Lag (samples) of ``x`` against ``y`` around ``center``, by cross-correlation."""
    seg = y[center - half : center + half]
    lags = range(-max_lag, max_lag + 1)
    return max(lags, key=lambda lag: float(np.dot(x[center - half + lag : center + half + lag], seg)))


def test_device_running_half_a_percent_fast_stays_aligned() -> None:
    """Two devices hear the same speech; the second device's clock runs 0.5 % fast. The drift is
    measured (about +5000 ppm, reported in the clock report) and corrected, so the channels stay
    aligned on the first device's clock instead of sliding apart by 80 samples per second.
    (13 s of audio: the estimate waits for 1 s of warm-up plus enough timing to be significant,
    longer on a busy machine, then catches up.)"""
    audio = call_audio(2)[: 13 * RATE]
    drift = 0.005
    fast = soxr.resample(audio, RATE, RATE * (1 + drift)).astype(np.float32)  # what a fast device records
    devices = [InputDevice(0, "Microphone", "test", 1, RATE, True), InputDevice(1, "Monitor of Speakers", "test", 1, RATE, False, True)]

    epoch = time.monotonic()  # the speech starts playing in the room now

    def factory(**kw):
        if kw["device"] == 0:
            return PacedStream(audio, RATE, epoch=epoch, **kw)
        return PacedStream(fast, RATE * (1 + drift), epoch=epoch, **kw)

    source = MultiDeviceSource(devices, stream_factory=factory)
    assert source.name == "mic:Microphone + mic:Monitor of Speakers" and source.channel_numbers == (1, 2)
    blocks = []
    source.start()
    with pytest.raises(AudioSourceError, match="ended unexpectedly"):  # the fake devices end with their audio
        for block in source.frames():
            blocks.append(block)
    got = np.concatenate(blocks)
    assert got.shape[1] == 2 and got.shape[0] > 12 * 16000
    ref, other = source.clock_report()
    assert ref.drift_ppm == 0.0 and ref.corrected_frames == 0
    assert other.drift_ppm == pytest.approx(5000, abs=600), other
    assert other.drift_uncertainty_ppm < 1000, other
    assert other.corrected_frames > 0.8 * drift * 12 * RATE, other  # caught up: ~0.5 % of the frames dropped
    late = [lag_samples(got[:, 1], got[:, 0], c) for c in (10 * 16000, 11 * 16000, got.shape[0] - 8000)]
    assert all(abs(lag) <= 24 for lag in late), late  # within 1.5 ms; uncorrected it would be ~900 samples


def test_clock_aligner_drops_and_repeats_evenly() -> None:
    fast = ClockAligner(48000)
    fast.applied_drift = 0.001  # +1000 ppm: one frame in 1001 goes
    out = sum(fast.adjust(np.ones((4800, 1), np.float32)).shape[0] for _ in range(100))
    assert 480000 - out == fast.corrected_frames == round(480000 * 0.001 / 1.001)
    slow = ClockAligner(48000)
    slow.applied_drift = -0.001
    ramp = np.arange(4800, dtype=np.float32)[:, None]
    y = slow.adjust(ramp)
    assert y.shape[0] == 4800 + 5 and np.all(np.diff(y[:, 0]) >= 0)  # repeated frames, order kept
    offset = ClockAligner(48000)
    offset.set_start_offset(0.01)  # started 10 ms later: 480 frames of silence first
    y = offset.adjust(np.ones((100, 1), np.float32))
    assert y.shape[0] == 580 and not y[:480].any()


def test_listen_two_devices_cli(monkeypatch, tmp_path, capsys) -> None:
    """``listen --device A --device B``: one session, one channel per device, the names in the CSV,
    the call summary with the devices' clocks on stderr and in --summary-json."""
    audio = call_audio()
    devices = {"Mic": InputDevice(3, "USB Mic", "ALSA", 1, RATE, True),
               "Monitor": InputDevice(4, "Monitor of Speakers", "PulseAudio", 2, 44100, False, True, "speakers.monitor")}
    at_44k = soxr.resample(audio, RATE, 44100).astype(np.float32)
    stereo = np.stack([at_44k, np.zeros_like(at_44k)], axis=1)  # the other side on the left channel only
    opened = []

    def factory(**kw):
        opened.append((kw["device"], kw["samplerate"], kw["channels"], os.environ.get("PULSE_SOURCE")))
        data = audio if kw["device"] == 3 else stereo[:, : kw["channels"]]
        return PacedStream(data, float(kw["samplerate"]), then="stop", **kw)

    monkeypatch.setattr(sources, "find_input_device", lambda spec: devices[spec])
    monkeypatch.setattr(sources, "_sounddevice", lambda: SimpleNamespace(InputStream=factory))
    out, summary = tmp_path / "call.csv", tmp_path / "s.json"
    code = main(["listen", "--no-tui", "--device", "Mic", "--device", "Monitor", "--channel-names", "me,them",
                 "--duration", "4", "--csv", str(out), "--summary-json", str(summary)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # the PulseAudio source was opened through ALSA's pulse device with PULSE_SOURCE set, then unset
    assert opened == [(3, RATE, 1, None), (4, 44100, 1, "speakers.monitor")] and "PULSE_SOURCE" not in os.environ
    assert "listening to mic:USB Mic + mic:Monitor of Speakers (48000/44100 Hz -> 16000 Hz, channels me = mic:USB Mic" in captured.err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["channel"] for r in rows[:2]] == ["me", "them"] and len(rows) == 16  # 8 hops x 2 channels
    assert {r["source"] for r in rows} == {"mic:USB Mic + mic:Monitor of Speakers"}
    assert "clock: mic:Monitor of Speakers runs" in captured.err and "ppm" in captured.err
    doc = json.loads(summary.read_text())
    (entry,) = doc["summaries"]
    assert [c["channel"] for c in entry["channels"]] == ["me", "them"]
    assert [c["device"] for c in entry["clocks"]] == ["mic:USB Mic", "mic:Monitor of Speakers"]
    assert entry["clocks"][1]["nominal_rate_hz"] == 44100 and entry["clocks"][1]["drift_ppm"] is not None


def test_listen_device_option_errors(capsys) -> None:
    assert main(["listen", "--device", "a", "--device", "b", "--channels", "1"]) == 2
    assert "each device is one channel" in capsys.readouterr().err
    assert main(["listen", "--device", "a", "--device", "b", "--channel-names", "x,y,z"]) == 2
    assert "3 name(s) for 2 devices" in capsys.readouterr().err
    assert main(["listen", "--device", "a", "--input", str(ANGRY_CLIP)]) == 2


@pytest.mark.parametrize("fault", ["vanish", "stall"])
def test_one_device_failing_ends_the_multi_device_stream(fault) -> None:
    """A device that vanishes (or stops delivering) while the other goes on ends the stream with
    an error naming it, after everything aligned was delivered; the other device is stopped."""
    audio = np.zeros(RATE * 20, np.float32)
    first = audio[:RATE] if fault == "vanish" else audio[:0]
    devices = [InputDevice(0, "A", "t", 1, RATE, True), InputDevice(1, "B", "t", 1, RATE, False)]
    streams = {}

    def b_has_delivered_as_much() -> None:
        # A vanishes only once B has delivered its first second too, however loaded the machine
        # is (B's thread may lag A's), so that second is aligned and must come out
        deadline = time.monotonic() + 5
        while (1 not in streams or streams[1].delivered < RATE) and time.monotonic() < deadline:
            time.sleep(0.002)

    def factory(**kw):
        data, then = (first, "finish" if fault == "vanish" else "stop") if kw["device"] == 0 else (audio, "stop")
        streams[kw["device"]] = PacedStream(data, 4 * RATE, then=then, before_finish=b_has_delivered_as_much, **kw)
        return streams[kw["device"]]

    source = MultiDeviceSource(devices, stream_factory=factory, stall_timeout_s=0.5)
    got = 0
    t0 = time.monotonic()
    source.start()
    want = "mic:A: the input stream ended unexpectedly" if fault == "vanish" else "mic:A: no audio for 0.5 s"
    with pytest.raises(AudioSourceError, match=want):
        for block in source.frames():
            got += block.shape[0]
    assert time.monotonic() - t0 < 5
    assert source.failure is not None and source.failure.startswith(want)
    assert streams[1].stopped.is_set()  # the other device was stopped too
    if fault == "vanish":
        assert got == pytest.approx(16000, abs=400)  # the second A delivered, aligned with B's


def test_multi_device_open_failure_closes_the_others(monkeypatch) -> None:
    closed = []

    class Stream(PacedStream):
        def close(self) -> None:
            closed.append(self.opened_with["device"])

    def factory(**kw):
        if kw["device"] == 1:
            raise ValueError("Invalid sample rate [PaErrorCode -9997]")
        return Stream(np.zeros(10, np.float32), RATE, **kw)

    devices = [InputDevice(0, "A", "t", 1, RATE, True), InputDevice(1, "B", "t", 1, RATE, False)]
    with pytest.raises(AudioSourceError, match=r"cannot open input device 1 \(B\) at 48000 Hz.*Invalid sample rate"):
        MultiDeviceSource(devices, stream_factory=factory)
    assert closed == [0]


def test_channels_of_one_device(shipped_model) -> None:
    """``--channels 1,2`` on a device: opened with 2 channels, each scored on its own."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    stereo = soxr.resample(np.stack([left, np.zeros_like(right)], axis=1), 16000, RATE).astype(np.float32)
    device = InputDevice(2, "USB Audio", "ALSA", 2, RATE, True)
    source = MicrophoneSource(device=device, channels="all",
                              stream_factory=lambda **kw: PacedStream(stereo, 50 * RATE, **kw))
    assert source.channel_numbers == (1, 2) and source.opened_channels == 2
    engines = ChannelEngines(shipped_model, source=source.name, channels=source.channel_numbers)
    preds = []
    source.start()
    with pytest.raises(AudioSourceError):
        for block in source.frames():
            preds += engines.push(block)
    preds += engines.flush()
    assert any(p.is_speech for p in preds if p.channel == 1)
    assert not any(p.is_speech for p in preds if p.channel == 2)  # the silent channel has no label
    with pytest.raises(AudioSourceError, match="has 2 channels; channel 3 does not exist"):
        MicrophoneSource(device=device, channels=(1, 3), stream_factory=lambda **kw: None)
