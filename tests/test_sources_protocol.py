"""The audio sources' one contract (``stream_ser.audio.Source``), and what follows from it.

Every source (a file, a file replayed through the capture path, a device, several devices) gives
the same facts and frames, so the listening session treats them alike: it asks a source whether
it is a device instead of guessing from its name, and a replay gives the very audio of the file.
Devices here are fake PortAudio streams (``tests/fake_device.py``, ``test_faults.py``).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP, HAPPY_CLIP, load_fixture_16k, make_tiny_onnx
from fake_device import factory, fake_capture, fake_device
from test_faults import clip_48k

from stream_ser.audio import (
    AudioSourceError,
    CaptureSource,
    DeviceInput,
    FileSource,
    InputCapture,
    MultiDeviceSource,
    SourceStats,
    devices,
)
from stream_ser.engine import Engine
from stream_ser.session import ListenSession, PredictionMade, SessionStarted


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


@pytest.fixture
def stereo_44k(tmp_path):
    """Two fixture clips as the channels of a 44.1 kHz file."""
    a, b = load_fixture_16k(ANGRY_CLIP), load_fixture_16k(HAPPY_CLIP)
    n = max(a.size, b.size)
    x = np.zeros((n, 2), np.float32)
    x[: a.size, 0], x[: b.size, 1] = a, b
    path = tmp_path / "call.wav"
    sf.write(path, soxr.resample(x, 16000, 44100), 44100, subtype="PCM_16")
    return path


def drain(source) -> np.ndarray:
    """Every frame of a started source, until it ends (a fake device's end is its fault)."""
    blocks = []
    source.start()
    try:
        for block in source.frames():
            assert block.dtype == np.float32 and block.shape[1] == len(source.channel_numbers)
            blocks.append(block)
    except AudioSourceError:
        assert source.is_device and source.failure is not None
    finally:
        source.close()
    return np.concatenate(blocks)


def two_fake_devices(audio: np.ndarray) -> MultiDeviceSource:
    """Devices A (48 kHz) and B (44.1 kHz) both delivering ``audio`` (48 kHz), then vanishing."""
    at_44k = soxr.resample(audio, 48000, 44100).astype(np.float32)

    def make(**kw):
        return factory(audio=audio if kw["samplerate"] == 48000 else at_44k, then="finish")(**kw)

    return MultiDeviceSource([fake_device("A"), fake_device("B", rate_hz=44100.0)], stream_factory=make)


def test_every_source_states_the_same_facts(stereo_44k) -> None:
    audio = clip_48k()[: 48000]
    sources = [FileSource(stereo_44k, channels="all"),
               CaptureSource.from_replay(stereo_44k, realtime=False, channels="all"),
               fake_capture(factory(audio=audio, then="finish"), "USB headset"),
               two_fake_devices(audio)]
    facts = [(s.name, s.channel_numbers, s.channel_descriptions, s.native_rates_hz, s.is_device) for s in sources]
    assert facts == [
        (str(stereo_44k), (1, 2), ("channel 1", "channel 2"), (44100,), False),
        (str(stereo_44k), (1, 2), ("channel 1", "channel 2"), (44100,), False),
        ("mic:USB headset", (0,), ("mic:USB headset",), (48000,), True),
        ("mic:A + mic:B", (1, 2), ("mic:A", "mic:B"), (48000, 44100), True),
    ]
    for source in sources:
        frames = drain(source).shape[0]
        if isinstance(source, MultiDeviceSource):
            # several devices end when the first of them vanishes: the other's last blocks may
            # still be on their way (both fakes deliver as fast as they can), so only part of
            # the second is certain
            assert 0 < frames <= 16000 + 160
        else:
            assert frames > 0.9 * 16000
        assert source.stats == SourceStats()  # nothing flagged or dropped
    assert [len(s.clock_report()) for s in sources] == [0, 0, 0, 2]  # one clock per device of several


def test_a_replay_through_the_capture_path_is_the_file(stereo_44k) -> None:
    """The capture path (a stream calling the callback, the ring buffer, channel selection and
    the streaming resampler at whatever size the consumer finds) gives the file's frames bit for bit."""
    decoded = np.concatenate(list(FileSource(stereo_44k, channels="all").frames()))
    replayed = drain(CaptureSource.from_replay(stereo_44k, realtime=False, channels="all"))
    np.testing.assert_array_equal(replayed, decoded)
    one = drain(CaptureSource.from_replay(stereo_44k, realtime=False, channels=(2,)))
    np.testing.assert_array_equal(one[:, 0], decoded[:, 1])


def test_a_replayed_file_named_like_a_device_ends_as_a_file(tiny_model, tmp_path) -> None:
    """Whether the input's end is a fault comes from the source, not from its name."""
    path = tmp_path / "mic:call.flac"
    sf.write(path, load_fixture_16k(HAPPY_CLIP), 16000)
    events: list = []
    ended = ListenSession(tiny_model, lambda: CaptureSource.from_replay(str(path), realtime=False)).run(events.append)
    assert (ended.reason, ended.error, ended.exit_status) == ("end of input", None, 0)
    started = next(e for e in events if isinstance(e, SessionStarted))
    assert started.source_name == str(path) and started.is_device is False


def test_a_session_scores_a_file_source_as_the_engine_does(tiny_model) -> None:
    events: list = []
    ended = ListenSession(tiny_model, lambda: FileSource(ANGRY_CLIP)).run(events.append)
    assert ended.reason == "end of input"
    got = [e.prediction for e in events if isinstance(e, PredictionMade)]
    want = list(Engine(tiny_model, source=str(ANGRY_CLIP)).run(FileSource(ANGRY_CLIP).chunks()))
    assert got == want


def test_file_source_stop_ends_its_frames() -> None:
    source = FileSource(ANGRY_CLIP, block_frames=4000)
    frames = source.frames()
    next(frames)
    source.stop()
    assert list(frames) == []


def test_a_device_given_with_a_stream_factory_is_still_looked_up(monkeypatch) -> None:
    """A stream factory replaces PortAudio's stream, not the device: the device is the one the
    machine lists under that name (here a replaced listing), with its name and rate."""
    opened = []

    def make(**kw):
        opened.append((kw["device"], kw["samplerate"], kw["channels"]))
        return factory(audio=np.zeros(4410, np.float32), then="finish")(**kw)

    headset = devices.InputDevice(7, "USB headset", "ALSA", 2, 44100.0, False)
    monkeypatch.setattr(devices, "find_input_device", lambda spec: headset if spec == "USB" else None)
    source = CaptureSource.from_device("USB", stream_factory=make)
    assert (source.name, source.device, source.device_sample_rate_hz) == ("mic:USB headset", headset, 44100)
    assert opened == [(7, 44100, 1)]
    monkeypatch.undo()
    with pytest.raises(AudioSourceError):  # no device of that name on this machine (or no PortAudio)
        CaptureSource.from_device("no device has this name 3f9c", stream_factory=make)


def test_input_capture_reports_a_stall_on_its_own_clock() -> None:
    """The per-device capture that several devices share: a device that delivers nothing for the
    stall timeout (on the injected clock) has failed, and says so."""
    now = [100.0]
    wake = threading.Event()
    capture = InputCapture(DeviceInput(fake_device("Quiet"), factory(audio=np.zeros(0, np.float32), then="stall")),
                           1, 0.04, 1.0, 2.0, wake=wake, clock=lambda: now[0])
    capture.start()
    try:
        capture.reset_stall_timer()
        now[0] += 1.5
        assert not capture.fail_if_stalled() and capture.failure is None
        now[0] += 1.0
        assert capture.fail_if_stalled()
        assert capture.failure == "mic:Quiet: no audio for 2 s (device stalled or disconnected)"
    finally:
        capture.close()
    assert capture.ended and capture.closed
    frames, lost = capture.read()
    assert frames.shape == (0, 1) and lost == 0
