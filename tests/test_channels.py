"""Monitoring a call (docs/calls.md): channels scored on their own, several devices on one clock, any
native format, the call summary, device matching, and the terminal UI with several channels.

Model-independent checks: a channel of a stereo file must be scored exactly as the same audio
alone (identical probabilities), whatever the shipped model says; labels are never asserted.
Real PulseAudio devices are tested in ``test_call_capture.py``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx

import stream_ser
from stream_ser.audio import devices as sources
from stream_ser.cli import main
from stream_ser.engine import ChannelEngines, Engine, window_ends
from stream_ser.audio import (
    RESAMPLER_QUALITY,
    AudioSourceError,
    ClockAligner,
    InputDevice,
    MultiDeviceSource,
    iter_file_frames,
    load_audio,
    parse_channel_selection,
    resolve_channels,
    select_channels,
)
from stream_ser.sources import MicrophoneSource
from stream_ser.summary import CallSummaryBuilder, format_summary
from stream_ser.types import Prediction

RATE = 48000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from stream_ser.model import EmotionModel

    return EmotionModel(make_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


def padded(*clips: Path) -> list[np.ndarray]:
    """The clips at 16 kHz, zero-padded to the longest."""
    audio = [load_audio(c) for c in clips]
    n = max(a.size for a in audio)
    return [np.pad(a, (0, n - a.size)) for a in audio]


@pytest.fixture(scope="module")
def stereo_call(tmp_path_factory) -> Path:
    """A 48 kHz 24-bit stereo "call": the angry clip on the left, the happy clip on the right."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path_factory.mktemp("call") / "call.wav"
    sf.write(path, soxr.resample(np.stack([left, right], axis=1), 16000, RATE), RATE, subtype="PCM_24")
    return path


def n_hops(path: Path) -> int:
    return len(window_ends(round(sf.info(path).duration * 16000), 8000))


# --------------------------------------------------------------------------------------------
# Channel selection


def test_channel_selection_parsing() -> None:
    assert parse_channel_selection("all") == "all" and parse_channel_selection(" ALL ") == "all"
    assert parse_channel_selection("1,2") == (1, 2) and parse_channel_selection("2") == (2,)
    for bad in ("", "0", "1,1", "a,b", "1,,2", "-1", ",".join(map(str, range(1, 10)))):
        with pytest.raises(ValueError):
            parse_channel_selection(bad)
    assert resolve_channels(None, 6, "x") == (0,)
    assert resolve_channels("all", 2, "x") == (1, 2)
    assert resolve_channels("all", 12, "x") == tuple(range(1, 9))  # at most 8
    assert resolve_channels((2,), 2, "x") == (2,)
    with pytest.raises(AudioSourceError, match="call.wav: has 2 channels; channel 3 does not exist"):
        resolve_channels((1, 3), 2, "call.wav")
    frames = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    np.testing.assert_array_equal(select_channels(frames, (0,)), [[2], [5]])
    np.testing.assert_array_equal(select_channels(frames, (3, 1)), [[3, 1], [6, 4]])


# --------------------------------------------------------------------------------------------
# Any native format, resampled in a stream exactly as the whole signal


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_chunked_resampling_matches_whole_signal(tmp_path, rate, subtype) -> None:
    """Streaming soxr in blocks of any size gives the whole-signal result (tone and speech, 1-8
    channels, 16/24-bit and float files), and the tone comes out at 16 kHz as it should."""
    speech = soxr.resample(load_audio(ANGRY_CLIP), 16000, rate).astype(np.float32)
    t = np.arange(speech.size) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    columns = [speech, tone, -0.5 * speech, 0.25 * tone, speech[::-1].copy(), tone, speech, 0.1 * tone]
    path = tmp_path / "x.wav"
    sf.write(path, np.stack(columns, axis=1), rate, subtype=subtype)
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    whole = soxr.resample(decoded, rate, 16000, quality=RESAMPLER_QUALITY)
    for block in (160, 1024, 4801):
        got = np.concatenate(list(iter_file_frames(path, 16000, block, "all")))
        assert got.shape == whole.shape == (round(speech.size * 16000 / rate), 8)
        assert np.max(np.abs(got - whole)) < 1e-6, block
    # each channel alone, in a stream, equals its column of the multi-channel stream
    alone = np.concatenate(list(iter_file_frames(path, 16000, 1024, (2,))))
    np.testing.assert_array_equal(alone[:, 0], got[:, 1])
    # the tone is a 440 Hz tone at 16 kHz (away from the edges; quantisation limits PCM_16)
    n = alone.shape[0]
    ideal = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / 16000)
    tol = 2e-3 if subtype == "PCM_16" else 1e-3
    assert np.max(np.abs(alone[1000:-1000, 0] - ideal[1000:-1000])) < tol


