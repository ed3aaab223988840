"""The experiment harness (training.experiments): folds, metrics, baseline standardisation, registry, costs.

Fast: synthetic data and hand-computed examples; TensorFlow-dependent tests skip when the
training extra is missing (and fail when STREAM_SER_REQUIRE_TRAIN is set, as in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP

from stream_ser.features import FeatureConfig, log_mel, preprocess
from stream_ser.audio import load_audio
from training.corpora.base import Utterance
from training.evaluate import NO_SPEECH, clip_predictions, score, scores_from_dict, summarise_folds
from training.folds import (
    PROTOCOLS,
    RAVDESS_8,
    fixed_fold,
    is_male_ravdess,
    label_ravdess8,
    pooled_folds,
    ravdess_folds,
    tess_folds,
)
from training.split import load_split


def _tensorflow():
    try:
        import tensorflow as tf  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        if os.environ.get("STREAM_SER_REQUIRE_TRAIN", "") not in ("", "0"):
            pytest.fail(f"training extra not installed ({exc}) but STREAM_SER_REQUIRE_TRAIN is set")
        pytest.skip(f"training extra not installed: {exc}")


# ---------------------------------------------------------------------------- folds


def test_ravdess_folds_are_speaker_independent_and_balanced() -> None:
    folds = ravdess_folds()
    assert len(folds) == 6
    all_actors = {f"ravdess:{a:02d}" for a in range(1, 25)}
    seen_test: set[str] = set()
    for k, f in enumerate(folds):
        assert f.test == {f"ravdess:{a:02d}" for a in range(4 * k + 1, 4 * k + 5)}  # consecutive actors
        assert not (f.train & f.test or f.train & f.validation or f.validation & f.test)
        assert f.train | f.validation | f.test == all_actors
        assert len(f.train) == 16 and len(f.validation) == 4
        assert sum(map(is_male_ravdess, f.test)) == 2 and sum(map(is_male_ravdess, f.validation)) == 2
        assert f.validation == folds[k - 1].test  # the preceding fold, from the training side
        seen_test |= f.test
    assert seen_test == all_actors  # every actor is tested exactly once
    assert sum(len(f.test) for f in folds) == 24


def test_tess_and_pooled_folds() -> None:
    t = tess_folds()
    assert [(set(f.train), set(f.test)) for f in t] == [({"tess:YAF"}, {"tess:OAF"}), ({"tess:OAF"}, {"tess:YAF"})]
    assert all(not f.validation for f in t)
    p = pooled_folds()
    assert len(p) == 6
    for k, f in enumerate(p):
        tess_test = {s for s in f.test if s.startswith("tess:")}
        assert tess_test == {"tess:OAF" if k % 2 == 0 else "tess:YAF"}
        assert not (f.train & f.test) and not (f.validation & f.test)
        assert {s for s in f.train if s.startswith("tess:")} | tess_test == {"tess:OAF", "tess:YAF"}
    # each TESS talker is tested in 3 folds, each RAVDESS actor in exactly one
    assert sum("tess:YAF" in f.test for f in p) == 3


def test_fixed_fold_is_the_committed_split() -> None:
    f, s = fixed_fold(), load_split()
    assert (f.train, f.validation, f.test) == (s.train, s.validation, s.test)


def _utt(corpus: str, speaker: str, label: str, source: str) -> Utterance:
    return Utterance(Path(f"/x/{speaker}-{source}.flac"), corpus, f"{corpus}:{speaker}", label, source)


def test_label_schemes() -> None:
    calm = _utt("ravdess", "01", "neutral", "calm")
    ps = _utt("tess", "OAF", "surprise", "ps")
    assert label_ravdess8(calm) == "calm" and PROTOCOLS["ravdess7"].label_of(calm) == "neutral"
    assert label_ravdess8(ps) is None and PROTOCOLS["tess7"].label_of(ps) == "surprise"
    assert len(RAVDESS_8) == 8 and PROTOCOLS["ravdess8"].utterances([calm, ps]) == [calm]
    assert PROTOCOLS["pooled7"].utterances([calm, ps]) == [calm, ps]


# ---------------------------------------------------------------------------- metrics


def test_scores_hand_computed() -> None:
    labels = ("a", "b", "c")
    y_true = ["a", "a", "a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "a", "b", "c", "b", "a", "c", NO_SPEECH]
    s = score(y_true, y_pred, labels)
    # recalls: a 2/4, b 1/2, c 1/2 -> UAR 0.5; WA 4/8
    assert s.uar == pytest.approx(0.5) and s.wa == pytest.approx(0.5)
    # precisions: a 2/3, b 1/2, c 1/2 -> F1 a = 2*(2/3*1/2)/(2/3+1/2) = 4/7, b = c = 1/2
    assert s.macro_f1 == pytest.approx((4 / 7 + 0.5 + 0.5) / 3)
    assert s.recall == {"a": 0.5, "b": 0.5, "c": 0.5}


def test_clip_predictions_mean_of_window_probabilities() -> None:
    labels = ("a", "b")
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    clip_index = np.array([0, 0, 0, 2])
    # clip 0: mean (0.467, 0.533) -> b (a majority vote of argmaxes would say b too; check the mean rule)
    assert clip_predictions(probs, clip_index, 3, labels) == ["b", NO_SPEECH, "a"]
    # the mean rule differs from a vote: one confident window outweighs two weak ones
    probs2 = np.array([[0.99, 0.01], [0.45, 0.55], [0.45, 0.55]])
    assert clip_predictions(probs2, np.zeros(3, int), 1, labels) == ["a"]


def test_summarise_folds_mean_and_pooled() -> None:
    labels = ("a", "b")
    f1 = (["a", "a", "b", "b"], ["a", "a", "b", "a"])  # UAR (1 + 0.5)/2 = 0.75
    f2 = (["a", "b"], ["b", "b"])  # UAR (0 + 1)/2 = 0.5
    s = summarise_folds([f1, f2, ([], [])], labels)
    assert len(s.per_fold) == 2
    assert s.uar_mean == pytest.approx(0.625) and s.uar_std == pytest.approx(0.125)
    # pooled: a 2/3, b 2/3
    assert s.pooled.uar == pytest.approx(2 / 3) and s.pooled.n == 6


def test_merge_scores_equals_pooled_scores() -> None:
    from training.report import merge_scores

    labels = ("a", "b", "c")
    rng = np.random.default_rng(1)
    folds = []
    for _ in range(3):
        t = list(rng.choice(labels, 40))
        p = list(rng.choice((*labels, NO_SPEECH), 40))
        folds.append((t, p))
    merged = merge_scores([score(t, p, labels) for t, p in folds])
    pooled = score([y for t, _ in folds for y in t], [y for _, p in folds for y in p], labels)
    assert merged.uar == pytest.approx(pooled.uar) and merged.wa == pytest.approx(pooled.wa)
    assert merged.macro_f1 == pytest.approx(pooled.macro_f1)
    assert np.array_equal(merged.confusion, pooled.confusion)


# ---------------------------------------------------------------------------- baseline standardisation


def test_standardise_modes() -> None:
    from training.baseline_egemaps import standardise

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(10, 3, (50, 3)), rng.normal(-5, 2, (20, 3))])
    spk = np.array(["s1"] * 50 + ["s2"] * 50 + ["t"] * 20)
    train = spk != "t"
    g = standardise(x, spk, train, "global")
    assert np.allclose(g[train].mean(axis=0), 0, atol=1e-9) and np.allclose(g[train].std(axis=0), 1)
    s = standardise(x, spk, train, "speaker")
    for sp in ("s1", "s2", "t"):
        assert np.allclose(s[spk == sp].mean(axis=0), 0, atol=1e-9)
    c = standardise(x, spk, train, "speaker_causal", seed=3)
    assert np.array_equal(c[train], s[train])  # training speakers as in "speaker"
    # causality: changing a test clip only changes that clip and clips processed after it
    order = np.flatnonzero(spk == "t")[np.random.default_rng(3).permutation(20)]
    x2 = x.copy()
    x2[order[10]] += 100.0
    c2 = standardise(x2, spk, train, "speaker_causal", seed=3)
    assert np.array_equal(c[order[:10]], c2[order[:10]])
    assert not np.allclose(c[order[10]], c2[order[10]])
    with pytest.raises(ValueError):
        standardise(x, spk, train, "nope")


def test_egemaps_functionals_of_a_clip() -> None:
    pytest.importorskip("opensmile", reason="opensmile is a benchmark-only extra (pip install opensmile)")
    import tensorflow  # noqa: F401  (the harness has it loaded; openSMILE must run beside it)

    from training.baseline_egemaps import functionals

    f = functionals([str(ANGRY_CLIP), str(HAPPY_CLIP)], workers=1)
    assert f.shape == (2, 88) and np.all(np.isfinite(f))
    assert not np.allclose(f[0], f[1])  # two different clips, two different functional vectors


# ---------------------------------------------------------------------------- inputs


def test_mfcc_matrix_matches_librosa() -> None:
    import librosa

    from training.architectures import mfcc_matrix

    cfg = FeatureConfig()
    mel = log_mel(preprocess(load_audio(ANGRY_CLIP)[: cfg.window_samples], cfg), cfg)
    for n in (13, 40):
        want = librosa.feature.mfcc(S=mel, n_mfcc=n, dct_type=2, norm="ortho", lifter=0)
        assert np.allclose(mfcc_matrix(cfg.n_mels, n) @ mel, want, atol=1e-3)
    with pytest.raises(ValueError):
        mfcc_matrix(40, 41)


def test_extras_line_up_with_log_mel_frames() -> None:
    from training.inputs import EXTRA_NAMES, frame_matrix, time_average, window_extras

    cfg = FeatureConfig()
    y = preprocess(load_audio(TESS_CLIP)[: cfg.window_samples], cfg)
    e = window_extras(y, cfg)
    assert e.shape == (len(EXTRA_NAMES), cfg.n_frames) and e.dtype == np.float32
    assert 0 <= e[0].min() and e[0].max() <= 1 and e[1].max() <= 0.5  # ZCR in [0,1], RMS dBFS <= 0
    mel = log_mel(y, cfg)[None]
    assert frame_matrix(mel, e[None]).shape == (1, cfg.n_frames, 42)
    assert time_average(mel, e[None]).shape == (1, 40 + 12 + cfg.n_mels)


# ---------------------------------------------------------------------------- registry and cost


def test_registry_covers_the_published_items() -> None:
    from training.architectures import ARCHITECTURES, REGISTRY, NotReproducibleOffline

    assert {s.published_item for s in REGISTRY.values()} == set(range(0, 9))
    for spec in REGISTRY.values():
        assert spec.source and spec.builder.__doc__, spec.name
        assert spec.input_kind in ("log_mel", "frames", "time_avg")
    assert "cnn_gap_small" in ARCHITECTURES  # python -m training.train --arch default
    with pytest.raises(NotReproducibleOffline, match="storage.googleapis.com"):
        REGISTRY["vgg19_transfer"].build(None, None)


def test_mflops_hand_count() -> None:
    _tensorflow()
    import keras
    from keras import layers

    from training.architectures import estimate_mflops

    inp = keras.Input((8, 10, 1))
    x = layers.Conv2D(4, 3, padding="same")(inp)  # 80 positions x 9 x 1 x 4 MACs
    x = layers.Reshape((8, 40))(x)
    x = layers.LSTM(5)(x)  # 8 steps x 4 gates x (40 + 5) x 5
    out = layers.Dense(3)(x)  # 5 x 3
    m = keras.Model(inp, out)
    want = 2 * (80 * 9 * 4 + 8 * 4 * 45 * 5 + 15)
    assert estimate_mflops(m) == pytest.approx(want / 1e6)


def test_every_keras_architecture_builds_and_mfcc_layer_is_librosa() -> None:
    _tensorflow()
    import keras

    from training.architectures import REGISTRY, InputStats, count_params

    cfg = FeatureConfig()
    mel = log_mel(preprocess(load_audio(ANGRY_CLIP)[: cfg.window_samples], cfg), cfg)
    stats = InputStats.from_log_mels(mel[None])
    for name, spec in REGISTRY.items():
        if spec.kind != "keras":
            continue
        m = spec.build(cfg.input_shape, 7, stats=stats)
        assert m.output.shape[-1] == 7 and count_params(m) > 0, name
    # the in-graph MFCC layer is librosa's MFCC, standardised with the training statistics
    import librosa

    m = REGISTRY["lstm3_mfcc"].build(cfg.input_shape, 7, stats=stats)
    sub = keras.Model(m.input, m.get_layer("mfcc").output)
    got = sub.predict(mel[None, ..., None], verbose=0)[0]
    want = (librosa.feature.mfcc(S=mel, n_mfcc=40, dct_type=2, norm="ortho", lifter=0).T - stats.mfcc_mean) / stats.mfcc_std
    assert np.allclose(got, want, atol=1e-3)


def _synthetic_ravdess7(rng: np.random.Generator, windows_per_clip: int):
    """A FeatureSet of 24 RAVDESS-named actors x 7 classes, one clip each, whose log-mel windows
    (``windows_per_clip`` per clip, ``(40, 149)`` dB) get louder by 5 dB per class."""
    from training.windows import FeatureSet

    utts, mels, idx = [], [], []
    for actor in range(1, 25):
        for j, lab in enumerate(PROTOCOLS["ravdess7"].labels):
            utts.append(_utt("ravdess", f"{actor:02d}", lab, lab))
            for _ in range(windows_per_clip):
                mels.append(rng.normal(-60 + 5 * j, 5, (40, 149)))
                idx.append(len(utts) - 1)
    return FeatureSet(tuple(utts), np.array(mels, np.float16), np.array(idx, np.int32),
                      np.zeros(len(idx), np.float32), np.full(len(utts), windows_per_clip, np.int32))


def _harness_recipe(arch: str = "cnn_gap_small", **fields):
    """The harness's plateau recipe for a quick run: one epoch, patience 1, batch 32, seed 0."""
    import dataclasses

    from training.recipe import load_recipe

    return dataclasses.replace(load_recipe("plateau-8k-p5"), **{"arch": arch, "epochs": 1, "patience": 1, "batch_size": 32,
                                                               **fields})


