"""Embedding adaptation (stream_ser.adaptation.EmbeddingAdapter): the maths against the
training reference (training.embedding_adaptation), the metadata entry, the engine, the command
line and the API on real clips."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, make_tiny_onnx

from stream_ser.adaptation import EmbeddingAdaptation, EmbeddingAdapter, OutputPrior, resolve_adapt
from stream_ser.audio import load_audio
from stream_ser.cli import main
from stream_ser.engine import ChannelEngines, Engine
from stream_ser.features import FeatureConfig
from stream_ser.metadata import ModelMetadata, ModelMetadataError
from stream_ser.model import EmotionModel, ModelError
from training.embedding_adaptation import (DenseTail, aligned_embeddings, aligned_entry, causal_standardise,
                                          dense_tail, recorded_windows)

CFG = FeatureConfig()
LABELS = ("neutral", "happy", "sad")


def head_reference(e: np.ndarray, a: EmbeddingAdaptation) -> np.ndarray:
    """The training module's causal standardisation, then the head and the tempered softmax,
    written out independently of the runtime (float64 ``(n, n_classes)``)."""
    z = causal_standardise(np.asarray(e, np.float64), np.array(a.prior_mean), np.array(a.prior_mean_square),
                           a.prior_windows)
    if a.hidden:
        z = np.maximum(z @ np.array(a.hidden_weights).T + np.array(a.hidden_bias), 0.0)
    logits = (z @ np.array(a.weights).T + np.array(a.bias)) / a.temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def random_adaptation(dim: int, n_classes: int = 3, seed: int = 0, output: str = "embedding",
                      center: float = 0.0, spread: float = 1.0, prior_windows: float = 4.0) -> EmbeddingAdaptation:
    """A prior around ``center`` (per-dimension standard deviation about ``spread``) and a random head."""
    rng = np.random.default_rng(seed)
    mean = center + rng.normal(0, spread, dim)
    var = (spread * rng.uniform(0.5, 1.5, dim)) ** 2
    return EmbeddingAdaptation(output, tuple(mean), tuple(var + mean**2), prior_windows,
                               tuple(map(tuple, rng.normal(0, 1, (n_classes, dim)))),
                               tuple(rng.normal(0, 0.5, n_classes)), temperature=1.3)


def tiny_embedding_model(tmp_path: Path, seed: int = 0, **kwargs) -> tuple[EmotionModel, EmbeddingAdaptation]:
    """The tiny model (its embedding: each mel band's mean level over the window, dB) with an
    embedding adaptation whose prior sits near real speech levels."""
    a = random_adaptation(CFG.n_mels, len(LABELS), seed=seed, center=-30.0, spread=8.0)
    return EmotionModel(make_tiny_onnx(tmp_path / f"emb{seed}.onnx", LABELS, embedding_adaptation=a, **kwargs)), a


def speech_windows(model: EmotionModel, x: np.ndarray) -> np.ndarray:
    """The log-mel windows the engine scores for ``x`` (its speech windows, in order), recorded
    from its calls to the model; float32 ``(n, n_mels, n_frames)``."""
    with recorded_windows(model) as seen:
        preds = [p for p in Engine(model, adapt="none").run([x]) if p.is_speech]
    assert len(seen) == len(preds) > 3
    return np.concatenate(seen)


def test_adapter_equals_the_training_reference() -> None:
    """Window by window, the adapter is the training module's causal standardisation and the
    head, to 1e-6, including a dimension whose variance hits the floor; reset starts afresh."""
    rng = np.random.default_rng(1)
    a = random_adaptation(12, 4, seed=2, prior_windows=7.0)
    # a new voice: shifted and scaled against the prior, one dimension constant at the prior's
    # mean with no prior variance (the 1e-6 floor applies)
    e = rng.normal(np.array(a.prior_mean) + 1.5, 2.0, (80, 12))
    mean = list(a.prior_mean)
    m2 = list(a.prior_mean_square)
    m2[3] = mean[3] ** 2
    a = EmbeddingAdaptation(a.output, tuple(mean), tuple(m2), a.prior_windows, a.weights, a.bias, a.temperature)
    e[:, 3] = mean[3]
    adapter = EmbeddingAdapter(a)
    out = np.array([adapter(v) for v in e])
    want = head_reference(e, a)
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert out.dtype == np.float32 and adapter.windows == 80
    assert np.allclose(out.sum(axis=1), 1, atol=1e-6) and (out >= 0).all()
    # the running statistics matter: the same windows standardised with the prior alone differ
    z0 = (e - np.array(mean)) / np.sqrt(np.maximum(np.array(m2) - np.array(mean) ** 2, 1e-6))
    fixed = np.exp((z0 @ np.array(a.weights).T + np.array(a.bias)) / a.temperature)
    assert np.abs(fixed / fixed.sum(axis=1, keepdims=True) - out).max() > 0.1
    adapter.reset()
    assert adapter.windows == 0
    np.testing.assert_allclose(adapter(e[0]), want[0], atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        adapter(np.zeros(11))


def test_entry_round_trip_and_validation() -> None:
    a = random_adaptation(6, 3)
    meta = ModelMetadata(LABELS, CFG, embedding_adaptation=a)
    back = ModelMetadata.from_json(meta.to_json())
    assert back.embedding_adaptation == a and back.embedding_adaptation.dim == 6
    entry = json.loads(meta.to_json())["embedding_adaptation"]
    assert set(entry) == {"output", "prior_mean", "prior_mean_square", "prior_windows", "weights", "bias",
                          "temperature"}
    del entry["temperature"]  # optional: 1
    assert EmbeddingAdaptation.from_dict(entry).temperature == 1.0
    d = a.to_dict()
    bad = {
        "length": {**d, "prior_mean_square": d["prior_mean_square"][:-1]},
        "row": {**d, "weights": [r[:-1] for r in d["weights"]]},
        "bias": {**d, "bias": d["bias"][:2]},
        "finite": {**d, "prior_mean": [float("nan")] + d["prior_mean"][1:]},
        "negative variance": {**d, "prior_mean_square": [-1.0] + d["prior_mean_square"][1:]},
        "prior_windows": {**d, "prior_windows": 0},
        "temperature": {**d, "temperature": -1.0},
        "output": {**d, "output": ""},
        "incomplete": {k: v for k, v in d.items() if k != "bias"},
        "one class": {**d, "weights": d["weights"][:1], "bias": d["bias"][:1]},
    }
    for what, entry in bad.items():
        with pytest.raises(ValueError):
            EmbeddingAdaptation.from_dict(entry)
        text = json.dumps({**json.loads(meta.to_json()), "embedding_adaptation": entry})
        with pytest.raises(ModelMetadataError, match="embedding_adaptation"):
            ModelMetadata.from_json(text)
    with pytest.raises(ModelMetadataError, match="3 classes, 'labels' 2"):
        ModelMetadata.from_json(ModelMetadata(("a", "b"), CFG, embedding_adaptation=a).to_json())
    with pytest.raises(ModelMetadataError, match="graph output of its own"):
        ModelMetadata.from_json(ModelMetadata(LABELS, CFG, embedding_adaptation=random_adaptation(
            6, 3, output="probabilities")).to_json())


def random_tail(dim: int, hidden: int, n_classes: int, seed: int = 0) -> DenseTail:
    rng = np.random.default_rng(seed)
    return DenseTail(rng.normal(0, 1, (hidden, dim)) / np.sqrt(dim), rng.normal(0, 0.3, hidden),
                     rng.normal(0, 1, (n_classes, hidden)), rng.normal(0, 0.3, n_classes))


def test_aligned_head_is_the_networks_tail_on_the_aligned_embedding() -> None:
    """Written into the entry (the mapping onto the training statistics folded into the first
    dense layer), the runtime's aligned head gives, window by window, the network's own dense
    layers on the training module's causally aligned embedding; with a prior that outweighs
    the voice, the network's own output; and it survives the metadata round trip."""
    rng = np.random.default_rng(4)
    dim, tail = 10, random_tail(10, 6, 3, seed=5)
    mean, within = rng.normal(2, 1, dim), rng.uniform(0.3, 2.0, dim)
    e = rng.normal(mean - 1.0, 2.5, (60, dim))  # a voice away from the training voices
    for w in (7.0, 1e12):
        fields = {k: np.asarray(v).tolist() for k, v in aligned_entry(tail, mean, within).items()}
        a = EmbeddingAdaptation("embedding", tuple(fields["prior_mean"]), tuple(fields["prior_mean_square"]), w,
                                tuple(map(tuple, fields["weights"])), tuple(fields["bias"]), 1.0,
                                tuple(map(tuple, fields["hidden_weights"])), tuple(fields["hidden_bias"]))
        assert a.hidden == 6 and a.dim == dim and a.n_classes == 3
        adapter = EmbeddingAdapter(a)
        got = np.array([adapter(v) for v in e])
        want = tail.probabilities(aligned_embeddings(e, mean, within, "aligned-causal", w))
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got, head_reference(e, a), atol=1e-6)
    np.testing.assert_allclose(got, tail.probabilities(e), atol=1e-6)  # w = 1e12: the network as trained
    back = ModelMetadata.from_json(ModelMetadata(LABELS, CFG, embedding_adaptation=a).to_json()).embedding_adaptation
    assert back == a and back.hidden == 6
    d = a.to_dict()
    for bad in ({**d, "hidden_bias": d["hidden_bias"][:-1]},
                {**d, "hidden_weights": [r[:-1] for r in d["hidden_weights"]]},
                {**d, "weights": [r + [0.0] for r in d["weights"]]},  # output rows must be hidden wide
                {**d, "hidden_bias": [float("inf")] + d["hidden_bias"][1:]}):
        with pytest.raises(ValueError):
            EmbeddingAdaptation.from_dict(bad)


