"""The experiment harness: speaker-independent protocols, peer baseline, costs, report.

Usage::

    # eGeMAPSv02 + SVM on every protocol and standardisation (needs `pip install opensmile`)
    python -m training.experiments baseline --data ../shared/data

    # train a recipe (training/recipes/, default: shipped) on folds of a protocol (default: all
    # folds), flags overriding its fields; one JSON per fold run, with the recipe it trained
    python -m training.experiments train --data ../shared/data --recipe plateau-8k-p5 --arch cnn_bigru --protocol pooled7 --folds 6

    # parameters, MFLOPs and onnxruntime ms per window (one thread) of every architecture
    python -m training.experiments cost --data ../shared/data

    # clip-level UAR of an exported model on the test speakers under noise / telephone band
    python -m training.experiments robustness --data ../shared/data --model models/stream-ser.onnx

    # regenerate the results table from training/results/
    python -m training.experiments report --out models/RESULTS.md

Position in the pipeline: reads clips with :mod:`training.corpora`, folds from
:mod:`training.folds`, cached log-mel windows from :mod:`training.windows` (exactly the windows
the runtime engine scores, see ``tests/test_training.py``), extra frame features from
:mod:`training.inputs`, models from :mod:`training.architectures`, what to train from
:mod:`training.recipe`; trains with :func:`training.train.fit`, the loop ``training.train`` uses;
scores with :mod:`training.evaluate`.

Scoring. Window level: each speech window's argmax against its clip's label. Clip level: the
argmax of the mean window probabilities over the clip's speech windows
(:func:`training.evaluate.clip_predictions`), which is what :class:`stream_ser.engine.Engine`
and ``stream-ser analyse`` report for a file; a clip without speech windows is a miss. The
figures here come from the Keras model on cached windows, not from the exported ONNX file
(export parity is checked to 1e-4 by :mod:`training.export`); ``python -m training.evaluate``
remains the end-to-end check of a shipped file.

Every fold's validation speakers (early stopping, learning-rate schedule) come from the
training side (:mod:`training.folds`). Results go to ``training/results/`` as small JSON files
(and confusion PNGs), from which ``report`` writes the markdown table.

Why one module of about 750 lines: one command-line harness (train, baseline, cost,
robustness, report) over the shared protocol and result-file code; each subcommand's logic
lives in the modules it calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from .evaluate import (
    NO_SPEECH,
    Scores,
    clip_predictions,
    plot_confusion,
    score,
    scores_from_dict,
    scores_to_dict,
    summarise_folds,
)
from .folds import FIXED_FOLD, PROTOCOLS, Protocol
from .recipe import SPECS, Recipe, add_recipe_arguments, recipe_from_args

log = logging.getLogger("training.experiments")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------


def load_utterances(data: Path, protocols=()) -> list:
    """All labelled clips of RAVDESS, TESS and the corpora of ``protocols``, in
    :func:`training.corpora.discover` order.

    RAVDESS and TESS are always read, so every protocol over them shares one feature cache
    (its key is the list of clips); nEMO only when a protocol (``loco6``) uses it.
    """
    from .corpora import discover

    corpora = {"ravdess", "tess"}.union(*(p.corpora for p in protocols))
    return [u for u in discover(Path(data), corpora=sorted(corpora)) if u.label is not None]


def _speaker_mask(utts, speakers) -> np.ndarray:
    return np.array([u.speaker in speakers for u in utts], dtype=bool)


def per_corpus_scores(utts, y_true: list[str], y_pred: list[str], labels) -> dict[str, Scores]:
    """``{corpus: Scores}`` plus ``all`` when several corpora are present."""
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        groups.setdefault(u.corpus, []).append(i)
    if len(groups) > 1:
        groups["all"] = list(range(len(utts)))
    return {c: score([y_true[i] for i in idx], [y_pred[i] for i in idx], labels) for c, idx in groups.items()}


# ------------------------------------------------------------------------------------------
# peer baseline
# ------------------------------------------------------------------------------------------


def run_baseline(args: argparse.Namespace) -> dict:
    """eGeMAPSv02 + SVM on every requested protocol and standardisation mode."""
    from .baseline_egemaps import SVM_PARAMS, extract, svm_fold

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    utts = load_utterances(args.data, [PROTOCOLS[p] for p in args.protocols])
    t0 = time.monotonic()
    feats = extract(utts, Path(args.cache))
    extract_s = time.monotonic() - t0
    speakers = np.array([u.speaker for u in utts])
    out = {"command": _command(args), "created": _now(), "feature_extract_s": round(extract_s, 1),
           "svm": {k: v for k, v in SVM_PARAMS.items()}, "n_features": int(feats.shape[1]), "protocols": {}}
    for pname in args.protocols:
        proto = PROTOCOLS[pname]
        keep = np.array([u.corpus in proto.corpora and proto.label_of(u) in proto.labels for u in utts])
        p_utts = [u for u, k in zip(utts, keep) if k]
        x, spk = feats[keep], speakers[keep]
        y = np.array([proto.label_of(u) for u in p_utts])
        out["protocols"][pname] = {}
        for mode in args.modes:
            t1 = time.monotonic()
            per_fold = []
            for fold in proto.folds:
                train = _speaker_mask(p_utts, fold.train | fold.validation)
                test = _speaker_mask(p_utts, fold.test)
                pred = svm_fold(x, y, spk, train, test, mode)
                test_utts = [u for u, t in zip(p_utts, test) if t]
                per_fold.append((test_utts, list(y[test]), pred))
            res = _summarise_protocol(proto, per_fold)
            res["wall_s"] = round(time.monotonic() - t1, 1)
            out["protocols"][pname][mode] = res
            for corpus, r in res["corpora"].items():
                log.info("eGeMAPS+SVM %-8s %-14s %-7s clip UAR %.3f +- %.3f (pooled %.3f)", pname, mode, corpus,
                         r["clip"]["uar_mean"], r["clip"]["uar_std"], r["clip"]["pooled"]["uar"])
                main_corpus = "all" if len(proto.corpora) > 1 else proto.corpora[0]
                if args.plots and mode in ("global", "speaker_causal") and corpus == main_corpus:
                    s = scores_from_dict(r["clip"]["pooled"])
                    plot_confusion(s, f"eGeMAPS+SVM ({mode}) {pname} {corpus}, clip level, all folds",
                                   RESULTS_DIR / f"confusion-egemaps-{pname}-{mode}-{corpus}.png")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "egemaps.json").write_text(json.dumps(out, indent=1))
    return out


def _summarise_protocol(proto: Protocol, per_fold) -> dict:
    """Per corpus: pooled scores and per-fold UARs of clip-level predictions."""
    corpora: dict[str, list] = {}
    for test_utts, y_true, y_pred in per_fold:
        groups: dict[str, list[int]] = {}
        for i, u in enumerate(test_utts):
            groups.setdefault(u.corpus, []).append(i)
        if len(proto.corpora) > 1:
            groups["all"] = list(range(len(test_utts)))
        for c in set(groups) | set(corpora):
            idx = groups.get(c, [])
            corpora.setdefault(c, []).append(([y_true[i] for i in idx], [y_pred[i] for i in idx]))
    result = {}
    for c, folds in corpora.items():
        fs = summarise_folds(folds, proto.labels)
        result[c] = {"clip": {"pooled": scores_to_dict(fs.pooled), "per_fold_uar": [s.uar for s in fs.per_fold],
                              "uar_mean": fs.uar_mean, "uar_std": fs.uar_std,
                              "per_fold": {str(k + 1): scores_to_dict(score(t, p, proto.labels))
                                           for k, (t, p) in enumerate(folds) if t}}}
    return {"corpora": result}


# ------------------------------------------------------------------------------------------
# neural / sklearn training on folds
# ------------------------------------------------------------------------------------------


def _inputs(spec, fs, extras, idx, scaler=None):
    """Model input for the windows ``idx`` of a feature set."""
    from .inputs import frame_matrix, time_average

    mel = fs.log_mels[idx]
    if spec.input_kind == "log_mel":
        return mel.astype(np.float32)[..., None]
    if spec.input_kind == "frames":
        x = frame_matrix(mel, extras[idx])
        return scaler(x) if scaler is not None else x
    return time_average(mel, extras[idx])


def train_fold(spec, proto: Protocol, fold_index: int, fs, extras, recipe: Recipe, augmented=(), *,
               cache: Path | None = Path(".cache"), save_dir: Path | None = None, command: str = "",
               record: dict | None = None) -> dict:
    """Train ``spec`` on one fold with ``recipe`` and score its test speakers (clip and window level).

    Args:
        spec: :class:`training.architectures.ArchSpec` (usually ``SPECS[recipe.arch]``).
        proto: Protocol.
        fold_index: 1-based fold.
        fs: :class:`training.windows.FeatureSet` over all clips of the protocol.
        extras: Extra frame features aligned with ``fs`` windows (or None for log-mel models).
        recipe: What to train (:class:`training.recipe.Recipe`); its ``room_copies`` are built here.
        augmented: Augmented copies (:func:`training.augment.build_augmented_features`) of the
            protocol's clips; only their training speakers' windows are added to training.
        cache: Feature cache folder (room copies).
        save_dir: Folder to save the Keras model in (None: not saved).
        command: The command line, recorded.
        record: The recipe's record (:func:`training.recipe.recipe_record`; default: ``recipe``
            named ``"api"``), stored as ``recipe``.

    Returns:
        A JSON-ready record of the run.

    Raises:
        ValueError: If waveform or room copies are asked of an architecture without log-mel input.
    """
    from .architectures import InputStats, count_params, count_trainable_params, estimate_mflops
    from .inputs import FrameScaler, frame_matrix
    from .recipe import recipe_record

    recipe = recipe.resolved(spec)
    fold = proto.fold(fold_index)
    labels = proto.labels
    clip_y = np.array([labels.index(proto.label_of(u)) for u in fs.utterances], dtype=np.int32)
    win_y = clip_y[fs.clip_index]
    win_spk = np.array([u.speaker for u in fs.utterances])[fs.clip_index]
    tr = np.flatnonzero(np.isin(win_spk, list(fold.train)))
    va = np.flatnonzero(np.isin(win_spk, list(fold.validation)))
    te = np.flatnonzero(np.isin(win_spk, list(fold.test)))
    test_clips = np.flatnonzero([u.speaker in fold.test for u in fs.utterances])
    speaker_norm = recipe.speaker_norm
    config = recipe.feature_config()
    t0, cpu0 = time.monotonic(), time.process_time()
    if speaker_norm != "none":
        from .adaptation import normalise_speakers

        fs = dataclasses.replace(fs, log_mels=normalise_speakers(fs.log_mels, win_spk, fs.clip_index, fold.test,
                                                                 speaker_norm, seed=recipe.seed))
    record = {"arch": spec.name, "protocol": proto.name, "fold": fold_index, "fold_name": fold.name,
              "seed": recipe.seed, "feature_version": _feature_version(), **_feature_changes(config),
              "speech_gate": config.speech_gate, "speaker_norm": speaker_norm, "train_windows": int(len(tr)), "validation_windows": int(len(va)),
              "test_windows": int(len(te)), "test_clips": int(len(test_clips)), "command": command,
              "created": _now(), "recipe": record or recipe_record(recipe, "api"),
              "augmentation": "SpecAugment (1 freq mask <= 6 bands, 1 time mask <= 20 frames)"
              if spec.input_kind == "log_mel" and spec.kind == "keras" else "none", "class_balance": "class weights"}
    if spec.kind == "sklearn":
        model = spec.build(None, len(labels), seed=recipe.seed)
        x_tr = _inputs(spec, fs, extras, tr)
        model.fit(x_tr, win_y[tr])
        probs = model.predict_proba(_inputs(spec, fs, extras, te))
        full = np.zeros((len(te), len(labels)))
        full[:, model.classes_] = probs
        probs = full
        record.update({"epochs_run": int(model[-1].n_iter_), "best_epoch": None, "parameters": int(
            sum(c.size for c in model[-1].coefs_) + sum(b.size for b in model[-1].intercepts_))})
        record["class_balance"] = "none (MLPClassifier has no class weights)"
    else:
        from .train import FitData, fit, speaker_normalised, vtlp_factors, window_labels, window_voices
        from .voice_norm import voice_ids

        stats = InputStats.from_log_mels(fs.log_mels[tr], seed=recipe.seed)
        scaler = None
        if spec.input_kind == "frames":  # per-feature statistics of (a subset of) the training windows
            sub = tr[:: max(1, len(tr) // 4000)]
            scaler = FrameScaler.fit(frame_matrix(fs.log_mels[sub], extras[sub]))
        x_tr = _inputs(spec, fs, extras, tr, scaler)
        y_tr = win_y[tr]
        if (augmented or recipe.room_copies) and spec.input_kind != "log_mel":
            raise ValueError("waveform and room augmentation are implemented for log-mel inputs only")
        copies = [(f"aug{c}", aug.select(fold.train)) for c, aug in enumerate(augmented)]
        if augmented:
            record["augmentation"] += f" + {len(augmented)} waveform-augmented copies (training speakers)"
        if recipe.room_copies:
            from .room import ROOM_AUGMENT_VERSION, build_room_features

            # the fold's training speakers only: they are also the other talkers mixed in
            speakers = [u for u in fs.utterances if u.speaker in fold.train]
            copies += [(f"room{c}", build_room_features(speakers, config, c, cache)) for c in range(recipe.room_copies)]
            record["augmentation"] += f" + {recipe.room_copies} room-and-line copies (training/room.py " \
                                      f"v{ROOM_AUGMENT_VERSION}, training speakers)"
            record["room_copies"] = recipe.room_copies
        voices = [win_spk[tr]]
        for tag, extra in copies:
            if speaker_norm != "none":  # each training speaker's copies with their own statistics
                extra = speaker_normalised(extra)
            x_tr = np.concatenate([x_tr, extra.log_mels.astype(np.float32)[..., None]])
            y_tr = np.concatenate([y_tr, window_labels(extra, labels, proto.label_of)])
            voices.append(window_voices(extra, tag))
        record["train_windows"] = int(len(y_tr))
        x_va = _inputs(spec, fs, extras, va, scaler) if len(va) else x_tr[:0]
        log_mel = spec.input_kind == "log_mel"
        voices_tr, voices_va = voice_ids(np.concatenate(voices), win_spk[va])
        fitted = fit(recipe, FitData(x_tr, y_tr, x_va, win_y[va], stats, len(labels), config, log_mel,
                                     voices_train=voices_tr, voices_val=voices_va), spec)
        model = fitted.model
        if log_mel and recipe.vtlp:
            factors = vtlp_factors(recipe.vtlp)
            record["augmentation"] += f" + VTLP (frequency warp {factors[0]:g}-{factors[-1]:g}, {len(factors)} factors)"
            record["vtlp"] = recipe.vtlp
        if recipe.mixup:
            record["augmentation"] += f" + mixup (alpha {recipe.mixup:g}, within each batch)"
            record["mixup"] = recipe.mixup
        if recipe.embedding_norm != "none":
            record["embedding_norm"] = recipe.embedding_norm
        probs = model.predict(_inputs(spec, fs, extras, te, scaler), batch_size=256, verbose=0)
        record.update({
            "epochs_cap": fitted.epochs_cap,
            "epochs_run": len(fitted.history["loss"]),
            "best_epoch": fitted.best_epoch,
            "warmup_epochs": recipe.warmup,
            "schedule": recipe.schedule,
            "parameters": count_params(model), "trainable_parameters": count_trainable_params(model),
            "mflops": round(estimate_mflops(model), 2), "history": {k: [float(f"{float(v):.5g}") for v in vs]
                                                                    for k, vs in fitted.history.items()},
        })
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            model.save(save_dir / f"{spec.name}-{proto.name}-f{fold_index}-s{recipe.seed}.keras")
    record["wall_s"] = round(time.monotonic() - t0, 1)
    # CPU seconds of this process (all threads): less sensitive than wall time to other jobs
    # sharing the 2 cores; the 1-minute load average at the end says whether they did.
    record["cpu_s"] = round(time.process_time() - cpu0, 1)
    record["load_average_1m_end"] = round(os.getloadavg()[0], 2)

    # scoring: windows of the test clips, then clips (mean of window probabilities)
    pos = {int(c): i for i, c in enumerate(test_clips)}
    local = np.array([pos[int(c)] for c in fs.clip_index[te]], dtype=np.int64)
    test_utts = [fs.utterances[i] for i in test_clips]
    clip_pred = clip_predictions(probs, local, len(test_clips), labels)
    clip_true = [proto.label_of(u) for u in test_utts]
    win_pred = [labels[i] for i in np.argmax(probs, axis=1)]
    win_true = [labels[i] for i in win_y[te]]
    win_utts = [test_utts[i] for i in local]
    record["clip"] = {c: scores_to_dict(s) for c, s in per_corpus_scores(test_utts, clip_true, clip_pred, labels).items()}
    record["window"] = {c: scores_to_dict(s) for c, s in per_corpus_scores(win_utts, win_true, win_pred, labels).items()}
    record["no_speech_clips"] = int(sum(p == NO_SPEECH for p in clip_pred))
    if spec.kind == "keras":
        adapted = embedding_adaptation_record(model, spec, proto, fold_index, fs)
        if adapted is not None:
            record["embedding_adaptation"] = adapted
    return record


def embedding_adaptation_record(model, spec, proto: Protocol, fold_index: int, fs) -> dict | None:
    """The fold's test clips scored with the runtime's embedding adaptation
    (:mod:`training.fold_adaptation`), as stored in a run JSON under ``embedding_adaptation``.

    Args:
        model: The fold's trained ``keras.Model``.
        spec: Its :class:`training.architectures.ArchSpec`.
        proto: Protocol.
        fold_index: 1-based fold.
        fs: :class:`training.windows.FeatureSet` over all clips of the protocol, as the network
            scored them (with a speaker-normalisation recipe, normalised).

    Returns:
        ``{"prior_windows", "order_seed", "temperature", "validation_windows", "clip": {mode:
        {corpus: scores}}}``, or None for a network without log-mel input or global average
        pooling.
    """
    from .fold_adaptation import ORDER_SEED, fold_embedding_adaptation, keras_dense_tail, pooled_embeddings
    from .output_prior import DEFAULT_PRIOR_WINDOWS

    if spec.input_kind != "log_mel":
        return None
    fold = proto.fold(fold_index)
    speakers = [u.speaker for u in fs.utterances]
    labels = proto.labels
    clip_y = np.array([labels.index(proto.label_of(u)) for u in fs.utterances], dtype=np.int64)
    rows = np.flatnonzero(np.isin(np.asarray(speakers)[fs.clip_index], list(fold.train | fold.validation | fold.test)))
    try:
        e = pooled_embeddings(model, fs.log_mels[rows].astype(np.float32)[..., None])
    except ValueError as exc:
        log.info("no embedding adaptation: %s", exc)
        return None
    res = fold_embedding_adaptation(e, fs.clip_index[rows], speakers, clip_y, set(fold.train), set(fold.validation),
                                    set(fold.test), labels, tail=keras_dense_tail(model))
    test_utts = [fs.utterances[i] for i in res["test_clips"]]
    clip_true = [proto.label_of(u) for u in test_utts]
    return {"prior_windows": DEFAULT_PRIOR_WINDOWS, "order_seed": ORDER_SEED, "temperature": res["temperature"],
            "validation_windows": res["validation_windows"],
            "clip": {mode: {c: scores_to_dict(s) for c, s in
                            per_corpus_scores(test_utts, clip_true, pred, labels).items()}
                     for mode, pred in res["clip_pred"].items()}}


def _protocol_features(args: argparse.Namespace, recipe: Recipe):
    """``(spec, protocol, feature set, extras, augmented copies)`` of a command line's protocol
    (``data``, ``protocol``, ``cache``) and recipe."""
    from .inputs import build_extras
    from .windows import build_features

    spec = SPECS[recipe.arch]
    if spec.kind == "unavailable":
        spec.build(None, None)  # raises NotReproducibleOffline with the reason
    proto = PROTOCOLS[args.protocol]
    config = recipe.feature_config()
    utts = load_utterances(args.data, [proto])
    fs_all = build_features(utts, config, Path(args.cache))
    # the protocol's clips: its corpora, and a label in its scheme (loco6 leaves disgust out)
    in_protocol = set(map(id, proto.utterances(utts)))
    keep_clip = np.array([id(u) in in_protocol for u in fs_all.utterances])
    fs = fs_all.select_clips(keep_clip)
    extras = None
    if spec.input_kind != "log_mel":
        extras_all = build_extras(list(utts), config, Path(args.cache))
        extras = extras_all[keep_clip[fs_all.clip_index]]
        if len(extras) != len(fs.log_mels):
            raise RuntimeError("extras and log-mel windows do not line up (feature recipe changed?)")
    augmented = []
    for copy in range(recipe.augment_copies):
        from .augment import build_augmented_features

        augmented.append(build_augmented_features(list(fs.utterances), config, copy, Path(args.cache)))
    return spec, proto, fs, extras, augmented


def run_train(args: argparse.Namespace, recipe: Recipe, record: dict) -> list[dict]:
    """Train one architecture with ``recipe`` on the requested folds; writes one JSON per fold run.

    Args:
        args: The command line's data options (``data``, ``protocol``, ``folds``, ``cache``,
            ``save_models``, ``work``, ``argv``).
        recipe: What to train (:func:`training.recipe.recipe_from_args`).
        record: Its record, stored in every run JSON.
    """
    spec, proto, fs, extras, augmented = _protocol_features(args, recipe)
    folds = args.folds or list(range(1, len(proto.folds) + 1))
    out_dir = RESULTS_DIR / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for k in folds:
        log.info("%s on %s fold %d (%s)", spec.name, proto.name, k, proto.fold(k).name)
        rec = train_fold(spec, proto, k, fs, extras, recipe, augmented, cache=Path(args.cache),
                         save_dir=Path(args.work) if args.save_models else None, command=_command(args), record=record)
        path = out_dir / run_file_name(rec, recipe)
        path.write_text(json.dumps(rec, indent=1))
        for c, s in rec["clip"].items():
            log.info("%s %s fold %d %-7s clip UAR %.3f WA %.3f F1 %.3f | window UAR %.3f  (%.0f s, %d epochs)",
                     spec.name, proto.name, k, c, s["uar"], s["wa"], s["macro_f1"], rec["window"][c]["uar"],
                     rec["wall_s"], rec["epochs_run"])
        records.append(rec)
    return records


def run_adapt(args: argparse.Namespace, recipe: Recipe) -> list[dict]:
    """Score saved fold networks (``train --save-models``) with the embedding adaptation and add
    the figures to their run JSONs (:func:`embedding_adaptation_record`).

    Args:
        args: The command line (``data``, ``protocol``, ``folds``, ``cache``, ``work``).
        recipe: The recipe the networks were trained with; it names their files and run JSONs.

    Returns:
        The updated run records.

    Raises:
        FileNotFoundError: If a fold's network or its run JSON is missing.
    """
    import keras

    from .adaptation import normalise_speakers

    spec, proto, fs, _, _ = _protocol_features(args, recipe)
    runs = RESULTS_DIR / "runs"
    records = []
    for k in args.folds or range(1, len(proto.folds) + 1):
        path = Path(args.work) / f"{spec.name}-{proto.name}-f{k}-s{recipe.seed}.keras"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no saved network (train it with --save-models --work {args.work})")
        matches = [p for p in sorted(runs.glob(f"{spec.name}__{proto.name}__f{k}__s{recipe.seed}*.json"))
                   if _stored_recipe(json.loads(p.read_text())) == recipe]
        if len(matches) != 1:
            raise FileNotFoundError(f"fold {k}: {len(matches)} run JSONs of this recipe in {runs}, expected 1")
        rec = json.loads(matches[0].read_text())
        fold_fs = fs
        if recipe.speaker_norm != "none":
            fold = proto.fold(k)
            win_spk = np.array([u.speaker for u in fs.utterances])[fs.clip_index]
            fold_fs = dataclasses.replace(fs, log_mels=normalise_speakers(
                fs.log_mels, win_spk, fs.clip_index, fold.test, recipe.speaker_norm, seed=recipe.seed))
        adapted = embedding_adaptation_record(keras.models.load_model(path), spec, proto, k, fold_fs)
        if adapted is None:
            raise ValueError(f"{spec.name}: no embedding to adapt (needs log-mel input and global average pooling)")
        rec["embedding_adaptation"] = {**adapted, "command": _command(args), "created": _now()}
        matches[0].write_text(json.dumps(rec, indent=1))
        for mode, per in adapted["clip"].items():
            for c, sc in per.items():
                log.info("%s fold %d %-12s %-7s clip UAR %.3f (unadapted %.3f)", proto.name, k, mode, c, sc["uar"],
                         rec["clip"][c]["uar"])
        records.append(rec)
    return records


def _stored_recipe(rec: dict) -> Recipe | None:
    """The recipe a run JSON stores (fields added since it was written at their defaults), or None."""
    fields = rec.get("recipe", {}).get("fields")
    try:
        return Recipe.from_dict(fields, "run") if fields else None
    except ValueError:
        return None


def run_file_name(rec: dict, recipe: Recipe) -> str:
    """File name of a fold run in ``training/results/runs/``: architecture, protocol, fold, seed, then
    each recipe choice that differs from the plateau, 8 kHz, level-gated, no-augmentation runs (so
    that the files of one recipe's seeds and folds sort together, and no run overwrites another
    recipe's)."""
    norm = "" if recipe.speaker_norm == "none" else f"__sn-{recipe.speaker_norm}"
    aug = f"__aug{recipe.augment_copies}" if recipe.augment_copies else ""
    aug += f"__wu{recipe.warmup}" if recipe.warmup else ""
    aug += f"__{recipe.schedule}" if recipe.schedule != "plateau" else ""
    aug += f"__fmax{rec['fmax_hz']:g}" if "fmax_hz" in rec else ""
    aug += f"__vtlp{rec['vtlp']:g}" if rec.get("vtlp") else ""
    aug += f"__room{rec['room_copies']}" if rec.get("room_copies") else ""
    aug += f"__mixup{rec['mixup']:g}" if rec.get("mixup") else ""
    aug += "__vad" if recipe.speech_gate == "vad" else ""
    aug += f"__en-{recipe.embedding_norm}" if recipe.embedding_norm != "none" else ""
    return f"{rec['arch']}__{rec['protocol']}__f{rec['fold']}__s{recipe.seed}{norm}{aug}.json"


# ------------------------------------------------------------------------------------------
# cost: parameters, MFLOPs, onnxruntime latency
# ------------------------------------------------------------------------------------------


def onnx_latency_ms(path: Path, input_shape: tuple[int, ...], runs: int = 300, warmup: int = 30, seed: int = 0) -> dict:
    """Median and 90th-percentile wall time of one batch-1 inference, onnxruntime, one thread.

    Args:
        path: ONNX file with one float32 input.
        input_shape: Input shape without the batch axis.
        runs: Timed runs.
        warmup: Untimed runs first.

    Returns:
        ``{"median_ms", "p90_ms"}``.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = (np.random.default_rng(seed).standard_normal((1, *input_shape)) * 15 - 50).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


def export_for_timing(model, path: Path) -> None:
    """Convert a Keras model to ONNX (tf2onnx, opset of :mod:`training.export`) without metadata.

    Timing only; the shipped export with metadata and parity check is
    :func:`training.export.export_onnx`. The graph gets the same exact rewrites as a shipped
    export (:mod:`training.graph_passes`), so the timing is what a shipped model would cost.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from .export import OPSET
    from .graph_passes import apply_all

    shape = tuple(model.inputs[0].shape[1:])
    spec = (tf.TensorSpec((None, *shape), tf.float32, name="x"),)
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    apply_all(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))


