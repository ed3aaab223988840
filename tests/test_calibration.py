"""`listen --calibrate`: a calibration phase that learns the voice before predicting.

Calibration only withholds the first predictions of a speaker-normalised model; the voice
statistics, and so every later prediction, are exactly those of an uncalibrated run.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, make_tiny_onnx

from stream_ser.adaptation import SpeakerNorm, SpeakerNormaliser
from stream_ser.cli import main
from stream_ser.engine import ChannelEngines, Engine
from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata
from stream_ser.model import EmotionModel
from stream_ser.session import CalibrationProgress, ListenSession, PredictionMade, SessionOptions
from stream_ser.sinks import CsvSink
from stream_ser.audio import load_audio
from stream_ser.sources import MicrophoneSource

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")


@pytest.fixture(scope="module")
def norm_model(tmp_path_factory) -> EmotionModel:
    norm = SpeakerNorm.from_windows(np.random.default_rng(0).normal(-50, 12, (8, CFG.n_mels, CFG.n_frames)))
    path = tmp_path_factory.mktemp("calib") / "norm.onnx"
    return EmotionModel(make_tiny_onnx(path, LABELS, metadata=ModelMetadata(LABELS, CFG, speaker_norm=norm).to_json()))


def speech_then_speech() -> np.ndarray:
    """Two real clips of different actors, back to back (16 kHz float32)."""
    return np.concatenate([load_audio(ANGRY_CLIP, CFG.sample_rate_hz), load_audio(HAPPY_CLIP, CFG.sample_rate_hz)])


@pytest.mark.parametrize("n", [1, 4, 9])
def test_calibration_withholds_only_the_first_speech_windows(norm_model, n) -> None:
    x = speech_then_speech()
    plain = list(Engine(norm_model).run([x]))
    calibrated_engine = Engine(norm_model, calibration_windows=n)
    calibrated = list(calibrated_engine.run(np.array_split(x, 37)))  # any chunking
    # the hops up to the n-th speech window are withheld, silent ones included; nothing after
    speech_ends = [p.end_s for p in plain if p.is_speech]
    first_scored = speech_ends[n] if n < len(speech_ends) else None
    want = [p for p in plain if first_scored is not None and p.end_s >= first_scored]
    assert [p.end_s for p in calibrated] == [p.end_s for p in want]
    assert [p.is_speech for p in calibrated] == [p.is_speech for p in want]
    got = [p.probabilities for p in calibrated if p.is_speech]
    np.testing.assert_allclose(got, [p.probabilities for p in want if p.is_speech], atol=1e-6)
    assert calibrated_engine.normaliser.windows == len(speech_ends)  # the same statistics as without calibration
    assert not calibrated_engine.calibrating


def test_calibration_is_ignored_without_speaker_normalisation(tmp_path) -> None:
    plain = EmotionModel(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))
    x = load_audio(TESS_CLIP, CFG.sample_rate_hz)
    a = [p.probabilities for p in Engine(plain).run([x])]
    b = [p.probabilities for p in Engine(plain, calibration_windows=5).run([x])]
    assert a == b and len(a) > 0
    with pytest.raises(ValueError, match="calibration_windows"):
        Engine(plain, calibration_windows=-1)
    with pytest.raises(ValueError, match="calibrate_s"):
        SessionOptions(calibrate_s=-1.0)


def test_each_channel_calibrates_on_its_own_voice(norm_model) -> None:
    """A channel that starts speaking later starts predicting later; stream order is kept."""
    speech = speech_then_speech()
    late = np.concatenate([np.zeros(3 * CFG.sample_rate_hz, np.float32), speech])[: speech.size]
    frames = np.stack([speech, late], axis=1)
    engines = ChannelEngines(norm_model, channels=(1, 2), calibration_windows=3)
    preds = list(engines.run(np.array_split(frames, 23)))
    ends = [(p.end_s, p.channel) for p in preds]
    assert ends == sorted(ends)
    for column, channel in ((speech, 1), (late, 2)):
        alone = [p for p in Engine(norm_model, channel=channel, calibration_windows=3).run([column])]
        mine = [p for p in preds if p.channel == channel]
        assert [p.end_s for p in mine] == [p.end_s for p in alone]
        np.testing.assert_allclose([p.probabilities for p in mine if p.is_speech],
                                   [p.probabilities for p in alone if p.is_speech], atol=1e-6)
    first = {c: min(p.end_s for p in preds if p.channel == c) for c in (1, 2)}
    assert first[2] >= first[1] + 2.5


def test_session_reports_progress_and_writes_no_rows_while_calibrating(norm_model, tmp_path) -> None:
    path = tmp_path / "two.wav"
    sf.write(path, speech_then_speech(), CFG.sample_rate_hz, subtype="FLOAT")
    out = tmp_path / "t.csv"
    events = []
    session = ListenSession(norm_model, lambda: MicrophoneSource(replay=path, realtime=False),
                            [CsvSink(out, LABELS)], SessionOptions(calibrate_s=2.0))
    assert session.calibration_windows == 4  # 2 s of speech at the 0.5 s hop
    ended = session.run(events.append)
    assert ended.error is None
    progress = [e for e in events if isinstance(e, CalibrationProgress)]
    made = [e for e in events if isinstance(e, PredictionMade)]
    assert progress and progress[-1].done and not any(e.done for e in progress[:-1])
    assert [e.speech_s[0] for e in progress] == sorted(e.speech_s[0] for e in progress)
    assert progress[-1].speech_s == (2.0,) and progress[-1].target_s == 2.0
    # calibration hops and predictions partition the hops, in order
    assert max(e.hop_index for e in progress) < min(e.hop_index for e in made)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(made) and float(rows[0]["end_s"]) > progress[-1].end_s - 1e-9
    # the same predictions as an uncalibrated session, minus the withheld ones
    free = []
    ListenSession(norm_model, lambda: MicrophoneSource(replay=path, realtime=False)).run(free.append)
    tail = [e.prediction for e in free if isinstance(e, PredictionMade)][-len(made):]
    np.testing.assert_allclose([p.probabilities for p in tail if p.is_speech],
                               [e.prediction.probabilities for e in made if e.prediction.is_speech], atol=1e-6)


def test_cli_calibrate(norm_model, tmp_path, capsys) -> None:
    out = tmp_path / "t.csv"
    code = main(["listen", "--model", str(norm_model.path), "--input", str(ANGRY_CLIP), "--fast", "--no-tui",
                 "--calibrate", "1", "--csv", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    assert "calibrating: 0 of 1 s of speech heard" in err or "calibrating: 0.5 of 1 s" in err
    assert "calibrated on 1 s of speech per channel at" in err
    plain = [p for p in Engine(norm_model).run([load_audio(ANGRY_CLIP, CFG.sample_rate_hz)])]
    first_scored = [p.end_s for p in plain if p.is_speech][2]
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == sum(p.end_s >= first_scored for p in plain)
    # a model without speaker normalisation has nothing to calibrate: a usage error, no audio opened
    assert main(["listen", "--input", str(ANGRY_CLIP), "--fast", "--calibrate", "30"]) == 2
    err = capsys.readouterr().err
    assert "--calibrate" in err and "does not normalise speakers" in err and "--speaker-norm causal" in err


def test_calibrated_normaliser_survives_a_pause(norm_model) -> None:
    """Calibration is per voice, not per engine: a resumed engine sharing the normaliser predicts at once."""
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    shared = SpeakerNormaliser(norm_model.metadata.speaker_norm)
    first = list(Engine(norm_model, normaliser=shared, calibration_windows=3).run([x]))
    again = list(Engine(norm_model, normaliser=shared, calibration_windows=3).run([x]))
    assert len(again) == len(list(Engine(norm_model).run([x]))) > len(first)


def test_help_explains_calibrate(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["listen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--calibrate S" in text and "speaker-normalised model" in text



def test_terminal_ui_shows_calibration_then_predictions(norm_model) -> None:
    """Live pace: the status bar and the "now" panel say CALIBRATING until the voice is learnt."""
    import asyncio

    from test_tui import EventLog, wait_for

    from stream_ser.tui import ListenApp
    from stream_ser.tui.widgets import NowPanel, StatusBar

    session = ListenSession(norm_model, lambda: MicrophoneSource(sample_rate_hz=16000, replay=ANGRY_CLIP, realtime=True),
                            options=SessionOptions(calibrate_s=1.0))
    app = ListenApp(session)
    log = EventLog()

    async def run() -> None:
        async with app.run_test(size=(80, 24), message_hook=log) as pilot:
            status, now = app.query_one(StatusBar), app.query_one(NowPanel)
            await wait_for(pilot, lambda: status.state == "calibrating")
            assert now.band_text == "CALIBRATING" and not log.of(PredictionMade)
            await wait_for(pilot, lambda: bool(log.of(PredictionMade)))
            await pilot.pause(0.2)
            assert status.state in ("live", "ended") and now.band_text != "CALIBRATING"
            await wait_for(pilot, lambda: app._ended is not None)
            await pilot.press("q")
        assert app.return_code == 0
        progress = log.of(CalibrationProgress)
        assert progress[-1].done and max(e.hop_index for e in progress) < log.of(PredictionMade)[0].hop_index

    asyncio.run(run())


def test_evaluation_withholds_each_speakers_first_windows(norm_model) -> None:
    """`training.evaluate --calibrate`: per speaker, the first windows only feed the statistics;
    once calibrated, clips are scored exactly as without calibration."""
    from training.corpora.ravdess import parse_name
    from training.evaluate import evaluate_clips

    utts = [parse_name(ANGRY_CLIP), parse_name(HAPPY_CLIP)] * 2  # two speakers, each clip twice
    speech = [len([p for p in Engine(norm_model).run([load_audio(c, CFG.sample_rate_hz)]) if p.is_speech])
              for c in (ANGRY_CLIP, HAPPY_CLIP)]
    n = min(speech) - 1  # every speaker is calibrated within its first clip, before its end
    plain = evaluate_clips(norm_model, utts, seed=1)
    calibrated = evaluate_clips(norm_model, utts, seed=1, calibration_windows=n)
    assert not any(o.calibration for o in plain + calibrated)  # no clip lies entirely inside calibration
    for k in (0, 1):  # each speaker: one occurrence lost windows, the other is scored as without calibration
        pairs = [(plain[i], calibrated[i]) for i in (k, k + 2)]
        lost = [a.n_windows - b.n_windows for a, b in pairs]
        assert sorted(lost)[0] == 0 and sorted(lost)[1] >= n
        a, b = pairs[lost.index(0)]
        assert a.window_predictions == b.window_predictions and a.predicted == b.predicted
    everything = evaluate_clips(norm_model, utts[:2], seed=1, calibration_windows=max(speech) + 20)
    assert all(o.calibration and o.n_windows == 0 for o in everything)  # whole clips inside: left out