def test_dense_tail_is_the_shipped_networks_own_layers_after_the_pooling(tmp_path: Path) -> None:
    """Read from the float32 file's graph, the dense layers give the network's own logits on
    real speech windows (the graph's probabilities are their softmax at its temperature)."""
    import onnxruntime as ort

    from training.embedding_adaptation import embedding_tensors

    path = Path(__file__).resolve().parents[1] / "models" / "stream-ser-fp32.onnx"
    model = EmotionModel(path)
    windows = speech_windows(model, load_audio(HAPPY_CLIP, CFG.sample_rate_hz))
    graph, names = embedding_tensors(path)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    probs, pooled = session.run(["probabilities", names["pooled"]], {model.metadata.input_name: windows[..., None]})
    tail = dense_tail(path)
    assert tail.hidden_weights.shape == (64, 128) and tail.weights.shape == (7, 64)
    logits = tail.logits(pooled.reshape(len(windows), -1))
    log_p = np.log(probs.astype(np.float64))
    centred = logits - logits.mean(axis=1, keepdims=True)
    scale = float(np.sum(centred * (log_p - log_p.mean(axis=1, keepdims=True))) / np.sum(centred ** 2))
    assert scale > 0
    np.testing.assert_allclose(scale * centred, log_p - log_p.mean(axis=1, keepdims=True), atol=1e-4)
    with pytest.raises(ValueError, match="no GlobalAveragePool"):
        dense_tail(make_tiny_onnx(tmp_path / "tiny.onnx", LABELS))