def feature_latency_ms(data: Path, runs: int = 60) -> dict:
    """Median ms of the runtime's feature recipe (and of the extra frame features) per 3 s window.

    Windows are the speech windows of a few RAVDESS clips (cut as the engine cuts them).
    """
    from stream_ser.engine import cut_window, window_ends
    from stream_ser.features import FeatureConfig, log_mel, preprocess, window_features
    from stream_ser.audio import load_audio

    from .inputs import window_extras

    config = FeatureConfig()
    utts = [u for u in load_utterances(data) if u.corpus == "ravdess"][:: 97][:8]
    windows = []
    for u in utts:
        x = load_audio(u.path, config.sample_rate_hz)
        windows += [cut_window(x, e, config.window_samples) for e in window_ends(x.size, config.hop_samples)]
    windows = [w for w in windows if preprocess(w, config) is not None]
    window_features(windows[0], config)  # warm caches (mel basis, imports)
    t_feat, t_extra = [], []
    for i in range(runs):
        w = windows[i % len(windows)]
        t = time.perf_counter()
        y = preprocess(w, config)
        log_mel(y, config)
        t_feat.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        window_extras(y, config)
        t_extra.append((time.perf_counter() - t) * 1e3)
    return {"log_mel_median_ms": float(np.median(t_feat)), "extras_median_ms": float(np.median(t_extra)),
            "windows": len(windows), "runs": runs}


