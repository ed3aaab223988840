"""Golden timeline CSVs: the rows stream-ser writes for a fixed set of recordings, byte for byte.

The runtime may be reorganised (sources, the scoring path, the stream clock) only if what it
writes stays the same. Four recordings cover the paths a row can take:

* ``analyse_mono.csv``: ``stream-ser analyse`` of a fixture clip (mono, 16 kHz).
* ``analyse_stereo_all.csv``: ``stream-ser analyse --channels all`` of a stereo 44.1 kHz file made
  at test time from two fixture clips (each channel one clip; the file resampling path).
* ``listen_replay_pause_marker.csv``: the session ``stream-ser listen --input FILE --fast
  --no-tui`` runs (the source is the one the CLI opens: the file replayed through the capture
  path, at 48 kHz, so capture resampling runs too), paused from the hop ending at 2.0 s to the
  one ending at 4.0 s, with one marker during the pause and one after it.
* ``listen_two_devices.csv``: a session on two input devices at once (``listen --device A
  --device B``: a 48 kHz mono device and a 44.1 kHz stereo one, each one channel, aligned on the
  first device's clock), named ``agent`` and ``customer``, stopped after 5 s.

No column of the timeline CSV comes from the wall clock: every time is a sample count, so every
column is compared. Two things would still depend on thread timing, and are pinned:

* A marker is placed at the end of the chunk of audio the session was handling when it was asked
  for, and a replay hands the session chunks of whatever size its consumer thread finds in the
  capture ring buffer. The replayed source is therefore re-cut into fixed 40 ms chunks (what a
  live device delivers) before the session; the audio itself, and every prediction, do not depend
  on the chunking (the engine's tests check that).
* Aligning two devices uses the times of their capture callbacks. Real devices (the virtual
  microphone of ``test_call_capture.py``) start a few milliseconds apart at random, which moves
  every window; here the two devices are fake PortAudio streams (``tests/fake_device.py``, through
  the ``stream_factory`` that the multi-device tests use) whose callbacks are stamped on a virtual
  clock, at exactly the device's nominal rate, so the measured start offset and drift are zero and
  the alignment is exact.

The model is a pinned copy of the shipped model (``tests/golden/stream-ser.onnx``), so that a
retrained ``models/stream-ser.onnx`` does not move the goldens; they check the runtime, not the
model.

After a deliberate change of what the CSV holds, regenerate the goldens (and review the diff)::

    STREAM_SER_REGEN_GOLDEN=1 python -m pytest -q tests/test_golden_csv.py

Any other run fails on a single changed byte.
"""

from __future__ import annotations

import difflib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP, HAPPY_CLIP, load_fixture_16k
from fake_device import FakeInputStream

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "stream-ser.onnx"
REGENERATE = os.environ.get("STREAM_SER_REGEN_GOLDEN", "") not in ("", "0")
CHUNK = 640  # 40 ms at 16 kHz: the re-cut chunks of the replay (a live device's block)


def check_golden(name: str, produced: Path) -> None:
    """Compare ``produced`` with ``tests/golden/NAME`` byte for byte (or rewrite it with
    ``STREAM_SER_REGEN_GOLDEN=1``)."""
    golden = GOLDEN / name
    got = produced.read_bytes()
    if REGENERATE:
        golden.write_bytes(got)
        pytest.skip(f"regenerated {golden.relative_to(GOLDEN.parent.parent)}; review the diff")
    assert golden.exists(), f"{golden} is missing: regenerate with STREAM_SER_REGEN_GOLDEN=1"
    want = golden.read_bytes()
    if got != want:
        diff = "".join(difflib.unified_diff(want.decode().splitlines(True), got.decode().splitlines(True),
                                            str(golden), "produced", n=1))
        pytest.fail(f"{name} differs from the golden file:\n{diff[:6000]}")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Work in ``tmp_path``, so source names in the CSV are the short relative names given."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def padded(x: np.ndarray, n: int, lead: int = 0) -> np.ndarray:
    """``x`` after ``lead`` zeros, zero-padded (or cut) to ``n`` samples."""
    out = np.zeros(n, np.float32)
    part = x[: max(0, n - lead)]
    out[lead : lead + part.size] = part
    return out


# --------------------------------------------------------------------------------------------
# analyse


def test_analyse_mono(in_tmp) -> None:
    from stream_ser.cli import main

    shutil.copy(ANGRY_CLIP, in_tmp / "angry.flac")
    assert main(["analyse", "angry.flac", "--csv", "out.csv", "--model", str(MODEL), "-q"]) == 0
    check_golden("analyse_mono.csv", in_tmp / "out.csv")


def test_analyse_stereo_all_channels(in_tmp) -> None:
    from stream_ser.cli import main

    left, right = load_fixture_16k(ANGRY_CLIP), load_fixture_16k(HAPPY_CLIP)
    n = max(left.size, right.size)
    stereo = np.stack([padded(left, n), padded(right, n, lead=4000)], axis=1)
    sf.write(in_tmp / "call.wav", soxr.resample(stereo, 16000, 44100), 44100, subtype="PCM_16")
    assert main(["analyse", "call.wav", "--channels", "all", "--csv", "out.csv", "--model", str(MODEL), "-q"]) == 0
    check_golden("analyse_stereo_all.csv", in_tmp / "out.csv")


