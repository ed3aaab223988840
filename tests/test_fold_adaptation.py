"""The embedding adaptation on the fold protocols (training/fold_adaptation.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from training.folds import PROTOCOLS
from training.embedding_adaptation import ALIGNED_METHODS, aligned_embeddings
from training.fold_adaptation import MODES, adapted_probabilities, fold_embedding_adaptation, speaker_orders

LABELS = ("neutral", "happy", "sad")


def _voices(rng: np.random.Generator, speakers: list[str], clips_per_class: int = 6, windows: int = 3, dim: int = 8):
    """Embeddings where each class is a direction, and each speaker adds a large offset and scale
    of its own: only a speaker-standardised head separates the classes of an unseen voice."""
    centres = rng.normal(0, 1, (len(LABELS), dim)) * 2
    emb, clip_index, clip_spk, clip_y = [], [], [], []
    for s in speakers:
        offset, scale = rng.normal(0, 6, dim), rng.uniform(0.5, 3, dim)
        for y in range(len(LABELS)):
            for _ in range(clips_per_class):
                clip_spk.append(s)
                clip_y.append(y)
                for _ in range(windows):
                    emb.append(offset + scale * (centres[y] + rng.normal(0, 0.5, dim)))
                    clip_index.append(len(clip_spk) - 1)
    return np.array(emb), np.array(clip_index), clip_spk, np.array(clip_y)


def test_speaker_standardised_head_recovers_unseen_voices_and_causal_is_causal() -> None:
    rng = np.random.default_rng(0)
    train = [f"tr{i}" for i in range(8)]
    e, ci, spk, y = _voices(rng, train + ["va", "te1", "te2"])
    res = fold_embedding_adaptation(e, ci, spk, y, set(train), {"va"}, {"te1", "te2"}, LABELS, prior_windows=10)
    test_clips = res["test_clips"]
    assert [spk[c] for c in test_clips] == ["te1"] * 18 + ["te2"] * 18
    truth = [LABELS[y[c]] for c in test_clips]
    acc = {m: np.mean([p == t for p, t in zip(pred, truth)]) for m, pred in res["clip_pred"].items()}
    assert acc["transductive"] > 0.9, acc
    assert acc["causal"] > 0.6, acc  # the first clips of each voice still lean on the prior
    assert acc["training"] < acc["causal"] - 0.1, acc  # without adaptation each voice keeps its offset
    assert res["validation_windows"] == 18 * 3 and res["temperature"] > 0
    # causality: a window changes its own and later probabilities only
    from training.embedding_adaptation import fit_speaker_head

    clf_head = fit_speaker_head([(e[np.isin(ci, np.flatnonzero(np.array(spk) == s))],
                                  y[ci[np.isin(ci, np.flatnonzero(np.array(spk) == s))]]) for s in train])
    rows = np.flatnonzero(np.isin(ci, np.flatnonzero(np.array(spk) == "te1")))
    p = adapted_probabilities(clf_head, e[rows], "causal", len(LABELS), 10)
    e2 = e[rows].copy()
    e2[20] += 50.0
    p2 = adapted_probabilities(clf_head, e2, "causal", len(LABELS), 10)
    assert np.array_equal(p[:20], p2[:20]) and not np.allclose(p[20:], p2[20:])
    with pytest.raises(ValueError):
        adapted_probabilities(clf_head, e[rows], "global", len(LABELS))


def test_aligned_embeddings_map_each_voice_onto_the_training_statistics() -> None:
    rng = np.random.default_rng(3)
    mu, var = rng.normal(0, 1, 6), rng.uniform(0.2, 2.0, 6)
    voice = rng.normal(0, 1, (50, 6))
    out = aligned_embeddings(voice, mu, var, "aligned-transductive")
    assert np.allclose(out.mean(axis=0), mu) and np.allclose(out.var(axis=0), var)
    # invariant to the voice's own offset and scale per dimension
    a, b = rng.uniform(0.3, 3.0, 6), rng.normal(0, 5, 6)
    assert np.allclose(aligned_embeddings(a * voice + b, mu, var, "aligned-transductive"), out)
    for mode in ("aligned-causal", "aligned-mean-causal"):
        # a prior that outweighs the voice leaves the embedding unchanged: the network as trained
        assert np.allclose(aligned_embeddings(voice, mu, var, mode, prior_windows=1e12), voice)
        # causal: a window changes its own and later outputs only
        moved = voice.copy()
        moved[20] += 9.0
        o1, o2 = aligned_embeddings(voice, mu, var, mode), aligned_embeddings(moved, mu, var, mode)
        assert np.array_equal(o1[:20], o2[:20]) and not np.allclose(o1[21:], o2[21:])
    # the mean-only mode removes a voice's offset as fast as its running mean learns it (prior
    # weight w: after t windows, w / (w + t) of the offset is left), and keeps its spread
    left = aligned_embeddings(voice + 4.0, mu, var, "aligned-mean-causal", prior_windows=5.0) \
        - aligned_embeddings(voice, mu, var, "aligned-mean-causal", prior_windows=5.0)
    assert np.allclose(left, 4.0 * 5.0 / (5.0 + np.arange(1, 51))[:, None])
    with pytest.raises(ValueError):
        aligned_embeddings(voice, mu, var, "causal")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow (pip install -e .[train])")
def test_aligned_modes_recover_unseen_voices_with_the_networks_own_tail() -> None:
    """A tail fitted on the training voices' raw embeddings (as the network's layers after the
    pooling are) fails on voices with their own offset and scale, unless each voice is aligned;
    refitted on the training voices' aligned windows it recovers them too."""
    from sklearn.linear_model import LogisticRegression

    from training.embedding_adaptation import DenseTail

    rng = np.random.default_rng(0)
    train = [f"tr{i}" for i in range(8)]
    e, ci, spk, y = _voices(rng, train + ["va", "te1", "te2"])
    is_train = np.isin(np.array(spk)[ci], train)
    clf = LogisticRegression(max_iter=3000).fit(e[is_train], y[ci[is_train]])
    # the logistic regression as a ReLU tail: relu(x) and relu(-x), then W relu(x) - W relu(-x) = W x
    eye = np.eye(e.shape[1])
    tail = DenseTail(np.vstack([eye, -eye]), np.zeros(2 * e.shape[1]), np.hstack([clf.coef_, -clf.coef_]),
                     clf.intercept_)
    assert np.allclose(tail.probabilities(e[:20]), clf.predict_proba(e[:20]))
    res = fold_embedding_adaptation(e, ci, spk, y, set(train), {"va"}, {"te1", "te2"}, LABELS, prior_windows=10,
                                    tail=tail)
    truth = [LABELS[y[c]] for c in res["test_clips"]]
    acc = {m: np.mean([p == t for p, t in zip(pred, truth)]) for m, pred in res["clip_pred"].items()}
    rows = np.isin(ci, res["test_clips"])
    raw = np.mean(clf.predict(e[rows]) == y[ci[rows]])  # the tail without alignment, per window
    assert acc["aligned-transductive"] > 0.9 and acc["aligned-transductive"] > raw + 0.2, (acc, raw)
    assert acc["aligned-causal"] > raw + 0.1 and acc["aligned-tuned-causal"] > raw + 0.1, (acc, raw)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow (pip install -e .[train])")