def run_cost(args: argparse.Namespace) -> dict:
    """Parameters, MFLOPs and onnxruntime latency of every registry entry; writes cost.json."""
    import tempfile

    from stream_ser.features import FeatureConfig

    from .architectures import REGISTRY, VGG19_REASON, count_params, count_trainable_params, estimate_mflops

    config = FeatureConfig()
    out = {"command": _command(args), "created": _now(), "input_shape": list(config.input_shape),
           "feature_version": config.version, "archs": {}}
    out["features"] = feature_latency_ms(Path(args.data))
    log.info("features: %s", out["features"])
    names = args.archs or list(REGISTRY)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = REGISTRY[name]
            if spec.kind == "unavailable":
                out["archs"][name] = {"status": "not reproducible offline", "reason": VGG19_REASON}
                continue
            if spec.kind == "sklearn":
                out["archs"][name] = _sklearn_cost(spec)
                continue
            import keras

            keras.utils.set_random_seed(0)
            model = spec.build(config.input_shape, 7)
            path = Path(tmp) / f"{name}.onnx"
            export_for_timing(model, path)
            lat = onnx_latency_ms(path, tuple(model.inputs[0].shape[1:]), runs=args.runs)
            out["archs"][name] = {"parameters": count_params(model), "trainable_parameters": count_trainable_params(model),
                                  "mflops": round(estimate_mflops(model), 2), "onnx_bytes": path.stat().st_size, **lat}
            log.info("%-20s %s", name, out["archs"][name])
            keras.backend.clear_session()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "cost.json"
    if path.is_file() and args.archs:  # partial update
        old = json.loads(path.read_text())
        old["archs"].update(out["archs"])
        old["features"] = out["features"]
        old.setdefault("updates", []).append({"command": out["command"], "created": out["created"], "archs": names})
        out = old
    path.write_text(json.dumps(out, indent=1))
    return out