@pytest.mark.parametrize("arch", ["tiny_log_mel", "mlp_time_avg", "conv1d_lstm_frames"])
def test_train_fold_end_to_end_on_a_tiny_synthetic_set(tmp_path, arch) -> None:
    """One epoch on synthetic windows, for each input kind: runs, scores only test speakers."""
    _tensorflow()
    from training import experiments
    from training.architectures import REGISTRY, ArchSpec, conv1d_mfcc13
    from training.inputs import EXTRA_NAMES

    rng = np.random.default_rng(0)
    fs = _synthetic_ravdess7(rng, 2)
    extras = rng.uniform(0, 1, (len(fs.clip_index), len(EXTRA_NAMES), 149)).astype(np.float16)
    if arch == "tiny_log_mel":
        spec = ArchSpec("tiny", "tiny", conv1d_mfcc13, optimizer="rmsprop", lr=1e-3, source="test")
    else:
        spec = REGISTRY[arch]
    recipe = _harness_recipe("conv1d_mfcc13" if arch == "tiny_log_mel" else arch)
    rec = experiments.train_fold(spec, PROTOCOLS["ravdess7"], 6, fs, extras, recipe)
    assert rec["test_clips"] == 4 * 7 and rec["train_windows"] == 16 * 7 * 2 and rec["validation_windows"] == 4 * 7 * 2
    assert rec["clip"]["ravdess"]["n"] == 28 and rec["window"]["ravdess"]["n"] == 56
    assert rec["epochs_run"] >= 1 and rec["wall_s"] > 0
    assert 0 <= rec["clip"]["ravdess"]["uar"] <= 1