def test_model_checks_the_embedding_output(tmp_path: Path) -> None:
    """The entry's output must exist in the graph and match its dimension; the model then gives
    probabilities and embeddings from one run, the same probabilities as predict."""
    model, a = tiny_embedding_model(tmp_path)
    x = speech_windows(model, load_audio(HAPPY_CLIP, CFG.sample_rate_hz))
    probs, emb = model.predict_with_embedding(x)
    assert emb.shape == (len(x), CFG.n_mels) and emb.dtype == np.float32
    np.testing.assert_array_equal(probs, model.predict(x))
    np.testing.assert_allclose(emb, x.mean(axis=2), atol=1e-4)  # the tiny graph's embedding: band means
    p1, e1 = model.predict_with_embedding(x[0])
    assert p1.shape == (3,) and e1.shape == (CFG.n_mels,)
    # the entry names an output the graph lacks, or one of another length
    meta = ModelMetadata(LABELS, CFG, embedding_adaptation=a).to_json()
    with pytest.raises(ModelError, match="'embedding' is not in graph outputs"):
        EmotionModel(make_tiny_onnx(tmp_path / "missing.onnx", LABELS, metadata=meta))
    short = random_adaptation(CFG.n_mels - 1, 3)
    path = make_tiny_onnx(tmp_path / "short.onnx", LABELS, embedding_adaptation=a,
                          metadata=ModelMetadata(LABELS, CFG, embedding_adaptation=short).to_json())
    with pytest.raises(ModelError, match=rf"not \(batch, {CFG.n_mels - 1}\)"):
        EmotionModel(path)
    plain = EmotionModel(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))
    with pytest.raises(ValueError, match="no embedding adaptation"):
        plain.predict_with_embedding(x)