def _sklearn_cost(spec) -> dict:
    """Parameters, MFLOPs and predict_proba latency (one window) of the MLP on 92 inputs."""
    from .inputs import N_CHROMA

    n_in = 40 + N_CHROMA + 40
    rng = np.random.default_rng(0)
    model = spec.build(None, 7)
    model.set_params(mlpclassifier__max_iter=3)
    x = rng.standard_normal((700, n_in))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, np.arange(700) % 7)
    mlp = model[-1]
    params = int(sum(c.size for c in mlp.coefs_) + sum(b.size for b in mlp.intercepts_))
    mflops = 2.0 * sum(c.size for c in mlp.coefs_) / 1e6
    times = []
    for i in range(300):
        t = time.perf_counter()
        model.predict_proba(x[i : i + 1])
        times.append((time.perf_counter() - t) * 1e3)
    return {"parameters": params, "trainable_parameters": params, "mflops": round(mflops, 3),
            "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "latency_note": "scikit-learn predict_proba (not ONNX), one window"}


# ------------------------------------------------------------------------------------------
# robustness of an exported model (through the runtime engine)
# ------------------------------------------------------------------------------------------

#: Conditions of the robustness evaluation: (name, kind, SNR dB).
ROBUSTNESS_CONDITIONS: tuple[tuple[str, str, float | None], ...] = (
    ("clean", "clean", None),
    *((f"white-{int(s)}dB", "white", s) for s in (20.0, 10.0, 0.0)),
    *((f"babble-{int(s)}dB", "babble", s) for s in (20.0, 10.0, 0.0)),
    ("telephone-8k", "telephone", None),
    # a shoebox room (pyroomacoustics via audiomentations), reverberation time in s in the name
    *((f"reverb-{t}s", "reverb", float(t)) for t in ("0.3", "0.6")),
    # the live path from a 48 kHz device: soxr's streaming resampler at the quality listen uses
    *((f"device48k-{q}", f"device48k-{q}", None) for q in ("HQ", "LQ")),
)


def corrupt(x: np.ndarray, kind: str, snr_db: float | None, others: list[np.ndarray], seed: int, sr: int) -> np.ndarray:
    """One test clip under one condition of :data:`ROBUSTNESS_CONDITIONS` (float32, same length)."""
    from .augment import add_noise_snr, babble, telephone, white_noise

    if kind == "clean":
        return x
    if kind == "white":
        return add_noise_snr(x, white_noise(x.size, seed), snr_db)
    if kind == "babble":
        return add_noise_snr(x, babble(others, x.size, seed), snr_db)
    if kind == "telephone":
        return telephone(x, sr)
    if kind == "reverb":  # the third field of the condition is the RT60 (s), not an SNR
        from .room import reverberate

        return reverberate(x, seed, sr, rt60_s=snr_db)
    if kind.startswith("device48k-"):  # as if captured at 48 kHz: up with soxr VHQ, down at the named quality
        import soxr

        up = soxr.resample(x, sr, 48000, quality="VHQ")
        return soxr.resample(up, 48000, sr, quality=kind.split("-", 1)[1])[: x.size].astype(np.float32)
    raise ValueError(f"unknown condition {kind!r}")


def run_robustness(args: argparse.Namespace) -> dict:
    """Clip-level scores of an ONNX model on the test speakers under noise and telephone band.

    Every corrupted clip is streamed through :class:`stream_ser.engine.Engine` (one chunk; the
    engine's output does not depend on the chunking) and summarised as ``stream-ser analyse``
    does (the engine's default speech gate, recorded as ``gate``). Babble for a clip is made from 6
    other clips of the same speakers' partition (never the clip itself, never training audio).
    Writes ``training/results/robustness-<model>.json`` (``-validation`` added for
    ``--partition validation``).
    """
    from stream_ser.engine import Engine, summarise
    from stream_ser.model import EmotionModel
    from stream_ser.audio import load_audio

    from .split import load_split

    model = EmotionModel(args.model)
    sr = model.feature_config.sample_rate_hz
    partition = getattr(args, "partition", "test")  # namespaces built by older callers have none
    test = [u for u in load_split().partition(load_utterances(args.data))[partition]]
    if args.limit:
        test = test[:: max(1, len(test) // args.limit)]
    clips = [load_audio(u.path, sr) for u in test]
    conds = [c for c in ROBUSTNESS_CONDITIONS if not args.conditions or c[0] in args.conditions]
    out = {"command": _command(args), "created": _now(), "model": str(args.model), "clips": len(test),
           "speakers": partition, "gate": Engine(model).gate, "conditions": {}}
    path = (Path(args.out) if getattr(args, "out", None)
            else RESULTS_DIR / f"robustness-{Path(args.model).stem}{'' if partition == 'test' else '-' + partition}.json")
    if args.conditions and path.is_file():  # a subset: keep the other conditions of an earlier run on the same clips
        old = json.loads(path.read_text())
        if old.get("clips") == len(test) and old.get("model") == str(args.model):
            keep = {k: v for k, v in old["conditions"].items() if k not in args.conditions}
            out = {**old, "conditions": keep, "extra_commands": [*old.get("extra_commands", []), _command(args)]}
    for name, kind, snr in conds:
        t0 = time.monotonic()
        preds = []
        for i, x in enumerate(clips):
            others = clips[:i] + clips[i + 1 :]
            y = corrupt(x, kind, snr, others, seed=i, sr=sr)
            engine = Engine(model)
            p = list(engine.run([y]))
            preds.append(summarise(p, test[i].path.name, y.size / sr, model.labels).label or NO_SPEECH)
        res = per_corpus_scores(test, [u.label for u in test], preds, model.labels)
        out["conditions"][name] = {c: scores_to_dict(sc) for c, sc in res.items()}
        log.info("%-14s %s (%.0f s)", name, "  ".join(f"{c} UAR {sc.uar:.3f}" for c, sc in res.items()),
                 time.monotonic() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def _feature_changes(config) -> dict:
    """The feature-recipe fields a run changed from the runtime's defaults (``{"fmax_hz": 4000.0}``),
    empty for the runtime's recipe."""
    from stream_ser.features import FeatureConfig

    default = FeatureConfig().to_dict()
    return {k: v for k, v in config.to_dict().items() if v != default[k]}


def _feature_version() -> int:
    from stream_ser.features import FeatureConfig

    return FeatureConfig().version


def _command(args: argparse.Namespace) -> str:
    return "python -m training.experiments " + " ".join(getattr(args, "argv", []))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baseline", help="eGeMAPSv02 + SVM on the protocols (needs opensmile)")
    b.add_argument("--data", required=True)
    b.add_argument("--cache", default=".cache")
    b.add_argument("--protocols", nargs="*", default=list(PROTOCOLS))
    b.add_argument("--modes", nargs="*", default=["global", "speaker", "speaker_causal"])
    b.add_argument("--no-plots", dest="plots", action="store_false")
    t = sub.add_parser("train", help="train one architecture on folds of a protocol",
                       description="Train a recipe (training/recipes/, default: shipped) on folds of a protocol; "
                       "each recipe flag overrides one of its fields, and every run JSON stores the recipe it "
                       "trained.")
    t.add_argument("--data", required=True)
    t.add_argument("--protocol", default="pooled7", choices=sorted(PROTOCOLS))
    t.add_argument("--folds", type=int, nargs="*", default=None, help=f"1-based folds (default all; fixed fold: {FIXED_FOLD})")
    t.add_argument("--cache", default=".cache")
    t.add_argument("--work", default="runs/experiments", help="folder for saved Keras models (--save-models)")
    t.add_argument("--save-models", action="store_true")
    add_recipe_arguments(t)
    c = sub.add_parser("cost", help="parameters, MFLOPs, onnxruntime ms per window (one thread)")
    c.add_argument("--data", required=True)
    c.add_argument("--archs", nargs="*", default=None)
    c.add_argument("--runs", type=int, default=300)
    rb = sub.add_parser("robustness", help="clip-level UAR of an ONNX model under noise and telephone band")
    rb.add_argument("--data", required=True)
    rb.add_argument("--model", default="models/stream-ser.onnx")
    rb.add_argument("--conditions", nargs="*", default=None, help="subset of condition names (default all)")
    rb.add_argument("--limit", type=int, default=0, help="evaluate about this many test clips (0: all)")
    rb.add_argument("--partition", choices=("test", "validation"), default="test",
                    help="speakers of the split to corrupt: test (reported) or validation (to choose a model on; "
                    "written to robustness-<model>-validation.json)")
    rb.add_argument("--out", default=None, metavar="JSON",
                    help="result file (default training/results/robustness-<model>[-validation].json)")
    a = sub.add_parser("adapt", help="score saved fold networks with the embedding adaptation",
                       description="Score the networks saved by `train --save-models` with the runtime's "
                       "embedding adaptation (training/fold_adaptation.py) and add the figures to their run JSONs; "
                       "give the same recipe flags as to `train`.",
                       epilog="Example: python -m training.experiments adapt --data ../shared/data --recipe shipped "
                       "--protocol ravdess8 --work runs/folds-shipped")
    a.add_argument("--data", required=True)
    a.add_argument("--cache", default=".cache")
    a.add_argument("--protocol", default="pooled7", choices=sorted(PROTOCOLS))
    a.add_argument("--folds", type=int, nargs="*", default=None, help="1-based folds (default: all)")
    a.add_argument("--work", default="runs/experiments", help="folder of the saved Keras networks")
    add_recipe_arguments(a)
    r = sub.add_parser("report", help="write the markdown results table")
    r.add_argument("--out", default="models/RESULTS.md")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.cmd in ("train", "adapt"):
        try:
            recipe, record = recipe_from_args(args)
        except ValueError as exc:
            parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "baseline":
        run_baseline(args)
    elif args.cmd == "train":
        run_train(args, recipe, record)
    elif args.cmd == "adapt":
        run_adapt(args, recipe)
    elif args.cmd == "cost":
        run_cost(args)
    elif args.cmd == "robustness":
        run_robustness(args)
    else:
        from .report import write_report

        write_report(Path(args.out), RESULTS_DIR, _command(args))


if __name__ == "__main__":
    main()
