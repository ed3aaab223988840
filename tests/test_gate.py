"""The speech gate of the engine (``gate="vad"`` | ``"level"``) and everything that follows it:
predictions, the API, a listening session's call summary, the CSV's ``speech`` column and the
command line's ``--gate`` and ``info``.

``"vad"`` (the default) scores a window when the level gate passes *and* the shipped Silero VAD
hears a voice in it (stream_ser/vad.py, docs/vad.md); ``"level"`` is the level gate alone.
The non-speech fixtures (tests/fixtures/nonspeech/) are loud music, game effects and desktop
sounds: the level gate passes every window of them, the VAD gate none (except one held note of
the caves music, see test_vad.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, load_fixture_16k, make_tiny_onnx

from stream_ser import analyse, analyse_channels
from stream_ser.api import StreamScorer
from stream_ser.engine import ChannelEngines, Engine
from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata
from stream_ser.model import EmotionModel, ModelError
from stream_ser.session import ListenSession, SessionOptions, SessionStarted
from stream_ser.sources import MicrophoneSource
from stream_ser.vad import DEFAULT_GATE, GATES

FIXTURES = Path(__file__).parent / "fixtures"
SPEECH = sorted(FIXTURES.glob("*.flac"))
NONSPEECH = FIXTURES / "nonspeech"
#: Non-speech fixtures the VAD gate scores no window of (the caves music holds one voice-like note).
NOT_A_VOICE = ["effects_hyperrogue.ogg", "music_hyperrogue_ocean.ogg", "ui_freedesktop.ogg"]


load = load_fixture_16k


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    return EmotionModel()


def scored(preds) -> list[bool]:
    return [p.is_speech for p in preds]


# --------------------------------------------------------------------------------------------
# the engine


def test_the_default_gate_is_vad(model):
    assert DEFAULT_GATE == "vad" and GATES == ("vad", "level")
    e = Engine(model)
    assert e.gate == "vad" and e.vad is not None
    level = Engine(model, gate="level")
    assert level.gate == "level" and level.vad is None
    with pytest.raises(ValueError, match="gate must be one of 'vad', 'level'"):
        Engine(model, gate="silero")
    with pytest.raises(ValueError, match="gate must be one of"):
        ChannelEngines(model, channels=(1, 2), gate="off")


@pytest.mark.parametrize("name", NOT_A_VOICE)
def test_vad_gate_scores_no_window_of_nonspeech_the_level_gate_scores_all(model, name):
    x = load(NONSPEECH / name)
    level = list(Engine(model, gate="level").run([x]))
    vad = list(Engine(model, gate="vad").run([x]))
    assert len(level) == len(vad) > 10
    assert all(scored(level))  # loud enough: the level gate labels music and effects
    assert not any(scored(vad))
    assert all(p.label is None and p.probabilities is None for p in vad)


@pytest.mark.parametrize("path", SPEECH, ids=lambda p: p.name)
def test_both_gates_score_corpus_speech_and_the_vad_keeps_its_windows(model, path):
    x = load(path)
    level = list(Engine(model, gate="level").run([x]))
    vad = list(Engine(model, gate="vad").run([x]))
    assert [p.end_s for p in level] == [p.end_s for p in vad]
    assert sum(scored(vad)) >= 3
    # here every window the level gate scores, the VAD gate scores too, with the same output
    assert scored(vad) == scored(level)
    for a, b in zip(level, vad):
        assert a == b


def test_vad_windows_are_a_subset_of_the_level_gates_and_identical_where_scored(model):
    """Speech, music, speech: the VAD gate drops the music's windows; wherever it scores, the
    prediction is the level gate's (the gate decides *whether*, never *what*)."""
    x = np.concatenate([load(SPEECH[0]), load(NONSPEECH / "music_hyperrogue_ocean.ogg")[:6 * 16000], load(SPEECH[1])])
    level = list(Engine(model, gate="level", adapt="none").run([x]))
    vad = list(Engine(model, gate="vad", adapt="none").run([x]))
    assert all(a.is_speech for a, b in zip(level, vad) if b.is_speech)
    assert sum(scored(level)) - sum(scored(vad)) >= 5  # the music's windows
    for a, b in zip(level, vad):
        if b.is_speech:
            assert a == b


