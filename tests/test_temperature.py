"""Temperature scaling (training.temperature): the fit, the ECE, and the temperature written into
ONNX models the runtime then loads."""

from __future__ import annotations

import dataclasses

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx

from stream_ser.adaptation import OutputPrior, SpeakerNorm
from stream_ser.engine import Engine, cut_window, window_ends
from stream_ser.features import FeatureConfig, window_features
from stream_ser.metadata import ModelMetadata
from stream_ser.model import EmotionModel
from stream_ser.audio import load_audio
from training.corpora.base import Utterance
from training.temperature import (
    apply_temperature,
    calibration_figures,
    check_tempered,
    expected_calibration_error,
    fit_temperature,
    main,
    negative_log_likelihood,
    tempered,
    window_probabilities,
)

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")
MODELS = Path(__file__).resolve().parent.parent / "models"


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibrated_sample(n: int, n_classes: int = 7, spread: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a perfectly calibrated model and labels drawn from its own probabilities."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, spread, (n, n_classes))
    p = softmax(z)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(y, n_classes - 1)


def real_windows() -> np.ndarray:
    """Speech-window log-mels of two real clips (actors 21 and 22), float32 (n, n_mels, n_frames)."""
    out = []
    for path in (ANGRY_CLIP, HAPPY_CLIP):
        x = load_audio(path, CFG.sample_rate_hz)
        feats = [window_features(cut_window(x, e, CFG.window_samples), CFG) for e in window_ends(x.size, CFG.hop_samples)]
        out += [f for f in feats if f is not None]
    return np.stack(out)


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return real_windows()


@pytest.mark.parametrize("true_t", [2.0, 0.5])
def test_fit_recovers_a_known_temperature(true_t: float) -> None:
    """A calibrated model sharpened (T=2) or softened (T=0.5): the fit finds the temperature
    that undoes it, and that is where the NLL is lowest."""
    z, y = calibrated_sample(20000, seed=1)
    p = softmax(z * true_t)  # the model reports softmax(true_t * z); softmax(log p / true_t) is calibrated
    t = fit_temperature(p, y)
    assert abs(t - true_t) / true_t < 0.10
    nll = negative_log_likelihood(p, y, t)
    assert nll < negative_log_likelihood(p, y) - 0.01
    assert nll <= min(negative_log_likelihood(p, y, t * f) for f in (0.9, 1.1))
    np.testing.assert_allclose(tempered(p, t).argmax(axis=1), p.argmax(axis=1))


def test_ece_small_when_calibrated_large_when_over_confident() -> None:
    z, y = calibrated_sample(20000, seed=2)
    calibrated = expected_calibration_error(softmax(z), y)
    over = expected_calibration_error(softmax(3 * z), y)
    assert calibrated < 0.02
    assert over > 0.15
    assert expected_calibration_error(tempered(softmax(3 * z), fit_temperature(softmax(3 * z), y)), y) < 0.02


def test_ece_and_nll_by_hand() -> None:
    """Two filled bins of 10: (0.8, 0.9] half right at 0.85, (0.5, 0.6] all right at 0.55."""
    p = np.array([[0.85, 0.15], [0.85, 0.15], [0.55, 0.45], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(0.5 * 0.35 + 0.5 * 0.45)
    assert negative_log_likelihood(p, y) == pytest.approx(-np.mean(np.log([0.85, 0.15, 0.55, 0.55])))
    fig = calibration_figures(p, y, bins=10)
    assert fig["windows"] == 4 and fig["accuracy"] == 0.75 and fig["reliability"]["count"][8] == 2
    np.testing.assert_allclose(tempered(p, 1.0), p, atol=1e-12)
    np.testing.assert_allclose(tempered(p, 1e6), 0.5, atol=1e-5)  # infinite temperature: uniform
    with pytest.raises(ValueError):
        fit_temperature(p, np.array([0, 1, 2, 0]))  # no class 2
    with pytest.raises(ValueError):
        tempered(p, 0.0)
    with pytest.raises(ValueError):
        expected_calibration_error(p, y, bins=0)
    with pytest.raises(ValueError):
        fit_temperature(p, y, bounds=(2.0, 1.0))


def meta_with_prior() -> str:
    norm = SpeakerNorm.from_windows(np.random.default_rng(0).normal(-50, 12, (8, CFG.n_mels, 20)))
    prior = OutputPrior((0.3, -0.1, -0.2), prior_windows=11.0)
    return ModelMetadata(LABELS, CFG, provenance={"made_by": "tests"}, speaker_norm=norm, output_prior=prior).to_json()


@pytest.mark.parametrize("t", [2.5, 0.4])
def test_apply_temperature_on_a_tiny_model(tmp_path: Path, windows: np.ndarray, t: float) -> None:
    """The tempered graph outputs softmax(log p / T); labels, speaker norm, output prior and the
    rest of the provenance are kept, the temperature is recorded."""
    src = make_tiny_onnx(tmp_path / "tiny.onnx", LABELS, metadata=meta_with_prior(), seed=3)
    old = EmotionModel(src)
    out = apply_temperature(src, tmp_path / "t.onnx", t, fitted_on={"split": "x"}, ece_before=0.2,
                            ece_after=0.05, command="cmd")
    new = EmotionModel(out)
    p_old, p_new = old.predict(windows), new.predict(windows)
    assert p_old.max() - p_old.min() > 0.01  # the outputs are not all the same
    np.testing.assert_allclose(p_new, tempered(p_old, t), atol=1e-5)
    assert check_tempered(p_old, p_new, t) < 1e-5
    assert (p_new.argmax(axis=1) == p_old.argmax(axis=1)).all()
    # labels, recipe, names and speaker norm kept; the output prior divided by T, as the mean
    # centred log-probability of the tempered outputs is
    assert dataclasses.replace(new.metadata, output_prior=None) == dataclasses.replace(old.metadata, output_prior=None)
    np.testing.assert_allclose(new.metadata.output_prior.mean_log_prob,
                               np.array(old.metadata.output_prior.mean_log_prob) / t, atol=1e-12)
    prior_of = lambda p: OutputPrior.from_probabilities(p).mean_log_prob  # noqa: E731
    if min(p_old.min(), p_new.min()) > 1e-12:  # exact while no probability is floored (the tiny model saturates)
        np.testing.assert_allclose(prior_of(p_new), np.array(prior_of(p_old)) / t, atol=1e-4)
    assert new.metadata.speaker_norm == old.metadata.speaker_norm is not None
    prov = new.metadata.provenance
    assert prov["made_by"] == "tests"
    assert prov["temperature"] == {"value": t, "fitted_on": {"split": "x"}, "ece_before": 0.2, "ece_after": 0.05,
                                   "command": "cmd"}
    graph = onnx.load(str(out)).graph
    assert [n.op_type for n in graph.node][-2:] == ["Mul", "Softmax"]
    with pytest.raises(ValueError, match="differs"):
        check_tempered(p_old, p_old, t)

    twice = EmotionModel(apply_temperature(out, tmp_path / "tt.onnx", 2.0))
    np.testing.assert_allclose(twice.predict(windows), tempered(p_old, 2.0 * t), atol=1e-5)
    assert twice.metadata.provenance["temperature"]["previous"]["value"] == t


def test_apply_temperature_refuses_bad_input(tmp_path: Path) -> None:
    src = make_tiny_onnx(tmp_path / "tiny.onnx", LABELS)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(src, tmp_path / "bad.onnx", bad)
    proto = onnx.load(str(src))
    softmax = proto.graph.node[-1]
    softmax.output[0] = "softmax_out"
    proto.graph.node.append(onnx.helper.make_node("Identity", ["softmax_out"], ["probabilities"]))
    onnx.save(proto, str(tmp_path / "identity.onnx"))
    with pytest.raises(ValueError, match="not one Softmax"):
        apply_temperature(tmp_path / "identity.onnx", tmp_path / "bad.onnx", 2.0)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("name", ["stream-ser.onnx", "stream-ser-fp32.onnx"])
def test_apply_temperature_on_the_shipped_models(tmp_path: Path, windows: np.ndarray, name: str) -> None:
    """int8 (QDQ) and float32: outputs equal softmax(log p / T) on real windows, argmax and metadata
    unchanged; T=1 leaves the outputs as they were."""
    src = shutil.copy(MODELS / name, tmp_path / name)
    old = EmotionModel(src)
    p_old = old.predict(windows)
    new = EmotionModel(apply_temperature(src, tmp_path / "t.onnx", 1.7, fitted_on="tests"))
    p_new = new.predict(windows)
    np.testing.assert_allclose(p_new, tempered(p_old, 1.7), atol=1e-5)
    assert (p_new.argmax(axis=1) == p_old.argmax(axis=1)).all()
    assert p_new.max(axis=1).mean() < p_old.max(axis=1).mean()  # softer
    assert dataclasses.replace(new.metadata, output_prior=None) == dataclasses.replace(old.metadata, output_prior=None)
    assert new.labels == old.labels and old.metadata.output_prior is not None  # the shipped models adapt
    np.testing.assert_allclose(new.metadata.output_prior.mean_log_prob,
                               np.array(old.metadata.output_prior.mean_log_prob) / 1.7, atol=1e-12)
    assert {k: v for k, v in new.metadata.provenance.items() if k != "temperature"} == {
        k: v for k, v in old.metadata.provenance.items() if k != "temperature"}
    assert new.metadata.provenance["temperature"].get("previous") == old.metadata.provenance.get("temperature")
    same = EmotionModel(apply_temperature(src, tmp_path / "one.onnx", 1.0))
    np.testing.assert_allclose(same.predict(windows), p_old, atol=1e-7)
    assert (MODELS / name).read_bytes() == Path(src).read_bytes()  # the input is not modified


def test_window_probabilities_are_the_engines(tmp_path: Path) -> None:
    model = EmotionModel(MODELS / "stream-ser.onnx")
    utts = [Utterance(ANGRY_CLIP, "ravdess", "ravdess:21", "angry", "angry"),
            Utterance(HAPPY_CLIP, "ravdess", "ravdess:22", "happy", "happy"),
            Utterance(HAPPY_CLIP, "emodb", "emodb:03", None, "boredom")]
    p, y = window_probabilities(model, utts)
    want = [np.array([q.probabilities for q in Engine(model, adapt="none").run([load_audio(u.path, 16000)])
                      if q.is_speech]) for u in utts[:2]]
    assert p.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(p, np.concatenate(want))
    assert y.tolist() == [model.labels.index("angry")] * len(want[0]) + [model.labels.index("happy")] * len(want[1])


def test_cli_fits_on_validation_and_writes_a_checked_model(tmp_path: Path, capsys) -> None:
    """End to end on two real clips: actor 21 as the validation speaker, 22 as the test speaker."""
    data = tmp_path / "data"
    for clip, actor in ((ANGRY_CLIP, "21"), (HAPPY_CLIP, "22")):
        (data / "ravdess" / f"Actor_{actor}").mkdir(parents=True)
        shutil.copy(clip, data / "ravdess" / f"Actor_{actor}" / clip.name)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"name": "tiny", "train": ["ravdess:01"], "validation": ["ravdess:21"],
                                 "test": ["ravdess:22"]}))
    model = EmotionModel(MODELS / "stream-ser.onnx")
    val_p, val_y = window_probabilities(model, [Utterance(ANGRY_CLIP, "ravdess", "ravdess:21", "angry", "angry")])
    out, report = tmp_path / "t.onnx", tmp_path / "report.json"
    main(["--data", str(data), "--model", str(MODELS / "stream-ser.onnx"), "--split", str(split),
          "--out", str(out), "--report", str(report)])
    rep = json.loads(report.read_text())
    assert rep["temperature"] == pytest.approx(fit_temperature(val_p, val_y), rel=1e-4)  # validation only
    assert rep["fitted_on"] == {"split": "tiny", "speakers": "validation", "clips": 1, "windows": len(val_y)}
    val = rep["validation"]["all"]
    assert val["after"]["nll"] <= val["before"]["nll"] + 1e-9
    assert val["after"]["accuracy"] == val["before"]["accuracy"]
    assert set(rep["test"]) == {"ravdess"} and rep["check_max_abs_diff"] < 1e-5
    new = EmotionModel(out)
    assert new.metadata.provenance["temperature"]["value"] == rep["temperature"]
    assert new.metadata.provenance["temperature"]["ece_before"] == val["before"]["ece"]
    assert "temperature T =" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--model", str(out), "--split", str(split), "--out", str(out)])