def test_resolve_adapt() -> None:
    a, prior = random_adaptation(4), OutputPrior((0.0, 0.0, 0.0))
    assert [resolve_adapt("auto", e, o) for e, o in ((a, prior), (None, prior), (None, None))] == [
        "embedding", "output", "none"]
    assert resolve_adapt("output", a, prior) == "output" and resolve_adapt("none", a, prior) == "none"
    with pytest.raises(ValueError, match="carries output adaptation"):
        resolve_adapt("embedding", None, prior)
    with pytest.raises(ValueError, match="carries embedding adaptation"):
        resolve_adapt("output", a, None)
    with pytest.raises(ValueError, match="one of"):
        resolve_adapt("embeddings", a, prior)


def test_engine_runs_the_head_on_the_standardised_embedding(tmp_path: Path) -> None:
    """On real speech, "auto" on a model with the entry runs embedding adaptation: every
    prediction says so and its probabilities are the head's on the voice-standardised
    embeddings of the windows scored (recomputed here from the log-mels, without the model),
    whatever the threads; each channel has its own voice."""
    model, a = tiny_embedding_model(tmp_path)
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    engine = Engine(model)
    assert engine.adaptation == "embedding" and isinstance(engine.adapter, EmbeddingAdapter)
    preds = list(engine.run([x]))
    assert {p.adaptation for p in preds} == {"embedding"}
    speech = [p for p in preds if p.is_speech]
    want = head_reference(speech_windows(model, x).mean(axis=2), a)
    np.testing.assert_allclose([p.probabilities for p in speech], want, atol=1e-5)
    assert [p.label for p in speech] == [LABELS[i] for i in want.argmax(axis=1)]
    own = [p.probabilities for p in Engine(model, adapt="none").run([x]) if p.is_speech]
    assert np.abs(np.array(own) - want).max() > 0.05  # not the network's own output
    assert [p.probabilities for p in Engine(model).run([x], jobs=2) if p.is_speech] == [p.probabilities for p in speech]
    y = load_audio(HAPPY_CLIP, CFG.sample_rate_hz)
    n = min(x.size, y.size)
    both = list(ChannelEngines(model, channels=(1, 2)).run([np.stack([x[:n], y[:n]], axis=1)]))
    alone = [p.probabilities for p in Engine(model).run([y[:n]]) if p.is_speech]
    assert [p.probabilities for p in both if p.channel == 2 and p.is_speech] == alone
    # an explicit mode the model does not carry, or an adapter of the wrong kind
    with pytest.raises(ValueError, match="output_prior"):
        Engine(model, adapt="output")
    with pytest.raises(ValueError, match="needs a EmbeddingAdapter"):
        Engine(model, adapter=object())


def test_adapter_carries_the_voice_across_engines(tmp_path: Path) -> None:
    """The channel's adapter passed to the next engine (a resumed session) goes on with the same
    voice: the second engine's probabilities are the head on statistics that include the first's windows."""
    model, a = tiny_embedding_model(tmp_path)
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    first = ChannelEngines(model)
    n1 = len([p for p in first.run([x]) if p.is_speech])
    adapters = [e.adapter for e in first.engines]
    second = ChannelEngines(model, adapters=adapters)
    assert second.engines[0].adapter is adapters[0] and second.adaptation == "embedding"
    again = [p.probabilities for p in second.run([x]) if p.is_speech]
    emb = speech_windows(model, x).mean(axis=2)
    want = head_reference(np.concatenate([emb, emb]), a)[n1:]
    np.testing.assert_allclose(again, want, atol=1e-5)
    assert adapters[0].windows == 2 * n1
    with pytest.raises(ValueError, match="needs a EmbeddingAdapter"):
        ChannelEngines(model, adapters=[object()])


