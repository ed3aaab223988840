"""Output adaptation (stream_ser.adaptation.OutputAdapter) and the stream protocol
(training.stream_protocol) on real clips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP, make_tiny_onnx

from stream_ser.adaptation import OutputAdapter, OutputPrior
from stream_ser.cli import main
from stream_ser.engine import ChannelEngines, Engine
from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata, ModelMetadataError
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio
from training.corpora import Utterance
from training.stream_protocol import adapt, build_stream, clip_labels, score_stream, window_clips

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")


def adapted_model(tmp_path: Path, prior: OutputPrior) -> EmotionModel:
    """The shipped network with ``prior`` as its output prior and its only adaptation (real
    probabilities, not saturated)."""
    import dataclasses

    import onnx

    from stream_ser.metadata import METADATA_KEY
    from stream_ser.model import default_model_path

    proto = onnx.load(str(default_model_path()))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    entry.value = dataclasses.replace(ModelMetadata.from_json(entry.value), output_prior=prior,
                                      embedding_adaptation=None).to_json()
    onnx.save(proto, str(tmp_path / "adapted.onnx"))
    return EmotionModel(tmp_path / "adapted.onnx")


def test_adapter_removes_a_constant_shift_of_the_voice() -> None:
    """A voice that adds the same log-probability offset to every window: once its own windows
    outweigh the prior, the adapted output is what the training voices would have given."""
    rng = np.random.default_rng(0)
    prior = OutputPrior((0.0, 0.0, 0.0), prior_windows=5)
    logits = rng.normal(0, 1, (400, 3))
    logits -= logits.mean(axis=0)  # the training voices' mean: centred
    shift = np.array([2.0, -1.0, -1.0])  # the new voice leans to class 0 on every window
    probs = np.exp(logits + shift)
    probs /= probs.sum(axis=1, keepdims=True)
    adapter = OutputAdapter(prior)
    out = np.array([adapter(p) for p in probs])
    # after n windows the prior still holds prior_windows / (n + prior_windows) of the estimate
    np.testing.assert_allclose(adapter.shift, (shift - shift.mean()) * 400 / 405, atol=0.01)
    want = np.exp(logits)
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out[-50:], want[-50:], atol=0.02)
    assert (out.argmax(axis=1) == 0).mean() < 0.45 < (probs.argmax(axis=1) == 0).mean()
    assert out.dtype == np.float32 and np.allclose(out.sum(axis=1), 1, atol=1e-5) and (out >= 0).all()
    adapter.reset()
    assert adapter.windows == 0 and np.allclose(adapter.shift, 0)
    # the first window of a voice moves only by 1 / (prior_windows + 1) of its own offset
    first = adapter(probs[0])
    z = np.log(probs[0]) - (np.log(probs[0]) - np.log(probs[0]).mean()) / 6
    np.testing.assert_allclose(first, np.exp(z) / np.exp(z).sum(), atol=1e-6)
    with pytest.raises(ValueError):
        adapter(np.ones(4) / 4)


def test_output_prior_validation_and_round_trip() -> None:
    prior = OutputPrior.from_probabilities(np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]), prior_windows=8)
    assert abs(sum(prior.mean_log_prob)) < 1e-12 and prior.n_classes == 3
    assert OutputPrior.from_dict(prior.to_dict()) == prior
    for bad in (dict(mean_log_prob=(1.0,)), dict(mean_log_prob=(0.0, float("nan"))),
                dict(mean_log_prob=(0.0, 1.0), prior_windows=0), dict(mean_log_prob=(0.0, 1.0), prior_windows=float("inf"))):
        with pytest.raises(ValueError):
            OutputPrior(**bad)
    meta = ModelMetadata(LABELS, CFG, output_prior=prior)
    assert ModelMetadata.from_json(meta.to_json()).output_prior == prior
    wrong = ModelMetadata(("a", "b"), CFG, output_prior=prior).to_json()
    with pytest.raises(ModelMetadataError, match="classes"):
        ModelMetadata.from_json(wrong)


def test_engine_adapts_per_channel_and_says_so(tmp_path: Path) -> None:
    """On real speech the engine's adapted probabilities are the adapter run over the model's own
    ones; each channel has its own voice; --adapt none and a model without a prior do nothing."""
    prior = OutputPrior((0.5, -0.2, -0.3, 0.0, 0.1, 0.0, -0.1), prior_windows=3)
    model = adapted_model(tmp_path, prior)
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    raw = [p for p in Engine(model, adapt="none").run([x]) if p.is_speech]
    adapted = [p for p in Engine(model).run([x]) if p.is_speech]
    assert {p.adaptation for p in raw} == {"none"} and {p.adaptation for p in adapted} == {"output"}
    manual = OutputAdapter(prior)
    np.testing.assert_allclose([p.probabilities for p in adapted],
                               [manual(np.array(p.probabilities)) for p in raw], atol=1e-6)
    y = load_audio(HAPPY_CLIP, CFG.sample_rate_hz)
    n = min(x.size, y.size)
    both = list(ChannelEngines(model, channels=(1, 2)).run([np.stack([x[:n], y[:n]], axis=1)]))
    alone = [p for p in Engine(model).run([y[:n]]) if p.is_speech]
    np.testing.assert_allclose([p.probabilities for p in both if p.channel == 2 and p.is_speech],
                               [p.probabilities for p in alone], atol=1e-6)
    plain = EmotionModel(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))
    assert Engine(plain).adaptation == "none" and Engine(plain).adapter is None


def test_cli_writes_the_adaptation_column(tmp_path: Path, capsys) -> None:
    model = adapted_model(tmp_path, OutputPrior((0.5, -0.2, -0.3, 0.0, 0.1, 0.0, -0.1)))
    rows = {}
    for mode in ("output", "none"):
        out = tmp_path / f"{mode}.csv"
        assert main(["analyse", str(ANGRY_CLIP), "--model", str(model.path), "--csv", str(out), "--adapt", mode, "-q"]) == 0
        with open(out, newline="") as f:
            rows[mode] = list(csv.DictReader(f))
        assert {r["adaptation"] for r in rows[mode]} == {mode}
    speech = [(a, b) for a, b in zip(rows["output"], rows["none"]) if a["speech"] == "1"]
    assert speech and any(a["p_neutral"] != b["p_neutral"] for a, b in speech)
    main(["info", "--model", str(model.path)])
    assert "output adaptation: available" in capsys.readouterr().out


def test_window_clips_takes_the_clip_overlapped_most() -> None:
    bounds = np.array([[0.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    starts = np.array([0.0, 0.5, 1.5, 2.1, 4.0, 9.5])
    ends = np.array([0.5, 3.5, 4.5, 2.9, 7.0, 10.0])
    assert window_clips(starts, ends, bounds).tolist() == [0, 0, 1, -1, 2, -1]


def test_stream_protocol_on_real_clips(tmp_path: Path, shipped_model) -> None:
    """Clips joined with 1 s pauses, scored by the engine: every clip gets its own windows, the
    bounds match the audio, and the mode 'none' gives the model's own clip labels."""
    utts = [Utterance(Path(p), "ravdess", "ravdess:21", "angry", "angry") for p in (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP)]
    stream = build_stream(utts, 16000, seed=1)
    lengths = [load_audio(u.path, 16000).size / 16000 for u in stream.utterances]
    np.testing.assert_allclose(np.diff(stream.bounds_s, axis=1)[:, 0], lengths)
    np.testing.assert_allclose(stream.bounds_s[1:, 0] - stream.bounds_s[:-1, 1], 1.0)
    assert stream.samples.size == round(stream.bounds_s[-1, 1] * 16000)
    scored = score_stream(shipped_model, stream)
    assert set(scored.clip.tolist()) == {0, 1, 2}
    prior = OutputPrior((0.0,) * len(shipped_model.labels))
    labels = clip_labels(scored, adapt(scored.probabilities, "none", prior), shipped_model.labels)
    assert all(lab in shipped_model.labels for lab in labels)
    same = adapt(scored.probabilities, "output", prior)  # a flat prior and the stream's own shift
    assert same.shape == scored.probabilities.shape and np.allclose(same.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="one speaker"):
        build_stream([*utts, Utterance(Path(TESS_CLIP), "tess", "tess:YAF", "sad", "sad")], 16000)


