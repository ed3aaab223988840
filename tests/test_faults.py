"""Device faults injected through a fake input stream (same callback contract as PortAudio)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soxr
from conftest import ANGRY_CLIP
from fake_device import FakeInputStream, factory, fake_capture

from stream_ser.audio import DEFAULT_BLOCK_S, AudioSourceError, CaptureSource, load_audio
from stream_ser.engine import Engine

RATE = 48000


def clip_48k() -> np.ndarray:
    return soxr.resample(load_audio(ANGRY_CLIP), 16000, RATE).astype(np.float32)


def consume(source: CaptureSource, shipped_model, timeout_s: float = 20.0):
    """Run the engine on the source; returns (predictions, error or None)."""
    engine = Engine(shipped_model, source=source.name)
    preds, error = [], None
    watchdog = threading.Timer(timeout_s, source.stop)
    watchdog.start()
    try:
        source.start()
        for chunk in source.chunks():
            preds += engine.push(chunk)
    except AudioSourceError as exc:
        error = exc
    finally:
        watchdog.cancel()
        source.close()
    return preds, error


def test_device_vanishing_mid_stream_is_a_clear_error(shipped_model) -> None:
    audio = clip_48k()
    source = fake_capture(factory(audio=audio, then="finish"))
    preds, error = consume(source, shipped_model)
    assert error is not None and "ended unexpectedly" in str(error)
    assert source.failure == str(error)
    # everything captured before the fault was scored
    assert len(preds) == int(audio.size / RATE / 0.5)


def test_stalled_device_is_detected(shipped_model) -> None:
    source = fake_capture(factory(audio=clip_48k()[: RATE], then="stall"), stall_timeout_s=0.5)
    t0 = time.monotonic()
    preds, error = consume(source, shipped_model)
    assert error is not None and "no audio for 0.5 s" in str(error)
    assert time.monotonic() - t0 < 5
    assert len(preds) == 2  # 1 s of audio, hop 0.5 s


def test_device_stalling_below_a_wake_target_is_detected() -> None:
    """A device that stops delivering while the consumer waits for a wake_at() target (listen
    --no-tui between hop boundaries) must still be detected as stalled: the frames it wrote
    after the last read, below the target and never read, are no proof of life (this once hung
    listen forever)."""
    audio = np.zeros(int(0.4 * RATE), np.float32)  # ten 40 ms blocks, then silence from the driver
    source = fake_capture(factory(audio=audio, then="stall", pace_s=0.02), stall_timeout_s=0.5)
    watchdog = threading.Timer(10.0, source.stop)  # without the fix: stop instead of hanging the suite
    watchdog.start()
    error = None
    t0 = time.monotonic()
    try:
        source.start()
        for _ in source.frames():
            source.wake_at(16000)  # 1 s of output: more than the device will ever deliver
    except AudioSourceError as exc:
        error = exc
    finally:
        watchdog.cancel()
        source.close()
    assert error is not None and "no audio for 0.5 s" in str(error)
    assert time.monotonic() - t0 < 5


def test_overflow_storm_is_counted_not_fatal(shipped_model) -> None:
    flagged = type("Flags", (), {"input_overflow": True, "__bool__": lambda self: True})()
    audio = clip_48k()
    source = fake_capture(factory(audio=audio, then="finish", status=flagged))
    preds, error = consume(source, shipped_model)
    n_blocks = -(-audio.size // int(DEFAULT_BLOCK_S * RATE))
    assert source.overflows == n_blocks and source.status_flags == n_blocks
    assert len(preds) == int(audio.size / RATE / 0.5)


def test_unsupported_rate_at_open_is_a_clear_error() -> None:
    def refuse(**kw):
        raise ValueError("Invalid sample rate [PaErrorCode -9997]")

    with pytest.raises(AudioSourceError, match="cannot open input device .* 48000 Hz, 1 channel.*Invalid sample rate"):
        fake_capture(refuse, "USB mic")


def test_failure_to_start_is_a_clear_error() -> None:
    class Busy(FakeInputStream):
        def start(self):
            raise RuntimeError("Device unavailable [PaErrorCode -9985]")

    source = fake_capture(lambda **kw: Busy(np.zeros(10, np.float32), **kw))
    with pytest.raises(AudioSourceError, match="cannot start capture.*Device unavailable"):
        source.start()


def test_slow_consumer_loses_frames_and_counts_them() -> None:
    audio = np.zeros(RATE * 3, np.float32)
    streams: list[FakeInputStream] = []
    source = fake_capture(lambda **kw: streams.append(FakeInputStream(audio, then="finish", **kw)) or streams[-1],
                          capacity_s=0.5)
    source.start()
    streams[0].thread.join(5)  # the device delivered 3 s while nobody read, then vanished
    got = 0
    with pytest.raises(AudioSourceError, match="ended unexpectedly"):
        for chunk in source.chunks():
            got += chunk.size
    source.close()
    assert source.dropped_frames == audio.size - int(0.5 * RATE)
    assert got == pytest.approx(0.5 * 16000, abs=64)


@pytest.mark.parametrize("fault", ["vanish", "stall"])
def test_listen_cli_device_fault_keeps_the_csv(monkeypatch, tmp_path, capsys, fault) -> None:
    """listen on a device that vanishes (or stalls) mid-stream after an overflow storm: a clear
    message, exit status 1, overflows reported, and the CSV complete up to the fault."""
    import csv
    from types import SimpleNamespace

    from stream_ser.audio import devices as sources
    from stream_ser.cli import main

    flagged = type("Flags", (), {"input_overflow": True, "__bool__": lambda self: True})()
    audio = clip_48k()
    fake = factory(audio=audio, then="finish" if fault == "vanish" else "stall", status=flagged)
    device = sources.InputDevice(3, "USB headset", "ALSA", 1, float(RATE), True)
    monkeypatch.setattr(sources, "find_input_device", lambda spec: device)
    monkeypatch.setattr(sources, "_sounddevice", lambda: SimpleNamespace(InputStream=fake))
    if fault == "stall":
        real_init = CaptureSource.__init__
        monkeypatch.setattr(
            CaptureSource, "__init__", lambda self, *a, **kw: real_init(self, *a, **{**kw, "stall_timeout_s": 0.5})
        )
    out = tmp_path / "t.csv"
    code = main(["listen", "--no-tui", "--device", "USB", "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    want = "ended unexpectedly" if fault == "vanish" else "no audio for 0.5 s"
    assert f"stream-ser: error: mic:USB headset: " in captured.err and want in captured.err
    n_blocks = -(-audio.size // int(DEFAULT_BLOCK_S * RATE))
    assert f"{n_blocks} input overflows" in captured.err
    assert "Traceback" not in captured.err
    text = out.read_text()
    assert text.endswith("\n")
    rows = list(csv.reader(text.splitlines()))
    n_hops = -(-audio.size * 16000 // RATE // 8000)  # every hop, the last partial one included
    assert len(rows) - 1 == len(captured.out.strip().splitlines()) == n_hops


def test_listen_cli_unsupported_rate_fails_before_any_row(monkeypatch, tmp_path, capsys) -> None:
    """A device that refuses the sample rate at open: one clear line, exit 1, an empty CSV."""
    from types import SimpleNamespace

    from stream_ser.audio import devices as sources
    from stream_ser.cli import main

    def refuse(**kw):
        raise ValueError("Invalid sample rate [PaErrorCode -9997]")

    device = sources.InputDevice(3, "USB headset", "ALSA", 1, 44100.0, True)
    monkeypatch.setattr(sources, "find_input_device", lambda spec: device)
    monkeypatch.setattr(sources, "_sounddevice", lambda: SimpleNamespace(InputStream=refuse))
    out = tmp_path / "t.csv"
    assert main(["listen", "--no-tui", "--device", "USB", "--csv", str(out)]) == 1
    err = capsys.readouterr().err
    assert "stream-ser: error: cannot open input device 3 (USB headset) at 44100 Hz" in err and "Invalid sample rate" in err
    assert "Traceback" not in err
    assert out.read_text().count("\n") == 1  # the header only