# --------------------------------------------------------------------------------------------
# A stereo call: each channel is scored as the same audio alone


def test_stereo_channels_follow_each_side(stereo_call, shipped_model) -> None:
    """Left and right are scored on their own: each channel's windows and clip result are those
    of the mono analysis of that side (identical probabilities), and the two sides differ."""
    agent, customer = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"], model=shipped_model)
    samples, rate = sf.read(stereo_call, dtype="float32")
    for side, result in ((0, agent), (1, customer)):
        mono = stream_ser.analyse(samples[:, side], rate, model=shipped_model)
        assert [p.end_s for p in result.timeline] == [p.end_s for p in mono.timeline]
        assert [p.is_speech for p in result.timeline] == [p.is_speech for p in mono.timeline]
        for a, b in zip(result.timeline, mono.timeline):
            if a.is_speech:
                np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_allclose(result.clip.mean_probabilities, mono.clip.mean_probabilities, atol=1e-6)
        assert result.clip.label == mono.clip.label
        assert {p.channel for p in result.timeline} == {side + 1}
    assert {p.channel_name for p in agent.timeline} == {"agent"} and agent.clip.channel_id == "agent"
    # different clips on the two sides give different results (whatever the labels are)
    assert np.max(np.abs(np.subtract(agent.clip.mean_probabilities, customer.clip.mean_probabilities))) > 0.01