@pytest.mark.parametrize("sizes", [(37,), (160, 320), (511, 1, 4000), (8000,), (33333,), (1024, 7777)])
def test_predictions_do_not_depend_on_block_sizes(model, sizes):
    """The detector is fed every sample once as it arrives and keeps its state across hops, so
    any chunking gives the predictions of one block."""
    x = np.concatenate([load(SPEECH[0]), load(NONSPEECH / "music_hyperrogue_caves.ogg")[:5 * 16000], load(SPEECH[2])])
    want = list(Engine(model).run([x]))
    blocks, pos, i = [], 0, 0
    while pos < x.size:
        n = sizes[i % len(sizes)]
        blocks.append(x[pos : pos + n])
        pos, i = pos + n, i + 1
    e = Engine(model)
    got = list(e.run(blocks))
    assert got == want
    assert e.vad.samples_seen == e.samples_seen == x.size
    assert e.vad.frames_scored == x.size // 512  # each sample judged once: every whole frame, once


def test_the_detector_state_is_carried_and_a_new_engine_starts_afresh(model):
    x = np.concatenate([load(SPEECH[0]), load(SPEECH[1])])
    e = Engine(model)
    first = e.push(x[:30000]) + e.push(x[30000:])
    assert first == Engine(model).push(x)
    again = Engine(model).push(x)  # a new stream: a fresh detector, the same answers
    assert again == first


def test_each_channel_has_its_own_detector(model):
    speech = load(ANGRY_CLIP)
    music = load(NONSPEECH / "music_hyperrogue_ocean.ogg")[: speech.size]
    both = ChannelEngines(model, channels=(1, 2), gate="vad")
    preds = list(both.run([np.stack([speech, music], axis=1)]))
    assert both.engines[0].vad is not both.engines[1].vad
    one = [p for p in preds if p.channel == 1]
    two = [p for p in preds if p.channel == 2]
    assert not any(scored(two)) and any(scored(one))
    alone = list(Engine(model, channel=1).run([speech]))
    assert one == alone


def test_a_model_at_another_rate_resamples_the_detectors_input(tmp_path):
    """The detector works at 16 kHz: for a 22.05 kHz model its input is resampled with soxr as it
    arrives, and the result still does not depend on the block sizes."""
    import soxr

    labels = ("neutral", "happy", "sad")
    cfg = FeatureConfig(sample_rate_hz=22050)
    meta = ModelMetadata(labels, cfg, provenance={"made_by": "tests"}).to_json()
    m = EmotionModel(make_tiny_onnx(tmp_path / "m22.onnx", labels, metadata=meta, n_frames=cfg.n_frames))
    speech = soxr.resample(load(ANGRY_CLIP), 16000, 22050).astype(np.float32)
    music = soxr.resample(load(NONSPEECH / "music_hyperrogue_ocean.ogg"), 16000, 22050).astype(np.float32)
    for x, want_speech in ((speech, True), (music, False)):
        level = list(Engine(m, gate="level").run([x]))
        vad = list(Engine(m, gate="vad").run([x]))
        assert all(scored(level)[2:])
        assert any(scored(vad)) == want_speech
        assert list(Engine(m, gate="vad").run([x[i : i + 3000] for i in range(0, x.size, 3000)])) == vad


def test_a_missing_vad_model_is_a_model_error_naming_the_way_out(model, monkeypatch, tmp_path):
    monkeypatch.setenv("STREAM_SER_VAD_MODEL", str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError, match="VAD speech gate cannot start.*nope.onnx"):
        Engine(model)
    Engine(model, gate="level")  # the level gate needs no detector


# --------------------------------------------------------------------------------------------
# the API and a listening session