@pytest.mark.parametrize("name", ["stream-ser-fp32.onnx", "stream-ser.onnx"])
def test_shipped_files_carry_their_pooled_embedding_and_head(name: str) -> None:
    """The shipped files (float32 and int8) carry the contract: an ``embedding`` output equal to
    the network's last global average pooling (as training.embedding_adaptation takes it from
    the graph), and an entry whose head "auto" runs: the engine's probabilities are the head on
    the causally standardised embeddings of the same windows, recomputed here without the
    runtime's adapter. Asking for output adaptation still works (both files carry a prior)."""
    import onnxruntime as ort

    from training.embedding_adaptation import embedding_tensors

    path = Path(__file__).resolve().parents[1] / "models" / name
    model = EmotionModel(path)
    a = model.metadata.embedding_adaptation
    assert a is not None and a.output == "embedding" and len(a.prior_mean) == 128
    assert model.metadata.provenance["embedding_adaptation"]["command"].endswith(f"--write-model models/{name}")
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    windows = speech_windows(model, x)
    graph, names = embedding_tensors(path)  # the reference's own view of the embedding
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    pooled, emb = session.run([names["pooled"], "embedding"], {model.metadata.input_name: windows[..., None]})
    np.testing.assert_array_equal(pooled.reshape(len(windows), -1), emb)
    _, got = model.predict_with_embedding(windows)
    np.testing.assert_allclose(got, emb, atol=1e-6)
    preds = [p for p in Engine(model).run([x]) if p.is_speech]
    assert {p.adaptation for p in preds} == {"embedding"} and len(preds) == len(windows)
    np.testing.assert_allclose([p.probabilities for p in preds], head_reference(emb.astype(np.float64), a), atol=1e-5)
    assert Engine(model, adapt="output").adaptation == "output"


def test_shipped_model_auto_is_embedding_adaptation(shipped_model) -> None:
    """The shipped model carries both adaptations: "auto" is embedding adaptation, prediction
    for prediction, and "output" and "none" still run what they name."""
    x = load_audio(ANGRY_CLIP, CFG.sample_rate_hz)
    auto = list(Engine(shipped_model).run([x]))
    assert {p.adaptation for p in auto} == {"embedding"}
    assert auto == list(Engine(shipped_model, adapt="embedding").run([x]))
    output = [p for p in Engine(shipped_model, adapt="output").run([x]) if p.is_speech]
    assert {p.adaptation for p in output} == {"output"}
    assert [p.probabilities for p in output] != [p.probabilities for p in auto if p.is_speech]