# --------------------------------------------------------------------------------------------
# listen --input with a pause and markers


class FixedChunks:
    """A source that hands on another source's audio in chunks of exactly ``size`` frames (the
    last one shorter); everything else is the wrapped source's."""

    def __init__(self, source, size: int) -> None:
        self._source, self._size = source, size

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def wake_at(self, samples: int) -> None:
        """Wake-ups of the wrapped source are left at every block (its count is ahead of ours)."""

    def frames(self) -> Iterator[np.ndarray]:
        held: list[np.ndarray] = []
        n = 0
        for block in self._source.frames():
            block = block[:, None] if block.ndim == 1 else block
            held.append(block)
            n += block.shape[0]
            if n >= self._size:
                joined = np.concatenate(held)
                cut = n - n % self._size
                for i in range(0, cut, self._size):
                    yield joined[i : i + self._size]
                held, n = [joined[cut:]], n - cut
        if n:
            yield np.concatenate(held)


def test_listen_replay_with_a_pause_and_markers(in_tmp) -> None:
    from stream_ser.cli import _listen_source, build_parser
    from stream_ser.model import EmotionModel
    from stream_ser.session import HopPaused, ListenSession, PredictionMade, SessionOptions
    from stream_ser.sinks import CsvSink

    angry, happy = load_fixture_16k(ANGRY_CLIP), load_fixture_16k(HAPPY_CLIP)
    audio = np.concatenate([angry, np.zeros(8000, np.float32), happy])
    sf.write(in_tmp / "replay.wav", soxr.resample(audio, 16000, 48000), 48000, subtype="PCM_16")
    args = build_parser().parse_args(["listen", "--input", "replay.wav", "--fast", "--no-tui", "--model", str(MODEL)])
    model = EmotionModel(MODEL)
    open_source = _listen_source(args, model.feature_config.sample_rate_hz)
    session = ListenSession(model, lambda: FixedChunks(open_source(), CHUNK),
                            [CsvSink(in_tmp / "out.csv", model.labels)], SessionOptions(level_interval_s=None))

    def emit(event) -> None:  # on the worker thread, as the terminal UI's keys would act
        if isinstance(event, PredictionMade) and event.hop_index in (3, 12):
            if event.hop_index == 3:
                session.set_paused(True)  # applied at the end of this hop: 2.0 s
            else:
                session.request_marker()  # after the pause, mid-hop too (6.5 s)
        if isinstance(event, HopPaused):
            if event.hop_index == 4:
                session.request_marker()  # mid-hop: the end of the 40 ms chunk holding 2.5 s
            if event.hop_index == 7:
                session.set_paused(False)  # scoring resumes at 4.0 s

    ended = session.run(emit)
    assert ended.reason == "end of input" and ended.exit_status == 0, ended
    check_golden("listen_replay_pause_marker.csv", in_tmp / "out.csv")


# --------------------------------------------------------------------------------------------
# two devices


class VirtualClock:
    """Monotonic time for a multi-device source: inside a fake stream's callback, the time at
    which the device's clock says its block was delivered; elsewhere ``time.monotonic()``."""

    EPOCH_S = 1000.0

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self) -> float:
        now = getattr(self._local, "now_s", None)
        return time.monotonic() if now is None else now

    def stamped(self, callback: Callable, rate_hz: float) -> Callable:
        """``callback`` as a device at ``rate_hz`` calls it: at the time its frames so far take."""
        done = [0]

        def call(indata: np.ndarray, frames: int, time_info, status) -> None:
            done[0] += frames
            self._local.now_s = self.EPOCH_S + done[0] / rate_hz
            callback(indata, frames, time_info, status)

        return call



def test_listen_two_devices(in_tmp) -> None:
    from stream_ser.model import EmotionModel
    from stream_ser.session import ListenSession, SessionOptions
    from stream_ser.sinks import CsvSink
    from stream_ser.sources import InputDevice, MultiDeviceSource

    n = 6 * 16000
    agent = soxr.resample(padded(load_fixture_16k(ANGRY_CLIP), n), 16000, 48000)
    customer = soxr.resample(padded(load_fixture_16k(HAPPY_CLIP), n, lead=16000), 16000, 44100)
    devices = [InputDevice(0, "Headset", "ALSA", 1, 48000.0, True),
               InputDevice(1, "Monitor of Call", "ALSA", 2, 44100.0, False, True)]  # opened with one channel
    clock = VirtualClock()

    def factory(**kw) -> FakeInputStream:  # all its audio at once, then nothing until stopped
        kw["callback"] = clock.stamped(kw["callback"], kw["samplerate"])
        return FakeInputStream(agent if kw["device"] == 0 else customer, then="stop", **kw)

    model = EmotionModel(MODEL)
    open_source: Callable = lambda: MultiDeviceSource(devices, sample_rate_hz=model.feature_config.sample_rate_hz,
                                                      stall_timeout_s=60.0, stream_factory=factory, clock=clock)
    options = SessionOptions(duration_s=5.0, channel_names=("agent", "customer"), level_interval_s=None)
    session = ListenSession(model, open_source, [CsvSink(in_tmp / "out.csv", model.labels)], options)
    ended = session.run(lambda event: None)
    assert ended.reason == "duration reached" and ended.exit_status == 0, ended
    check_golden("listen_two_devices.csv", in_tmp / "out.csv")