def test_api_gate_parameter(model):
    music = NONSPEECH / "effects_hyperrogue.ogg"
    assert analyse(music, model=model).clip.label is None  # default: the VAD gate
    assert analyse(music, model=model).clip.n_speech_windows == 0
    level = analyse(music, model=model, gate="level")
    assert level.clip.label is not None and level.clip.n_speech_windows == level.clip.n_windows
    x = load(music)
    assert analyse(x, 16000, model=model, gate="vad").clip.n_speech_windows == 0
    assert analyse(ANGRY_CLIP, model=model, gate="vad").clip.label == analyse(ANGRY_CLIP, model=model, gate="level").clip.label
    stereo = np.stack([load(ANGRY_CLIP), x[: load(ANGRY_CLIP).size]], axis=1)
    a, b = analyse_channels(stereo, 16000, model=model)
    assert a.clip.n_speech_windows > 0 and b.clip.n_speech_windows == 0
    _, b_level = analyse_channels(stereo, 16000, model=model, gate="level")
    assert b_level.clip.n_speech_windows == b_level.clip.n_windows
    scorer = StreamScorer(model, 48000, gate="level")
    assert scorer._engine.gate == "level"
    with pytest.raises(ValueError, match="gate must be one of"):
        analyse(x, 16000, model=model, gate="both")


@pytest.mark.parametrize("gate", GATES)
def test_session_summary_speech_time_follows_the_gate(model, gate):
    """The call summary's speech time and the session's predictions follow the gate: a replay of
    music has no speech with the VAD gate, all of it with the level gate."""
    path = NONSPEECH / "music_hyperrogue_ocean.ogg"
    events: list = []
    session = ListenSession(model, lambda: MicrophoneSource(sample_rate_hz=16000, replay=path, realtime=False),
                            options=SessionOptions(level_interval_s=None, gate=gate))
    ended = session.run(events.append)
    assert ended.exit_status == 0
    assert next(e for e in events if isinstance(e, SessionStarted)).gate == gate
    (channel,) = session.summary.channels
    if gate == "vad":
        assert channel.speech_s == 0 and channel.n_speech_windows == 0
    else:
        assert channel.speech_s == pytest.approx(channel.duration_s, abs=0.01)
    with pytest.raises(ValueError, match="gate must be one of"):
        SessionOptions(gate="loud")


# --------------------------------------------------------------------------------------------
# the command line


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("gate", [None, "vad", "level"])
def test_analyse_csv_speech_column_follows_the_gate(tmp_path, capsys, gate):
    from stream_ser.cli import main

    files = [str(NONSPEECH / "effects_hyperrogue.ogg"), str(ANGRY_CLIP)]
    out = tmp_path / "t.csv"
    args = ["analyse", *files, "--csv", str(out), "-q"] + ([] if gate is None else ["--gate", gate])
    assert main(args) == 0
    rows = read_rows(out)
    effects = [r for r in rows if r["source"].endswith("effects_hyperrogue.ogg")]
    speech = [r for r in rows if r["source"].endswith(ANGRY_CLIP.name)]
    assert effects and speech
    if gate == "level":
        assert all(r["speech"] == "1" and r["label"] for r in effects)
    else:  # the default is the VAD gate
        assert all(r["speech"] == "0" and r["label"] == "" and r["p_angry"] == "" for r in effects)
    assert sum(r["speech"] == "1" for r in speech) >= 5


def test_analyse_jsonl_follows_the_gate(capsys):
    from stream_ser.cli import main

    path = str(NONSPEECH / "ui_freedesktop.ogg")
    for gate, want in (("vad", False), ("level", True)):
        assert main(["analyse", path, "--format", "jsonl", "--gate", gate, "-q"]) == 0
        objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        preds = [o for o in objs if o["type"] == "prediction"]
        assert preds and all(o["speech"] is want for o in preds)
        clip = next(o for o in objs if o["type"] == "clip")
        assert (clip["label"] is not None) is want


def test_gate_option_is_checked_and_documented(capsys):
    from stream_ser.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["analyse", str(ANGRY_CLIP), "--gate", "silero"])
    assert exc.value.code == 2
    assert "invalid choice: 'silero'" in capsys.readouterr().err
    for command in ("analyse", "listen"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--gate {vad,level}" in text and "docs/vad.md" in text and "default" in text


def test_info_names_the_gates(capsys):
    from stream_ser.cli import main

    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    gate = [x for x in lines if x.startswith("speech gate")]
    assert gate and "vad (default)" in gate[0] and "level" in gate[0]
    assert any("Silero VAD" in x and "silero_vad_16k_sequence_mm.onnx" in x for x in lines)