def test_cli_adapt_embedding_needs_the_entry(tmp_path: Path, capsys) -> None:
    prior = OutputPrior(tuple(np.linspace(-0.3, 0.3, len(LABELS))))
    only_output = str(make_tiny_onnx(tmp_path / "output.onnx", LABELS, output_prior=prior))
    for model in (only_output, str(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))):
        args = ["analyse", str(ANGRY_CLIP), "--adapt", "embedding", "--csv", str(tmp_path / "x.csv"), "-q"]
        assert main(args + ["--model", model]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("stream-ser: error: --adapt embedding: model ") and len(err.splitlines()) == 1
        assert "'embedding_adaptation'" in err
        assert ("carries output adaptation" if model == only_output else "carries no adaptation") in err
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(SystemExit) as info:
        main(["analyse", str(ANGRY_CLIP), "--adapt", "embeddings"])
    assert info.value.code == 2
    from stream_ser.adaptation import ADAPT_MODES
    from stream_ser.cli.parser import build_parser

    for command in (["analyse", "x"], ["listen"], ["batch", "x", "--out", "y"], ["serve"]):  # every --adapt: the modes
        assert build_parser().parse_args(command).adapt == "auto"
        assert [build_parser().parse_args([*command, "--adapt", m]).adapt for m in ADAPT_MODES] == list(ADAPT_MODES)


def test_cli_writes_embedding_in_csv_and_jsonl(tmp_path: Path, capsys) -> None:
    model, _ = tiny_embedding_model(tmp_path)
    out, lines = tmp_path / "t.csv", tmp_path / "t.jsonl"
    assert main(["analyse", str(ANGRY_CLIP), "--model", str(model.path), "--csv", str(out), "--jsonl", str(lines),
                 "-q"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["adaptation"] for r in rows} == {"embedding"}
    preds = [json.loads(s) for s in lines.read_text().splitlines() if '"prediction"' in s]
    assert preds and {p["adaptation"] for p in preds} == {"embedding"}
    # the same probabilities as the engine's
    want = [p for p in Engine(model).run([load_audio(ANGRY_CLIP, CFG.sample_rate_hz)]) if p.is_speech]
    got = [r for r in rows if r["speech"] == "1"]
    np.testing.assert_allclose([[float(r[f"p_{k}"]) for k in LABELS] for r in got],
                               [p.probabilities for p in want], atol=1e-4)
    assert main(["analyse", str(ANGRY_CLIP), "--model", str(model.path), "--adapt", "output", "-q"]) == 2
    assert "carries embedding adaptation" in capsys.readouterr().err
    main(["info", "--model", str(model.path)])
    info = capsys.readouterr().out
    assert f"embedding adaptation: available, the default (--adapt auto; --adapt output or none turns it off): " \
           f"the network's {CFG.n_mels}-value embedding" in info and "prior weight 4 windows" in info
    assert "output adaptation: not available" in info


def test_api_adapt_and_the_deprecated_switch(tmp_path: Path) -> None:
    import stream_ser
    from stream_ser.session import SessionOptions

    model, _ = tiny_embedding_model(tmp_path, output_prior=OutputPrior((0.2, -0.1, -0.1)))
    result = {m: stream_ser.analyse(ANGRY_CLIP, model=model, adapt=m) for m in ("auto", "embedding", "output", "none")}
    assert [{p.adaptation for p in r.timeline} for r in result.values()] == [{"embedding"}, {"embedding"}, {"output"},
                                                                             {"none"}]
    assert result["auto"] == result["embedding"]
    with pytest.warns(DeprecationWarning, match="adapt_output is deprecated"):
        old = stream_ser.analyse(ANGRY_CLIP, model=model, adapt_output=False)
    assert old == result["none"]
    with pytest.warns(DeprecationWarning):
        assert Engine(model, adapt_output=True).adaptation == "embedding"
    with pytest.raises(TypeError, match="not both"):
        stream_ser.analyse(ANGRY_CLIP, model=model, adapt="none", adapt_output=False)
    with pytest.raises(ValueError, match="adapt must be one of"):
        SessionOptions(adapt="output-prior")
    from stream_ser.session import ListenSession

    plain = EmotionModel(make_tiny_onnx(tmp_path / "plain.onnx", LABELS))
    with pytest.raises(ValueError, match="carries no adaptation"):  # before any audio is opened
        ListenSession(plain, lambda: None, options=SessionOptions(adapt="embedding", gate="level"))
    assert ListenSession(model, lambda: None, options=SessionOptions(gate="level")).adaptation == "embedding"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new parameter warns nothing
        (chan,) = stream_ser.analyse_channels(ANGRY_CLIP, model=model, adapt="none")
    assert [p.probabilities for p in chan.timeline] == [p.probabilities for p in result["none"].timeline]


def test_batch_row_and_timeline_say_embedding(tmp_path: Path) -> None:
    """A batch recording scored with the default adapt: its summary row and its timeline's
    adaptation column say "embedding"; --adapt none says "none"."""
    pq = pytest.importorskip("pyarrow.parquet")
    from stream_ser.batch import BatchLayout, BatchOptions, Recording
    from stream_ser.batch.scoring import score_to_files

    model, _ = tiny_embedding_model(tmp_path)
    for adapt, want in (("auto", "embedding"), ("none", "none")):
        layout = BatchLayout(tmp_path / f"out-{adapt}")
        options = BatchOptions(model=str(model.path), adapt=adapt)
        row = score_to_files(model, Recording(str(ANGRY_CLIP), "angry"), options, layout)
        assert row["status"] == "ok" and row["adaptation"] == want
        assert set(pq.read_table(layout.timeline_path("angry")).column("adaptation").to_pylist()) == {want}