def test_warmup_best_epoch_ignores_the_first_epochs() -> None:
    """``train --warmup N``: the recorded best epoch is the one EarlyStopping(start_from_epoch=N) restores."""
    from training.train import best_epoch

    rising_then_falling = [1.0, 3.0, 5.0, 4.0, 2.5, 2.6]  # epoch 1 is the lowest overall
    assert best_epoch(rising_then_falling) == 1
    assert best_epoch(rising_then_falling, warmup=3) == 5  # lowest from epoch 4 on
    assert best_epoch([2.0, 1.0], warmup=5) == 2  # ended inside the warm-up: the last epoch


def test_report_names_warmup_runs_and_failed_folds(tmp_path) -> None:
    import json

    from training.evaluate import scores_to_dict
    from training.report import write_report

    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    labels = PROTOCOLS["ravdess8"].labels
    sc = scores_to_dict(score(list(labels), list(labels), labels))
    zero = scores_to_dict(score(list(labels), list(labels[1:]) + [labels[0]], labels))
    for k in range(1, 7):
        stuck = k == 4
        run = {"arch": "cnn_gap_small", "protocol": "ravdess8", "fold": k, "seed": 0, "speaker_norm": "none",
               "epochs_run": 9, "best_epoch": 9, "wall_s": 1.0, "clip": {"ravdess": sc}, "window": {"ravdess": sc},
               "history": {"val_accuracy": [0.13] * 9 if stuck else [0.5] * 9}}
        (res / "runs" / f"plain{k}.json").write_text(json.dumps(run))
        if k < 3:
            (res / "runs" / f"wu{k}.json").write_text(json.dumps({**run, "warmup_epochs": 8}))
            (res / "runs" / f"fmax{k}.json").write_text(json.dumps({**run, "fmax_hz": 4000.0}))
        seed1 = {**run, "seed": 1, "clip": {"ravdess": sc if k % 2 else zero}}  # a second seed: odd folds perfect
        (res / "runs" / f"s1-{k}.json").write_text(json.dumps(seed1))
    text = write_report(tmp_path / "RESULTS.md", res, "python -m training.experiments report")
    assert "| `cnn_gap_small` (f4 did not learn) | none | ravdess8 | 0 | ravdess | 1.000 +- 0.000 |" in text
    assert ("| `cnn_gap_small` | none | ravdess8 | ravdess | s0 1.000, s1 0.500 | 0.750 | f1 1.000, f2 0.500, "
            "f3 1.000, f4 0.500, f5 1.000, f6 0.500 | 0.250 |") in text
    assert "| `cnn_gap_small`, warm-up 8 | none | ravdess8 | 0 | ravdess | 2 of 6 | f1 1.000, f2 1.000 | 1.000 |" in text
    assert "| `cnn_gap_small`, mel fmax 4000 Hz | none | ravdess8 | 0 | ravdess | 2 of 6 |" in text