def test_network_tail_continues_the_network_from_its_pooled_embedding() -> None:
    from training.architectures import REGISTRY
    from training.fold_adaptation import keras_dense_tail, pooled_embeddings

    model = REGISTRY["cnn_gap_small"].build((64, 94), 7)
    x = np.random.default_rng(0).normal(0, 1, (5, 64, 94, 1)).astype(np.float32)
    probs = keras_dense_tail(model).probabilities(pooled_embeddings(model, x))
    assert probs.shape == (5, 7)
    assert np.allclose(probs, model.predict(x, verbose=0), atol=1e-5)


def test_test_speakers_are_played_in_the_baselines_clip_order() -> None:
    """The causal baseline (eGeMAPS + SVM, speaker_causal) standardises a test clip with the
    clips before it in its order: with one seed, both see each voice's clips in the same order."""
    from training.baseline_egemaps import standardise

    rng = np.random.default_rng(1)
    spk = np.array(["t2"] * 7 + ["tr"] * 30 + ["t1"] * 9)
    x = rng.normal(0, 1, (len(spk), 2))
    train = spk == "tr"
    z = standardise(x, spk, train, "speaker_causal", seed=0)
    orders = speaker_orders(list(spk), {"t1", "t2"}, seed=0)
    for s, order in orders.items():
        assert sorted(order) == list(np.flatnonzero(spk == s))
        # the first clip in the order is standardised with the prior and itself alone
        first = order[0]
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        n = 10.0 + 1
        m = (10.0 * mu + x[first]) / n
        v = (10.0 * (sd**2 + mu**2) + x[first] ** 2) / n - m**2
        assert np.allclose(z[first], (x[first] - m) / np.sqrt(v))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow (pip install -e .[train])")