def test_training_prior_is_written_into_the_model(tmp_path: Path, shipped_model) -> None:
    """The prior is the mean log-probability of the training speakers' speech windows, written
    into a copy of the model that the runtime then adapts with."""
    import shutil

    from stream_ser.model import default_model_path
    from training.output_prior import training_prior, write_prior
    from training.split import Split

    data = tmp_path / "data"
    (data / "ravdess" / "Actor_21").mkdir(parents=True)
    shutil.copy(ANGRY_CLIP, data / "ravdess" / "Actor_21" / ANGRY_CLIP.name)
    split = Split("one", {"ravdess:21"}, (), ())
    prior = training_prior(shipped_model, data, split, prior_windows=7)
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    probs = np.array([p.probabilities for p in Engine(shipped_model, adapt="none").run([x]) if p.is_speech])
    want = np.log(probs).mean(axis=0)
    np.testing.assert_allclose(prior.mean_log_prob, want - want.mean(), atol=1e-9)
    out = write_prior(default_model_path(), prior, {"split": "one"}, tmp_path / "with-prior.onnx")
    model = EmotionModel(out)
    assert model.metadata.output_prior == prior and model.metadata.provenance["output_prior"] == {"split": "one"}
    assert model.labels == shipped_model.labels and Engine(model, adapt="output").adaptation == "output"
    with pytest.raises(ValueError, match="no clip"):
        training_prior(shipped_model, data, Split("none", {"ravdess:01"}, (), ()))