# ---------------------------------------------------------------------------- speaker normalisation


def test_speaker_normalisation_modes_and_causality() -> None:
    from training.adaptation import normalise_speakers

    rng = np.random.default_rng(0)
    n_per = 12
    spk = np.array(["a"] * n_per + ["b"] * n_per + ["t"] * n_per)
    clip = np.repeat(np.arange(3 * n_per // 3), 3)  # 3 windows per clip, clips never cross speakers
    x = rng.normal(-50, 10, (3 * n_per, 4, 6)) + np.repeat([0.0, 20.0, -20.0], n_per)[:, None, None]
    s = normalise_speakers(x, spk, clip, frozenset({"t"}), "speaker")
    for sp in "abt":
        assert np.allclose(s[spk == sp].mean(axis=(0, 2)), 0, atol=1e-4)
        assert np.allclose(s[spk == sp].std(axis=(0, 2)), 1, atol=1e-3)
    c = normalise_speakers(x, spk, clip, frozenset({"t"}), "causal", seed=1)
    assert np.allclose(c[spk != "t"], s[spk != "t"])
    # a window's value depends only on windows visited before it (or itself)
    rows = np.flatnonzero(spk == "t")
    clips = np.unique(clip[rows])
    order = clips[np.random.default_rng(1).permutation(len(clips))]
    last = rows[clip[rows] == order[-1]]
    x2 = x.copy()
    x2[last] += 50.0
    c2 = normalise_speakers(x2, spk, clip, frozenset({"t"}), "causal", seed=1)
    assert np.allclose(c[np.setdiff1d(rows, last)], c2[np.setdiff1d(rows, last)])
    assert np.array_equal(normalise_speakers(x, spk, clip, frozenset(), "none"), x.astype(np.float32))
    with pytest.raises(ValueError):
        normalise_speakers(x, spk, clip, frozenset(), "bogus")


# ---------------------------------------------------------------------------- report


def test_report_from_fake_results(tmp_path) -> None:
    import json

    from training.evaluate import scores_to_dict
    from training.experiments import _summarise_protocol
    from training.report import write_report

    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    proto = PROTOCOLS["tess7"]
    u_oaf = [_utt("tess", "OAF", lab, lab) for lab in proto.labels]
    u_yaf = [_utt("tess", "YAF", lab, lab) for lab in proto.labels]
    per_fold = [(u_oaf, list(proto.labels), list(proto.labels)), (u_yaf, list(proto.labels), ["sad"] * 7)]
    summary = _summarise_protocol(proto, per_fold)
    assert summary["corpora"]["tess"]["clip"]["per_fold_uar"] == pytest.approx([1.0, 1 / 7])
    eg = {"command": "c", "created": "t", "svm": {"C": 1.0}, "protocols": {"tess7": {"global": summary}}}
    (res / "egemaps.json").write_text(json.dumps(eg))
    labels = PROTOCOLS["pooled7"].labels
    sc = scores_to_dict(score(list(labels), list(labels), labels))
    run = {"arch": "cnn_bigru", "protocol": "pooled7", "fold": 6, "seed": 0, "speaker_norm": "none", "epochs_run": 3,
           "best_epoch": 2, "wall_s": 12.0, "clip": {"ravdess": sc, "all": sc}, "window": {"ravdess": sc, "all": sc}}
    (res / "runs" / "r.json").write_text(json.dumps(run))
    text = write_report(tmp_path / "RESULTS.md", res, "python -m training.experiments report")
    assert "0.571 +- 0.429" in text  # tess7 global: mean of 1 and 1/7
    assert "| `cnn_bigru` | none | 0 | 3 (2) | 12 | 1.000 |" in text
    assert "not reproducible offline" in text and "`lstm3_mfcc`" in text  # not run yet


def test_report_lists_partial_protocols_apart_from_full_ones(tmp_path) -> None:
    import json

    from training.evaluate import scores_to_dict
    from training.report import write_report

    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    labels = PROTOCOLS["pooled7"].labels
    perfect = scores_to_dict(score(list(labels), list(labels), labels))
    half = scores_to_dict(score(list(labels), list(labels[:3]) + ["sad"] * 4, labels))
    base = {"protocol": "pooled7", "seed": 0, "speaker_norm": "none", "epochs_run": 3, "best_epoch": 2, "wall_s": 1.0}
    runs = [{"arch": "cnn_gap_small", "fold": 1, "clip": {"ravdess": perfect}, "window": {"ravdess": perfect}},
            {"arch": "cnn_gap_small", "fold": 3, "clip": {"ravdess": half}, "window": {"ravdess": half}},
            {"arch": "cnn_bigru", "fold": 6, "clip": {"ravdess": half}, "window": {"ravdess": half}}]
    for i, r in enumerate(runs):
        (res / "runs" / f"r{i}.json").write_text(json.dumps({**base, **r}))
    text = write_report(tmp_path / "RESULTS.md", res, "python -m training.experiments report")
    uar3 = scores_from_dict(half).uar
    row = f"| `cnn_gap_small` | none | pooled7 | 0 | ravdess | 2 of 6 | f1 1.000, f3 {uar3:.3f} | {(1 + uar3) / 2:.3f} |"
    assert row in text
    assert "None yet: no architecture has been trained on every fold" in text  # two folds are not the protocol
    assert "| `cnn_bigru` | none | pooled7 |" not in text  # the fixed fold alone belongs to 3a, not here


# ---------------------------------------------------------------------------- augmentation and corruptions


def test_add_noise_at_snr() -> None:
    from training.augment import add_noise_snr, white_noise

    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for snr in (20.0, 10.0, 0.0):
        y = add_noise_snr(x, white_noise(x.size, 0), snr)
        n = y.astype(np.float64) - x
        assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(n**2)) == pytest.approx(snr, abs=0.2)


def test_telephone_band_limits_and_keeps_length() -> None:
    from training.augment import telephone

    t = np.arange(16000) / 16000
    low, mid, high = (np.sin(2 * np.pi * f * t).astype(np.float32) * 0.3 for f in (100, 1000, 6000))
    for sig, kept in ((low, False), (mid, True), (high, False)):
        y = telephone(sig)
        assert y.shape == sig.shape and y.dtype == np.float32
        ratio = np.sqrt(np.mean(y[2000:-2000] ** 2) / np.mean(sig[2000:-2000] ** 2))
        assert (ratio > 0.8) if kept else (ratio < 0.2)


def test_device48k_conditions_resample_through_48k_at_the_named_quality() -> None:
    """``robustness --conditions device48k-HQ device48k-LQ``: same length; a 1 kHz tone passes both;
    a 7 kHz tone passes HQ and is cut by LQ's roll-off (-13 dB), as ``bench_resampler.py`` shows."""
    from training.experiments import corrupt

    t = np.arange(16000) / 16000
    for f, lq_ratio in ((1000, (0.95, 1.05)), (7000, (0.15, 0.3))):
        x = (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        for q, (lo, hi) in (("HQ", (0.95, 1.05)), ("LQ", lq_ratio)):
            y = corrupt(x, f"device48k-{q}", None, [], seed=0, sr=16000)
            assert y.shape == x.shape and y.dtype == np.float32
            ratio = np.sqrt(np.mean(y[2000:-2000] ** 2) / np.mean(x[2000:-2000] ** 2))
            assert lo < ratio < hi, (f, q, ratio)


def test_augment_lengths_and_determinism() -> None:
    from training.augment import AugmentParams, augment, babble

    x = load_audio(TESS_CLIP)
    p = AugmentParams(stretch=1.25, semitones=2.0, noise_amplitude=0.005)
    y = augment(x, p, 16000, seed=1)
    assert abs(y.size - x.size / 1.25) < 0.02 * x.size and np.max(np.abs(y)) <= 1.0
    assert np.array_equal(y, augment(x, p, 16000, seed=1))
    d = AugmentParams.draw(np.random.default_rng(0))
    assert 0.8 <= d.stretch <= 1.2 and -2 <= d.semitones <= 2 and 0 <= d.noise_amplitude <= 0.005
    b = babble([x, x[::-1].copy(), x * 0.5], 20000, seed=0, talkers=2)
    assert b.shape == (20000,) and np.std(b) > 0


def test_class_bias_tuning_recovers_an_under_predicted_class() -> None:
    """Window probabilities that always favour class 0 over the true class 1 by a factor 2: a
    log-bias of about log 2 on class 1 is what fixes it, and the tuner finds one that does; with
    no bias the clip labels are exactly evaluate's (argmax of the mean probabilities)."""
    from training.class_bias import biased_labels, tune_bias

    labels = ("a", "b", "c")
    rng = np.random.default_rng(0)
    probs, truth = [], []
    for k in range(30):
        true = k % 3
        p = rng.dirichlet(np.ones(3) * 5, size=4) * 0.2
        p[:, true] += 0.5
        if true == 1:
            p[:, 0] += 0.5 + p[:, 1]  # class 0 wins every window of a class-1 clip
        probs.append(p / p.sum(axis=1, keepdims=True))
        truth.append(labels[true])
    zero = biased_labels(probs, np.zeros(3), labels)
    flat = np.concatenate(probs)
    assert zero == clip_predictions(flat, np.repeat(np.arange(30), 4), 30, labels)
    assert score(truth, zero, labels).uar < 0.7
    bias = tune_bias(probs, truth, labels)
    assert bias[0] == 0.0 and bias[1] > 0.5
    assert score(truth, biased_labels(probs, bias, labels), labels).uar == 1.0


def test_cosine_schedule_runs_every_epoch_and_decays_the_rate(tmp_path) -> None:
    """``train --schedule cosine``: no early stop however impatient, the rate falls each epoch to 1 % of the
    architecture's, and the kept epoch is the one with the lowest validation loss."""
    _tensorflow()
    from training import experiments
    from training.architectures import ArchSpec, conv1d_mfcc13
    from training.train import COSINE_FINAL_FRACTION

    fs = _synthetic_ravdess7(np.random.default_rng(1), 1)
    spec = ArchSpec("tiny", "tiny", conv1d_mfcc13, optimizer="adam", lr=1e-3, source="test")
    recipe = _harness_recipe("conv1d_mfcc13", epochs=4, patience=0, batch_size=16, schedule="cosine")
    rec = experiments.train_fold(spec, PROTOCOLS["ravdess7"], 6, fs, None, recipe)
    assert rec["epochs_run"] == 4 and rec["schedule"] == "cosine" and rec["recipe"]["fields"]["schedule"] == "cosine"
    lr = rec["history"]["learning_rate"]
    assert all(a > b for a, b in zip(lr, lr[1:]))
    assert lr[0] == pytest.approx(1e-3) and lr[-1] == pytest.approx(1e-3 * COSINE_FINAL_FRACTION)
    val = rec["history"]["val_loss"]
    assert rec["best_epoch"] == int(np.argmin(val)) + 1


def test_schedule_callbacks_without_validation_speakers() -> None:
    """No validation speakers (TESS-only folds): nothing watches a validation loss, but the cosine rate
    still decays; an unknown schedule is refused."""
    _tensorflow()
    import keras

    from training.train import schedule_callbacks

    assert schedule_callbacks("plateau", 1e-3, 10, 5, validation=False) == []
    (only,) = schedule_callbacks("cosine", 1e-3, 10, 5, validation=False)
    assert isinstance(only, keras.callbacks.LearningRateScheduler)
    assert [type(c).__name__ for c in schedule_callbacks("plateau", 1e-3, 10, 5)] == ["EarlyStopping", "ReduceLROnPlateau"]
    stop, _ = schedule_callbacks("cosine", 1e-3, 10, 5)
    assert stop.patience == 10  # never stops early: the best epoch is kept at the end
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_callbacks("step", 1e-3, 10, 5)


# ---------------------------------------------------------------------------- feature-recipe variants


def test_fmax_recipe_ignores_what_an_8khz_channel_removes() -> None:
    """``train --fmax 4000``: every band of the recipe lies below 4 kHz, so a real clip passed through
    an 8 kHz sample rate (soxr down and up) gives the same log-mel except in the top band at the
    resampler's roll-off; with the runtime's 8 kHz fmax the bands above 4 kHz lose 15-37 dB."""
    import soxr

    from training.experiments import _feature_changes
    from training.recipe import load_recipe

    x = load_audio(ANGRY_CLIP, 16000)[:48000]
    narrow = soxr.resample(soxr.resample(x, 16000, 8000), 8000, 16000).astype(np.float32)[: x.size]
    drops = {}
    for fmax in (None, 4000.0):
        config = _harness_recipe(**({"fmax_hz": fmax} if fmax else {})).feature_config()
        a, b = (log_mel(preprocess(y, config), config) for y in (x, narrow))
        drops[config.fmax_hz] = (a - b).mean(axis=1)
    assert np.abs(drops[4000.0][:-1]).max() < 0.5
    assert np.abs(drops[8000.0][:29]).max() < 0.5 and drops[8000.0][-8:].min() > 10.0
    assert _feature_changes(_harness_recipe(speech_gate="vad").feature_config()) == {}
    assert _feature_changes(load_recipe("shipped").feature_config()) == {"fmax_hz": 4000.0}
    with pytest.raises(ValueError, match="must be above fmin_hz"):
        _harness_recipe(fmax_hz=40.0)
    with pytest.raises(ValueError, match="Nyquist"):
        _harness_recipe(fmax_hz=9000.0)


def test_a_bad_fmax_is_a_usage_error_before_any_work(capsys) -> None:
    """Both training commands refuse an impossible band edge at once, with the reason, not a traceback."""
    from training import experiments, train

    for main, argv in ((train.main, ["--data", "nowhere", "--fmax", "20"]),
                       (experiments.main, ["train", "--data", "nowhere", "--arch", "cnn_gap_small", "--fmax", "9000"])):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "(--fmax): fmax_hz = 20.0: must be above fmin_hz (50 Hz)" in err and "above the Nyquist frequency" in err


@pytest.mark.parametrize("warp", [0.9, 1.1])
def test_vtlp_warp_matches_speech_with_its_frequencies_scaled(warp: float) -> None:
    """``train --vtlp``: warping a log-mel by ``warp`` gives (to within about 1.5 dB per band) the
    long-term spectrum of the same real speech with every frequency multiplied by ``warp`` (played
    back ``warp`` times faster), where the unwarped log-mel is 4-5 dB away; a warp in the wrong
    direction would be further away still."""
    _tensorflow()
    import soxr

    from training.recipe import load_recipe
    from training.train import mel_warp

    config = load_recipe("cosine-4k").feature_config()

    def profile(m: np.ndarray) -> np.ndarray:  # mean power per band (dB), level removed
        p = 10 * np.log10(np.mean(10 ** (m / 10), axis=1))
        return (p - p.mean())[3:-3]  # bands whose source stays inside the filterbank

    for clip in (ANGRY_CLIP, HAPPY_CLIP, TESS_CLIP):
        x = load_audio(clip, 16000)
        scaled = soxr.resample(x, 16000, 16000 / warp).astype(np.float32)  # every frequency x warp
        base, target = (log_mel(preprocess(y, config), config) for y in (x, scaled))
        warped = np.asarray(mel_warp(base[..., None], config, [warp]))[..., 0]
        assert warped.shape == base.shape and warped.dtype == np.float32
        assert base.min() - 1e-3 <= warped.min() and warped.max() <= base.max() + 1e-3  # interpolation only
        off = np.sqrt(np.mean((profile(base) - profile(target)) ** 2))
        err = np.sqrt(np.mean((profile(warped) - profile(target)) ** 2))
        assert err < 1.5 and err < off / 2.5, (clip.name, err, off)


# (option, value, augmentation text, report variant, bad command lines (main, argv), expected errors)
_HARNESS_OPTIONS = [
    ("vtlp", 0.1, "VTLP (frequency warp 0.9-1.1, 41 factors)", "VTLP 0.9-1.1",
     [("experiments", ["--arch", "cnn_gap_small", "--vtlp", "0.5"]), ("experiments", ["--arch", "mlp_time_avg", "--vtlp", "0.1"]),
      ("train", ["--vtlp", "-0.1"])],
     ["the VTLP warp must be in [0, 0.5), got 0.5", "mlp_time_avg does not take them", "got -0.1"]),
    ("mixup", 0.2, "mixup (alpha 0.2, within each batch)", "mixup 0.2",
     [("experiments", ["--arch", "cnn_gap_small", "--mixup", "1.5"]), ("experiments", ["--arch", "mlp_time_avg", "--mixup", "0.2"])],
     ["the mixup alpha must be in [0, 1], got 1.5", "mlp_time_avg does not take them"]),
]


@pytest.mark.parametrize("option, value, augmentation, variant, bad, errors", _HARNESS_OPTIONS,
                         ids=[o[0] for o in _HARNESS_OPTIONS])
def test_training_option_in_the_harness_record_and_report(tmp_path, capsys, option, value, augmentation, variant,
                                                          bad, errors) -> None:
    """A harness fold with ``--vtlp 0.1`` or ``--mixup 0.2`` records it (augmentation text, its
    field) and keeps the usual accuracy keys (mixup trains on soft targets); the report names the
    variant; an impossible value or a non-log-mel architecture is a usage error."""
    _tensorflow()
    import json

    from training import experiments, train
    from training.architectures import ArchSpec, conv1d_mfcc13
    from training.evaluate import scores_to_dict
    from training.report import write_report

    fs = _synthetic_ravdess7(np.random.default_rng(0), 2)
    spec = ArchSpec("tiny", "tiny", conv1d_mfcc13, optimizer="rmsprop", lr=1e-3, source="test")
    rec = experiments.train_fold(spec, PROTOCOLS["ravdess7"], 6, fs, None, _harness_recipe(**{option: value}))
    assert rec[option] == value and augmentation in rec["augmentation"]
    assert set(rec["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert rec["clip"]["ravdess"]["n"] == 28

    res = tmp_path / "results"
    (res / "runs").mkdir(parents=True)
    labels = PROTOCOLS["ravdess8"].labels
    sc = scores_to_dict(score(list(labels), list(labels), labels))
    run = {"arch": "cnn_gap_small", "protocol": "ravdess8", "fold": 1, "seed": 0, "speaker_norm": "none",
           "epochs_run": 9, "best_epoch": 9, "wall_s": 1.0, "clip": {"ravdess": sc}, "window": {"ravdess": sc},
           option: value, "fmax_hz": 4000.0}
    (res / "runs" / f"{option}1.json").write_text(json.dumps(run))
    text = write_report(tmp_path / "RESULTS.md", res, "python -m training.experiments report")
    assert f"| `cnn_gap_small`, mel fmax 4000 Hz, {variant} | none | ravdess8 | 0 | ravdess | 1 of 6 |" in text

    for which, argv in bad:
        main, argv = ((experiments.main, ["train", "--data", "nowhere", *argv]) if which == "experiments"
                      else (train.main, ["--data", "nowhere", *argv]))
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    for e in errors:
        assert e in err


def test_mixup_blends_inputs_targets_and_weights_by_one_beta_factor() -> None:
    """``--mixup``: every example is ``lam * x_i + (1 - lam) * x_j`` for another example ``j`` of
    the batch, its target puts ``lam`` on ``y_i`` and ``1 - lam`` on ``y_j``, its weight mixes the
    same way, and ``lam`` follows Beta(alpha, alpha) (mean 1/2, variance 1 / (4 (2 alpha + 1)))."""
    _tensorflow()
    import tensorflow as tf

    from training.train import mixup_batch

    tf.random.set_seed(0)
    n = 16  # example i: input all i, class i, weight 100 + i, so the partner is readable from the target
    x = tf.constant(np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 4, 5, 1)).copy())
    y = tf.range(n, dtype=tf.int32)
    w = tf.constant(100.0 + np.arange(n, dtype=np.float32))
    for alpha in (0.2, 1.0):
        lams = []
        for _ in range(250):
            xm, t, wm = (v.numpy() for v in mixup_batch(x, y, w, alpha, n))
            np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-6)
            for i in range(n):
                lam = t[i, i]
                rest = t[i].copy()
                rest[i] = 0.0
                j = int(np.argmax(rest)) if rest.max() > 0 else i  # j == i when mixed with itself
                assert np.count_nonzero(rest > 1e-6) <= 1
                np.testing.assert_allclose(xm[i], lam * i + (1 - lam) * j, atol=1e-4)
                np.testing.assert_allclose(wm[i], lam * (100 + i) + (1 - lam) * (100 + j), atol=1e-3)
                if j != i:
                    lams.append(lam)
        lams = np.array(lams)
        assert abs(lams.mean() - 0.5) < 0.03, alpha
        assert abs(lams.var() - 1 / (4 * (2 * alpha + 1))) < 0.015, (alpha, lams.var())