def test_train_fold_records_the_embedding_adaptation() -> None:
    """A fold run of a pooled CNN stores its test clips scored with the embedding adaptation."""
    from tests.test_training_harness import _harness_recipe, _synthetic_ravdess7
    from training import experiments
    from training.architectures import REGISTRY

    fs = _synthetic_ravdess7(np.random.default_rng(0), 2)
    rec = experiments.train_fold(REGISTRY["cnn_gap_small"], PROTOCOLS["ravdess7"], 6, fs, None,
                                 _harness_recipe("cnn_gap_small"))
    adapted = rec["embedding_adaptation"]
    assert set(adapted["clip"]) == {*MODES, *ALIGNED_METHODS, "mixed-causal", "aligned-tuned-causal"}
    for mode in adapted["clip"]:
        assert adapted["clip"][mode]["ravdess"]["n"] == rec["clip"]["ravdess"]["n"] == 28
    assert adapted["validation_windows"] == 4 * 7 * 2 and adapted["prior_windows"] > 0


def test_report_sets_adapted_folds_beside_the_causal_baseline(tmp_path) -> None:
    import json

    from training.evaluate import score, scores_to_dict
    from training.report import write_report

    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    labels = PROTOCOLS["ravdess8"].labels
    perfect = scores_to_dict(score(list(labels), list(labels), labels))
    half = scores_to_dict(score(list(labels), list(labels[:4]) + [labels[0]] * 4, labels))
    eg = {"command": "c", "created": "t", "svm": {"C": 1.0}, "protocols": {"ravdess8": {"speaker_causal": {
        "corpora": {"ravdess": {"clip": {"uar_mean": 0.6, "uar_std": 0.05, "per_fold_uar": [0.6] * 6,
                                         "pooled": {"n": 8, "uar": 0.6, "wa": 0.6, "macro_f1": 0.6}}}}}}}}
    (res / "egemaps.json").write_text(json.dumps(eg))
    for k in range(1, 7):
        adapted = {"prior_windows": 40.0, "clip": {"training": {"ravdess": half},
                                                   "causal": {"ravdess": perfect if k <= 3 else half},
                                                   "transductive": {"ravdess": perfect},
                                                   "aligned-causal": {"ravdess": perfect if k <= 2 else half},
                                                   "aligned-mean-causal": {"ravdess": half},
                                                   "aligned-transductive": {"ravdess": perfect},
                                                   "mixed-causal": {"ravdess": half},
                                                   "aligned-tuned-causal": {"ravdess": perfect}}}
        run = {"arch": "cnn_gap_small", "protocol": "ravdess8", "fold": k, "seed": 1, "speaker_norm": "none",
               "epochs_run": 3, "best_epoch": 2, "wall_s": 1.0, "clip": {"ravdess": half},
               "window": {"ravdess": half}, "embedding_adaptation": adapted}
        (res / "runs" / f"r{k}.json").write_text(json.dumps(run))
    text = write_report(tmp_path / "RESULTS.md", res, "python -m training.experiments report")
    table = text[text.index("With the runtime's embedding adaptation"):]
    row = next(line for line in table.splitlines() if line.startswith("| `cnn_gap_small` | none | ravdess8 | 1 | ravdess |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5:9] == ["0.500 +- 0.000", "0.500 +- 0.000", "0.750 +- 0.250", "1.000 +- 0.000"]
    assert cells[9].startswith("f1 1.000") and cells[9].endswith("f6 0.500")
    assert cells[10:] == ["0.600 +- 0.050", "+0.150"]
    # the aligned modes' table: the same runs, the aligned causal figure against the baseline
    aligned = text[text.index("The network's own dense layers on the voice-aligned embedding"):]
    row = next(line for line in aligned.splitlines() if line.startswith("| `cnn_gap_small` | ravdess8 | 1 | ravdess |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:11] == ["0.500 +- 0.000", "0.750 +- 0.250", "0.667 +- 0.236", "0.500 +- 0.000",
                           "1.000 +- 0.000", "0.500 +- 0.000", "1.000 +- 0.000"]
    assert cells[11].startswith("f1 1.000, f2 1.000, f3 0.500") and cells[12:] == ["0.600 +- 0.050", "+0.067"]


def test_temperature_check_fits_both_ways_and_reports_each_corpus() -> None:
    """The calibration check of the embedding head: the temperature fitted on every scored voice
    pools the corpora; each corpus's ECE is that of its own causal windows."""
    from training.corpora import Utterance
    from training.embedding_adaptation import StreamEmbeddings, fit_speaker_head, temperature_check
    from training.stream_protocol import ScoredStream, SpeakerStream
    from training.temperature import expected_calibration_error, fit_temperature, tempered

    rng = np.random.default_rng(3)
    labels = LABELS
    e, ci, spk, y = _voices(rng, [f"tr{i}" for i in range(6)] + ["va", "po"])
    spk = np.array(spk)
    head = fit_speaker_head([(e[np.isin(ci, np.flatnonzero(spk == s))], y[ci[np.isin(ci, np.flatnonzero(spk == s))]])
                             for s in (f"tr{i}" for i in range(6))])
    heads = {"pooled": {"speaker": head}}

    def stream(s: str, corpus: str) -> StreamEmbeddings:
        clips = np.flatnonzero(spk == s)
        utts = tuple(Utterance(Path(f"/x/{s}-{c}.wav"), corpus, s, labels[y[c]], labels[y[c]]) for c in clips)
        rows = np.flatnonzero(np.isin(ci, clips))
        local = np.searchsorted(clips, ci[rows])
        ss = SpeakerStream(s, utts, np.zeros((len(clips), 2)), np.zeros(1, np.float32))
        return StreamEmbeddings(ScoredStream(ss, local, np.full((len(rows), 3), 1 / 3)), {"pooled": e[rows]})

    va, po = stream("va", "ravdess"), stream("po", "nemo")
    out = temperature_check(heads, [va], {"ravdess": [va], "nemo": [po]}, labels, 40.0)
    probs = {k: adapted_probabilities(head, s.embeddings["pooled"], "causal", 3, 40.0) for k, s in (("va", va), ("po", po))}
    ys = {k: y[np.flatnonzero(spk == k)][s.scored.clip] for k, s in (("va", va), ("po", po))}
    assert out["split validation"]["temperature"] == pytest.approx(fit_temperature(probs["va"], ys["va"]), abs=1e-4)
    pooled_t = fit_temperature(np.concatenate([probs["va"], probs["po"]]), np.concatenate([ys["va"], ys["po"]]))
    assert out["all scored speakers"]["temperature"] == pytest.approx(pooled_t, abs=1e-4)
    for way, entry in out.items():
        want = expected_calibration_error(tempered(probs["po"], entry["temperature"]), ys["po"])
        assert entry["ece"]["nemo"] == pytest.approx(want, abs=1e-4)