def test_silent_channel_yields_no_labels(tmp_path, shipped_model) -> None:
    """The speech gate is per channel: loud speech on one channel never labels a silent one."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path / "three.wav"
    sf.write(path, np.stack([left, right, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    results = stream_ser.analyse_channels(path, model=shipped_model)
    assert [r.clip.channel for r in results] == [1, 2, 3]
    assert results[0].clip.n_speech_windows > 0 and results[1].clip.n_speech_windows > 0
    silent = results[2]
    assert silent.clip.label is None and silent.clip.n_speech_windows == 0
    assert all(not p.is_speech and p.label is None for p in silent.timeline)


def test_channel_engines_equal_single_engines(tiny_model) -> None:
    """ChannelEngines is one Engine per channel, predictions interleaved per hop in channel order."""
    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    frames = np.stack([left, right], axis=1)
    engines = ChannelEngines(tiny_model, source="s", channels=(1, 2), channel_names=("a", None))
    got = []
    for start in range(0, frames.shape[0], 1234):
        got += engines.push(frames[start : start + 1234])
    got += engines.flush()
    assert [p.channel_id for p in got[:4]] == ["a", 2, "a", 2]
    for col, number in ((left, 1), (right, 2)):
        want = list(Engine(tiny_model, source="s", channel=number).run([col]))
        mine = [p for p in got if p.channel == number]
        assert [p.end_s for p in mine] == [p.end_s for p in want]
        for a, b in zip(mine, want):
            assert a.probabilities == b.probabilities
    with pytest.raises(ValueError, match="shape"):
        engines.push(np.zeros((10, 3), np.float32))


# --------------------------------------------------------------------------------------------
# The command line with channels


def test_analyse_channels_cli_outputs(stereo_call, tmp_path, capsys) -> None:
    out_csv, out_jsonl, out_summary = tmp_path / "t.csv", tmp_path / "t.jsonl", tmp_path / "s.json"
    code = main(["analyse", str(stereo_call), "--channels", "1,2", "--channel-names", "agent,customer",
                 "--csv", str(out_csv), "--jsonl", str(out_jsonl), "--summary-json", str(out_summary)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    hops = n_hops(stereo_call)
    lines = captured.out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"{stereo_call} [agent]", f"{stereo_call} [customer]"]
    assert "call summary: " in captured.err and "agent (channel 1): " in captured.err
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * hops
    assert [r["channel"] for r in rows[:4]] == ["agent", "customer", "agent", "customer"]  # per hop, channel order
    assert [r["end_s"] for r in rows[::2]] == [r["end_s"] for r in rows[1::2]]
    objs = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    preds = [o for o in objs if o["type"] == "prediction"]
    clips = [o for o in objs if o["type"] == "clip"]
    assert {o["channel"] for o in preds} == {"agent", "customer"} and len(preds) == 2 * hops
    assert [c["channel"] for c in clips] == ["agent", "customer"] and list(clips[0])[-1] == "channel"
    summary = json.loads(out_summary.read_text())
    assert summary["format"] == "stream-ser call summary" and summary["version"] == 2
    (entry,) = summary["summaries"]
    assert entry["source"] == str(stereo_call) and [c["channel"] for c in entry["channels"]] == ["agent", "customer"]
    for ch, clip in zip(entry["channels"], clips):
        assert ch["n_windows"] == hops and ch["n_speech_windows"] == clip["n_speech_windows"]
        assert sum(ch["emotion_share"].values()) == pytest.approx(1.0, abs=1e-3)
        assert ch["speech_s"] == pytest.approx(sum(ch["emotion_s"].values()), abs=1e-3)
    # unnamed channels are written as their numbers, counted from 1 (JSON numbers)
    assert main(["analyse", str(stereo_call), "--channels", "all", "--format", "jsonl"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["channel"] for o in objs} == {1, 2}


def test_analyse_channel_errors(stereo_call, tmp_path, capsys) -> None:
    """A channel a file lacks fails that file (the batch goes on); inconsistent options are usage errors."""
    assert main(["analyse", str(stereo_call), str(ANGRY_CLIP), "--channels", "2"]) == 1
    captured = capsys.readouterr()
    assert "03-01-05-02-01-01-21.flac: has 1 channel; channel 2 does not exist" in captured.err
    assert f"{stereo_call} [2]: " in captured.out
    assert main(["analyse", str(stereo_call), "--channels", "1,2", "--channel-names", "a"]) == 2
    assert "1 name(s) for 2 channel(s)" in capsys.readouterr().err
    for bad in (["--channels", "0"], ["--channels", "x"], ["--channels", "1", "--channel-names", "7"]):
        with pytest.raises(SystemExit) as exc:
            main(["analyse", str(stereo_call), *bad])
        assert exc.value.code == 2
    capsys.readouterr()
    summary = tmp_path / "s.json"
    summary.write_text("{}")
    assert main(["analyse", str(stereo_call), "--summary-json", str(summary)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_mono_analysis_is_unchanged(capsys) -> None:
    """Without --channels: channel 0, no channel key in clip objects, nothing on stderr."""
    assert main(["analyse", str(ANGRY_CLIP), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    objs = [json.loads(line) for line in captured.out.splitlines()]
    assert {o["channel"] for o in objs if o["type"] == "prediction"} == {0}
    assert "channel" not in [o for o in objs if o["type"] == "clip"][0]
    assert captured.err == ""


def test_listen_replay_scores_channels_like_analyse(stereo_call, tmp_path, capsys, shipped_model) -> None:
    """``listen --input --channels``: the live path gives the file path's per-channel windows."""
    out = tmp_path / "l.csv"
    assert main(["listen", "--input", str(stereo_call), "--fast", "--no-tui", "--channels", "all",
                 "--channel-names", "agent,customer", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert "channels agent = channel 1, customer = channel 2 scored separately" in captured.err
    assert "call summary:" in captured.err and "customer (channel 2):" in captured.err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    want = stream_ser.analyse_channels(stereo_call, channel_names=["agent", "customer"], model=shipped_model)
    for result in want:
        mine = [r for r in rows if r["channel"] == result.clip.channel_name]
        assert [float(r["end_s"]) for r in mine] == pytest.approx([p.end_s for p in result.timeline], abs=1e-3)
        for r, p in zip(mine, result.timeline):
            assert (r["speech"] == "1") == p.is_speech
            if p.is_speech:
                assert float(r["confidence"]) == pytest.approx(p.confidence, abs=1e-4)
    assert len(captured.out.strip().splitlines()) == 2 * n_hops(stereo_call)
    assert captured.out.splitlines()[0].split()[1] == "agent"


def test_plot_reads_named_channels(stereo_call, tmp_path) -> None:
    from stream_ser.plot import read_timeline_csv

    out = tmp_path / "t.csv"
    assert main(["analyse", str(stereo_call), "--channels", "all", "--channel-names", "agent,customer",
                 "--csv", str(out), "-q"]) == 0
    timelines = read_timeline_csv(out)
    assert [t.channel for t in timelines] == ["agent", "customer"]
    assert "(channel agent)" in timelines[0].title


# --------------------------------------------------------------------------------------------
# The call summary, against a hand-computed timeline


LABELS = ("neutral", "happy", "sad", "angry")


def timeline(labels: str, ends: list[float], channel: int = 1, name: str | None = "agent") -> list[Prediction]:
    """Predictions from a string of label letters (``-`` no speech) and window ends."""
    out = []
    for letter, end in zip(labels, ends):
        if letter == "-":
            out.append(Prediction("call", channel, max(0.0, end - 3), end, False, None, None, None, LABELS, name))
        else:
            label = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"}[letter]
            probs = tuple(0.7 if lab == label else 0.1 for lab in LABELS)
            out.append(Prediction("call", channel, max(0.0, end - 3), end, True, label, 0.7, probs, LABELS, name))
    return out


def test_summary_figures_match_a_hand_computed_timeline() -> None:
    ends = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.2]  # the last hop is a partial one
    agent = timeline("-NAAA-AHHNH", ends)
    customer = timeline("-" * len(ends), ends, 2, "customer")
    builder = CallSummaryBuilder("call", LABELS, 0.5, (1, 2), ("agent", "customer"), ("mic:A", "mic:B"))
    for a, c in zip(agent, customer):
        builder.add(a)
        builder.add(c)
    s = builder.result()
    a, c = s.channels
    # By hand: hops (0,0.5] (0.5,1] ... (4.5,5.0] (5.0,5.2]; speech in all but the 1st and 6th.
    assert a.speech_s == pytest.approx(4.2) and a.duration_s == pytest.approx(5.2)
    assert a.n_windows == 11 and a.n_speech_windows == 9
    assert dict(zip(LABELS, a.emotion_s)) == pytest.approx({"neutral": 1.0, "happy": 1.2, "sad": 0.0, "angry": 2.0})
    assert a.emotion_share() == pytest.approx({"neutral": 1.0 / 4.2, "happy": 1.2 / 4.2, "sad": 0.0, "angry": 2.0 / 4.2})
    # angry (1.0, 2.5] then, after a hop without speech, (3.0, 3.5]; happy (3.5, 4.5], later (5.0, 5.2]
    assert [(x.label, x.start_s, x.duration_s) for x in a.longest] == [
        ("happy", pytest.approx(3.5), pytest.approx(1.0)),
        ("angry", pytest.approx(1.0), pytest.approx(1.5)),
    ]
    assert a.changes == 4  # N->A, A->H, H->N, N->H; A (silence) A is no change
    assert c.speech_s == 0 and c.n_speech_windows == 0 and c.emotion_share() is None
    assert c.longest == () and c.changes == 0
    d = s.to_dict()
    assert d["duration_s"] == 5.2 and [x["channel"] for x in d["channels"]] == ["agent", "customer"]
    assert d["channels"][0]["longest"] == {"happy": {"start_s": 3.5, "duration_s": 1.0},
                                           "angry": {"start_s": 1.0, "duration_s": 1.5}}
    assert d["channels"][0]["emotion_share"]["angry"] == round(2.0 / 4.2, 4)
    text = format_summary(s)
    assert "agent (mic:A): speech 4.2 s of 5.2 s, 4 emotion changes" in text
    assert "angry 48%, happy 29%, neutral 24%" in text
    assert "longest: angry 1.5 s at 00:01.0, happy 1.0 s at 00:03.5" in text
    assert "customer (mic:B): no speech (11 windows)" in text


def test_summary_runs_break_at_pauses() -> None:
    """Hops skipped while paused leave a gap: a run of one emotion does not span it."""
    preds = timeline("AA", [0.5, 1.0]) + timeline("AAA", [2.5, 3.0, 3.5])
    s = CallSummaryBuilder("call", LABELS, 0.5, (1,), ("agent",)).add_all(preds).result()
    (a,) = s.channels
    assert a.speech_s == pytest.approx(2.5) and a.changes == 0
    assert [(x.start_s, x.duration_s) for x in a.longest] == [(pytest.approx(2.0), pytest.approx(1.5))]


# --------------------------------------------------------------------------------------------
# Several devices on one clock (fake PortAudio streams)


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


# --------------------------------------------------------------------------------------------
# Devices: listing, monitors, matching by name


def fake_portaudio(names: list[tuple[str, int, float]], default: int = 0) -> SimpleNamespace:
    devices = [{"name": n, "max_input_channels": ch, "default_samplerate": r, "hostapi": 0} for n, ch, r in names]
    return SimpleNamespace(query_hostapis=lambda: [{"name": "ALSA"}], query_devices=lambda: devices,
                           default=SimpleNamespace(device=(default, default)))


PULSE = [
    {"name": "alsa_input.usb-Logitech_USB_Headset-00.mono-fallback", "description": "USB Headset Mono", "channels": 1,
     "rate_hz": 48000, "is_monitor": False},
    {"name": "alsa_output.pci-0000_00_1f.3.analog-stereo.monitor", "description": "Monitor of Built-in Audio Analog Stereo",
     "channels": 2, "rate_hz": 44100, "is_monitor": True},
    {"name": "bluez_output.monitor", "description": "Monitor of Headphones", "channels": 2, "rate_hz": 48000,
     "is_monitor": True},
]


@pytest.fixture
def devices_env(monkeypatch):
    pa = fake_portaudio([("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 44100.0), ("USB Headset: Audio (hw:1,0)", 1, 48000.0),
                         ("Loopback: PCM (hw:2,0)", 2, 48000.0), ("pulse", 32, 44100.0), ("default", 32, 44100.0)], default=4)
    monkeypatch.setattr(sources, "_sounddevice", lambda: pa)
    monkeypatch.setattr(sources, "list_pulse_sources", lambda: PULSE)


def test_device_matching(devices_env) -> None:
    find = sources.find_input_device
    assert find(None).name == "default" and find(1).name.startswith("USB Headset") and find("1").index == 1
    assert find("Monitor of Built-in").pulse_source.endswith("analog-stereo.monitor")
    assert find("bluez_output").name == "Monitor of Headphones"  # by PulseAudio source name too
    assert find("usb headset").index == 1  # one PortAudio device matches: chosen, as before
    with pytest.raises(AudioSourceError) as exc:
        find("Monitor of")
    assert "matches several input devices" in str(exc.value)
    assert "Monitor of Built-in Audio Analog Stereo [alsa_output" in str(exc.value) and "Monitor of Headphones" in str(exc.value)
    with pytest.raises(AudioSourceError, match="no input device matches 'Zoom'"):
        find("Zoom")
    with pytest.raises(AudioSourceError, match="device 9 is not an input device"):
        find(9)
    listed = sources.list_input_devices()
    assert [d.is_monitor for d in listed] == [False, False, True, False, False, False, True, True]
    pulse_dev = [d for d in listed if d.pulse_source][0]
    assert pulse_dev.index == 3 and pulse_dev.display_index == "-"  # opened through ALSA's pulse device


def test_devices_command_marks_monitors(devices_env, capsys) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ")[-1].strip(): line for line in out.splitlines()}
    monitor = next(line for line in out.splitlines() if "Monitor of Headphones" in line)
    assert " monitor " in monitor and "48000" in monitor and "PulseAudio" in monitor and "[bluez_output.monitor]" in monitor
    assert " monitor " in next(line for line in out.splitlines() if "Loopback: PCM" in line)
    assert " input " in next(line for line in out.splitlines() if "USB Headset: Audio" in line)
    assert "--device A --device B" in out and lines


def test_pulse_sources_from_pactl(tmp_path, monkeypatch) -> None:
    """``pactl -f json list sources`` is parsed (with a fallback to the short listing)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PulseAudio sources are listed on Linux only")
    doc = [{"name": "virt.monitor", "description": "Monitor of VirtualMic", "sample_specification": "s16le 2ch 48000Hz",
            "properties": {"device.class": "monitor"}},
           {"name": "mic", "description": "Mic", "sample_specification": "float32le 1ch 44100Hz", "properties": {}}]
    pactl = tmp_path / "pactl"
    pactl.write_text("#!/bin/sh\nif [ \"$1\" = -f ]; then cat <<'EOF'\n" + json.dumps(doc) + "\nEOF\nelse exit 1; fi\n")
    pactl.chmod(pactl.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    got = sources.list_pulse_sources()
    assert got == [
        {"name": "virt.monitor", "description": "Monitor of VirtualMic", "channels": 2, "rate_hz": 48000, "is_monitor": True},
        {"name": "mic", "description": "Mic", "channels": 1, "rate_hz": 44100, "is_monitor": False},
    ]
    pactl.write_text("#!/bin/sh\nif [ \"$1\" = -f ]; then exit 1; fi\n"
                     "printf '0\\tvirt.monitor\\tmodule-null-sink.c\\ts16le 2ch 48000Hz\\tIDLE\\n'\n")
    assert sources.list_pulse_sources() == [
        {"name": "virt.monitor", "description": "virt.monitor", "channels": 2, "rate_hz": 48000, "is_monitor": True}
    ]


# --------------------------------------------------------------------------------------------
# The terminal UI with several channels


def test_tui_shows_one_row_per_channel(tiny_model, tmp_path) -> None:
    """Two channels (the right one silent): a line per channel with its name and current emotion,
    and in the timeline one line per channel in each time row; the silent channel gets no letter."""
    from test_tui import screen_text, wait_for

    from stream_ser.session import ListenSession, SessionOptions
    from stream_ser.tui import ListenApp
    from stream_ser.tui.palette import SILENCE_GLYPH
    from stream_ser.tui.widgets import ChannelsPanel, TimelineRows

    left, _ = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path / "call.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_16")
    session = ListenSession(tiny_model, lambda: MicrophoneSource(replay=path, realtime=False, channels="all"),
                            options=SessionOptions(channel_names=("agent", "customer")))
    app = ListenApp(session)
    hops = n_hops(path)

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.pause(0.3)
            panel = app.query_one(ChannelsPanel)
            assert panel.display and not app.query_one("#middle").display
            agent, customer = panel.line_text(0), panel.line_text(1)
            assert agent.startswith("agent") and any(lab.upper() in agent for lab in tiny_model.labels)
            assert customer.startswith("customer") and "no speech" in customer
            rows = app.query_one(TimelineRows)
            assert rows.lines_per_row == 2
            assert len(rows.channel_cells[0]) == len(rows.channel_cells[1]) == hops
            assert set(rows.row_text(0, 1)[:hops]) == {SILENCE_GLYPH}
            assert set(rows.row_text(0, 0)[:hops].upper()) & set(rows.palette.letters.values())
            text = screen_text(app)
            assert "00:00 agent" in text and "\n│        customer " in text and "2 channels" in text
            assert max(len(line) for line in text.splitlines()) <= 80
            await pilot.press("c")
            assert rows.channel_cells[1] == {} and panel.latest == [None, None]
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(run())