def test_shipped_model_adapts_and_is_tempered(shipped_model) -> None:
    """The shipped model carries its output prior (training speakers of its split, weighted as
    40 windows) and the temperature fitted on its validation speakers, both recorded."""
    prior = shipped_model.metadata.output_prior
    assert prior is not None and prior.n_classes == len(shipped_model.labels) and prior.prior_windows == 40
    assert abs(sum(prior.mean_log_prob)) < 1e-9
    made = shipped_model.metadata.provenance
    assert made["output_prior"]["split"] == made["split"] and made["output_prior"]["speakers"] == "train"
    assert made["temperature"]["value"] > 1 and made["temperature"]["ece_after"] < made["temperature"]["ece_before"]
    assert Engine(shipped_model, adapt="output").adaptation == "output"
    assert Engine(shipped_model).adaptation == "embedding"  # the default when a model carries both



def test_api_analyse_adapts_by_default_and_on_request_not(shipped_model) -> None:
    import stream_ser

    on = stream_ser.analyse(ANGRY_CLIP, model=shipped_model)
    output = stream_ser.analyse(ANGRY_CLIP, model=shipped_model, adapt="output")
    off = stream_ser.analyse(ANGRY_CLIP, model=shipped_model, adapt="none")
    assert {p.adaptation for p in on.timeline} == {"embedding"} and {p.adaptation for p in off.timeline} == {"none"}
    assert {p.adaptation for p in output.timeline} == {"output"}
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    raw = [p.probabilities for p in Engine(shipped_model, adapt="none").run([x]) if p.is_speech]
    assert [p.probabilities for p in off.timeline if p.is_speech] == raw
    (chan,) = stream_ser.analyse_channels(ANGRY_CLIP, model=shipped_model, adapt="none")
    assert {p.adaptation for p in chan.timeline} == {"none"}
