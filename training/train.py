"""Train an emotion model on RAVDESS + TESS with the committed speaker-independent split.

Usage::

    python -m training.train --data ../shared/data --out models/                    # the shipped recipe
    python -m training.train --data ../shared/data --recipe plateau-8k --seed 2      # another recipe, one field changed

What is trained is a recipe (:mod:`training.recipe`, ``training/recipes/*.toml``); the exported
model stores it in its provenance. Steps: read the corpora (:mod:`training.corpora`), partition
them by speaker with the committed split (:mod:`training.split`; RAVDESS actors 21-24 and TESS
YAF are test speakers and are never seen here, not even for model selection), cut and featurise
the engine's windows (:mod:`training.windows`, cached), train the Keras model with :func:`fit`
(class weights, SpecAugment masks, the recipe's schedule on the validation speakers), then export
it to ONNX with its metadata (:mod:`training.export`). Evaluation on the test speakers is a
separate command (``python -m training.evaluate``) that scores the exported ONNX file through the
runtime.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_ser.adaptation import OutputPrior, SpeakerNorm
from stream_ser.features import FeatureConfig

from .architectures import ArchSpec, InputStats, count_params
from .corpora import discover
from .labels import EMOTIONS
from .recipe import SCHEDULES, SPECS, Recipe, add_recipe_arguments, check_vtlp, recipe_from_args
from .split import load_split
from .voice_norm import voice_ids
from .windows import FeatureSet, build_features

log = logging.getLogger("training.train")


def window_labels(fs: FeatureSet, labels: tuple[str, ...] = EMOTIONS, label_of=None) -> np.ndarray:
    """Class index of each window (the label of its clip), int32 ``(n_windows,)``.

    Args:
        fs: Windows and their clips.
        labels: The classes, in model output order.
        label_of: A clip's class name (default: ``u.label``; a protocol's scheme, e.g.
            :meth:`training.folds.Protocol.label_of`, otherwise).
    """
    label_of = label_of or (lambda u: u.label)
    clip_y = np.array([labels.index(label_of(u)) for u in fs.utterances], dtype=np.int32)
    return clip_y[fs.clip_index]


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (n_classes * count_c)`` per class (scikit-learn's "balanced" rule)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return {c: float(len(y) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


def spec_augment(x, max_freq_mask: int = 6, max_time_mask: int = 20):
    """One frequency mask and one time mask per example (Park et al. 2019, SpecAugment).

    Args:
        x: float32 tensor ``(n_mels, n_frames, 1)`` in dB; masked cells are set to the
            example's minimum (silence).
    """
    import tensorflow as tf

    n_mels, n_frames = x.shape[0], x.shape[1]
    floor = tf.reduce_min(x)
    f = tf.random.uniform([], 0, max_freq_mask + 1, dtype=tf.int32)
    f0 = tf.random.uniform([], 0, n_mels - f + 1, dtype=tf.int32)
    t = tf.random.uniform([], 0, max_time_mask + 1, dtype=tf.int32)
    t0 = tf.random.uniform([], 0, n_frames - t + 1, dtype=tf.int32)
    fm = tf.logical_and(tf.range(n_mels) >= f0, tf.range(n_mels) < f0 + f)[:, None, None]
    tm = tf.logical_and(tf.range(n_frames) >= t0, tf.range(n_frames) < t0 + t)[None, :, None]
    return tf.where(tf.logical_or(fm, tm), floor, x)


def mel_band_positions(config: FeatureConfig, warp: float) -> np.ndarray:
    """Fractional mel-band index that each band reads from when frequencies are scaled by ``warp``.

    Band ``i`` of the warped log-mel takes the value the unwarped one has at centre frequency
    ``f_i / warp`` (Hz), where ``f_i`` are the band centres of ``config``'s filterbank
    (``librosa.mel_frequencies``, Slaney or HTK scale as the config says). ``warp`` > 1 moves
    spectral features up in frequency (a shorter vocal tract), < 1 down.

    Returns:
        float64 ``(n_mels,)``, clipped to ``[0, n_mels - 1]`` (bands whose source lies outside
        the filterbank repeat its edge band).
    """
    import librosa

    edges = librosa.mel_frequencies(config.n_mels + 2, fmin=config.fmin_hz, fmax=config.fmax_hz, htk=config.mel_htk)
    centres = edges[1:-1]
    mels = librosa.hz_to_mel(centres / warp, htk=config.mel_htk)
    ref = librosa.hz_to_mel(centres, htk=config.mel_htk)  # equally spaced on the mel scale
    return np.clip((mels - ref[0]) / (ref[1] - ref[0]), 0.0, config.n_mels - 1)


def vtlp_factors(max_warp: float, grid: int = 41) -> np.ndarray:
    """The warp factors :func:`mel_warp` draws from: ``grid`` values equally spaced over
    ``[1 - max_warp, 1 + max_warp]`` (VTLP's usual range is 0.9-1.1, ``max_warp`` = 0.1).

    Raises:
        ValueError: If ``max_warp`` is outside ``[0, 0.5)``.
    """
    return np.linspace(1.0 - check_vtlp(max_warp), 1.0 + max_warp, grid)


def mel_warp(x, config: FeatureConfig, factors):
    """Vocal tract length perturbation on a log-mel window (Jaitly & Hinton 2013, VTLP).

    Scales the frequency axis by a factor drawn uniformly from ``factors`` per example, by
    linear interpolation between mel bands (:func:`mel_band_positions`): the same speech as if
    spoken by a speaker with a shorter (factor > 1) or longer vocal tract, so that the model
    sees more voices than the corpus has. The band positions of every factor are computed once.

    Args:
        x: float32 tensor ``(n_mels, n_frames, 1)`` in dB.
        config: The feature recipe ``x`` was made with (its band centres).
        factors: Warp factors to draw from (:func:`vtlp_factors`).

    Returns:
        float32 tensor of the shape of ``x``; each band a convex combination of two adjacent bands.
    """
    import tensorflow as tf

    table = np.stack([mel_band_positions(config, w) for w in np.atleast_1d(factors)])
    pos = tf.gather(tf.constant(table, tf.float32), tf.random.uniform([], 0, len(table), dtype=tf.int32))
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, config.n_mels - 1)
    frac = (pos - tf.cast(lo, tf.float32))[:, None, None]
    return (1.0 - frac) * tf.gather(x, lo, axis=0) + frac * tf.gather(x, hi, axis=0)


def mixup_batch(x, y, w, alpha: float, n_classes: int):
    """mixup within a batch (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization").

    Each example is blended with another example of the same batch (a random permutation): inputs,
    one-hot targets and sample weights all by the same factor ``lam ~ Beta(alpha, alpha)``, drawn
    per example. The model then trains on soft targets between classes (and, in a speaker-independent
    setting, between speakers), a regulariser for small corpora. Train with
    ``categorical_crossentropy`` on the returned targets; validation keeps plain one-hot targets.

    Args:
        x: float32 tensor ``(batch, n_mels, n_frames, 1)`` (log-mel, dB; after SpecAugment).
        y: int32 class indices ``(batch,)``.
        w: float32 sample (class-balance) weights ``(batch,)``.
        alpha: Beta distribution parameter (> 0); small values keep most mixes close to one example.
        n_classes: Number of classes (the one-hot width).

    Returns:
        ``(x, targets, w)``: mixed inputs of the shape of ``x``, float32 soft targets
        ``(batch, n_classes)`` whose rows sum to 1, mixed weights ``(batch,)``.
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    a = tf.random.gamma([n], alpha)
    b = tf.random.gamma([n], alpha)
    lam = a / tf.maximum(a + b, 1e-12)  # Beta(alpha, alpha) as a ratio of gammas
    perm = tf.random.shuffle(tf.range(n))
    onehot = tf.one_hot(y, n_classes, dtype=tf.float32)
    lx = tf.reshape(lam, [-1, 1, 1, 1])
    x_mix = lx * x + (1.0 - lx) * tf.gather(x, perm)
    y_mix = lam[:, None] * onehot + (1.0 - lam[:, None]) * tf.gather(onehot, perm)
    w_mix = lam * w + (1.0 - lam) * tf.gather(w, perm)
    return x_mix, y_mix, w_mix


#: Final learning rate of the cosine schedule as a fraction of the initial one (chosen a priori:
#: 1e-5 for Adam at 1e-3, the floor of the plateau schedule).
COSINE_FINAL_FRACTION = 0.01


def schedule_callbacks(schedule: str, lr: float, epochs: int, patience: int, warmup: int = 0,
                       validation: bool = True) -> list:
    """Keras callbacks for the learning rate and the epoch whose weights are kept.

    ``plateau``: halve the rate when the validation loss has not improved for 2 epochs (floor
    1e-5) and stop after ``patience`` epochs without improvement. ``cosine``: a fixed cosine decay
    from ``lr`` to ``COSINE_FINAL_FRACTION * lr`` at the last epoch, set per epoch (logged in the
    history as ``learning_rate``), every epoch run (Loshchilov & Hutter 2017, SGDR, without
    restarts). Both keep the weights of the epoch with the lowest validation loss from epoch
    ``warmup + 1`` on (Keras 3's ``EarlyStopping`` restores them at the end of training, stopped
    early or not). Without ``validation`` (no validation speakers) nothing watches a validation
    loss: plateau keeps the rate, cosine still decays it, and the last epoch's weights are kept.

    Raises:
        ValueError: For a schedule not in :data:`SCHEDULES`.
    """
    import keras

    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; one of {SCHEDULES}")
    out = []
    if validation:
        out.append(keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True, start_from_epoch=warmup,
                                                 patience=epochs if schedule == "cosine" else patience))
    if schedule == "plateau":
        if validation:
            out.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5))
        return out
    cosine = keras.optimizers.schedules.CosineDecay(lr, max(1, epochs - 1), alpha=COSINE_FINAL_FRACTION)
    return [*out, keras.callbacks.LearningRateScheduler(lambda epoch, _: float(cosine(epoch)))]


class EpochProgress:
    """Keras callback logging one line per epoch with metrics, wall time and ETA."""

    def __new__(cls, epochs: int):
        import keras

        class _Progress(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.t0 = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                done = epoch + 1
                per = (time.monotonic() - self.t0) / done
                log.info(
                    "epoch %d/%d  loss %.3f  acc %.3f  val_loss %.3f  val_acc %.3f  (%.0f s/epoch, ETA <= %.0f s)",
                    done, epochs, logs.get("loss", np.nan), logs.get("accuracy", np.nan),
                    logs.get("val_loss", np.nan), logs.get("val_accuracy", np.nan), per, per * (epochs - done),
                )

        return _Progress()


#: Epochs trained without early stopping when a run has no validation speaker (the harness's
#: TESS-only folds); chosen a priori (the shipped v2 run on si_v1 stopped at epoch 16, best epoch
#: 10), not tuned on a test speaker.
EPOCHS_WITHOUT_VALIDATION = 15


def best_epoch(val_loss: list[float], warmup: int = 0) -> int:
    """1-based epoch of the lowest validation loss from epoch ``warmup + 1`` on (what
    ``EarlyStopping(start_from_epoch=warmup, restore_best_weights=True)`` restores); the last epoch
    if the run ended within the warm-up."""
    if len(val_loss) <= warmup:
        return len(val_loss)
    return warmup + int(np.argmin(val_loss[warmup:])) + 1


@dataclass
class FitData:
    """The model inputs of one training run, as its command prepared them.

    Attributes:
        x_train: float32 ``(n, *input)``: log-mel windows ``(n_mels, n_frames, 1)`` in dB, or the
            frame features of :mod:`training.inputs`; augmented copies included.
        y_train: int32 ``(n,)`` class indices.
        x_val: float32 ``(m, *input)``; ``m`` = 0 without validation speakers (then nothing
            watches a validation loss and at most :data:`EPOCHS_WITHOUT_VALIDATION` epochs run).
        y_val: int32 ``(m,)``.
        stats: Input standardisation constants folded into the model's first layer.
        n_classes: Number of classes (the model's outputs).
        config: Feature recipe of the log-mels (the model's input shape; VTLP reads its band centres).
        log_mel: The inputs are log-mel windows, so SpecAugment, VTLP and mixup apply.
        voices_train: int ``(n,)``: the voice of each training window (a speaker, or one
            speaker's augmented copy), for ``embedding_norm = "voice"`` (:mod:`training.voice_norm`).
        voices_val: int ``(m,)``: the same for the validation windows.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    stats: InputStats
    n_classes: int
    config: FeatureConfig
    log_mel: bool = True
    voices_train: np.ndarray | None = None
    voices_val: np.ndarray | None = None


@dataclass
class Fitted:
    """What :func:`fit` returns.

    Attributes:
        model: The trained ``keras.Model``, with the weights of the kept epoch.
        history: Keras's per-epoch history (``loss``, ``accuracy``, ``val_*``, ``learning_rate``).
        epochs_cap: Epochs the run was allowed (``recipe.epochs``, or fewer without validation).
        best_epoch: 1-based epoch whose weights were kept (None without validation).
        wall_s: Wall time of ``model.fit`` (s).
        recipe: The recipe trained, ``lr`` and ``optimizer`` resolved.
    """

    model: Any
    history: dict[str, list[float]]
    epochs_cap: int
    best_epoch: int | None
    wall_s: float
    recipe: Recipe


def fit(recipe: Recipe, data: FitData, spec: ArchSpec | None = None) -> Fitted:
    """Train one model with a recipe: the one training loop of ``training.train`` and
    ``training.experiments train``.

    Seeds everything with ``recipe.seed``, builds ``spec`` with ``data.stats``, compiles it with the
    recipe's optimiser and rate (sparse categorical cross-entropy; categorical on mixup's soft
    targets), weights classes by :func:`balanced_class_weights`, shuffles the training windows
    each epoch and, for log-mel inputs, applies VTLP (:func:`mel_warp`, if ``recipe.vtlp``),
    SpecAugment (:func:`spec_augment`) and mixup (:func:`mixup_batch`, if ``recipe.mixup``), and
    runs the recipe's schedule (:func:`schedule_callbacks`).

    With ``recipe.embedding_norm == "voice"`` the batches are made of one-voice chunks and the
    pooled embedding is standardised per chunk (:mod:`training.voice_norm`); the returned model
    carries the training voices' average statistics in their place.

    Args:
        recipe: What to train (``arch`` chooses the model unless ``spec`` is given).
        data: Inputs and labels.
        spec: The architecture to build (default ``SPECS[recipe.arch]``).

    Returns:
        :class:`Fitted`.

    Raises:
        ValueError: If VTLP or mixup is asked of an architecture that does not take log-mels, or
            ``embedding_norm = "voice"`` of a network without a pooled embedding or of data
            without voices.
    """
    import keras
    import tensorflow as tf

    from .recipe import check_log_mel_options

    spec = spec or SPECS[recipe.arch]
    recipe = recipe.resolved(spec)
    check_log_mel_options(spec.name, spec.input_kind, recipe.vtlp, recipe.mixup)
    n_classes, mixup, vtlp = data.n_classes, recipe.mixup, recipe.vtlp
    keras.utils.set_random_seed(recipe.seed)
    model = spec.build(data.config.input_shape, n_classes, stats=data.stats)
    if recipe.embedding_norm == "voice":
        return _fit_voice_norm(recipe, data, model)
    opt = keras.optimizers.RMSprop(recipe.lr) if recipe.optimizer == "rmsprop" else keras.optimizers.Adam(recipe.lr)
    # mixup trains on soft targets; the validation targets are then one-hot (the same loss values)
    # (named "accuracy" either way: the progress log, the report and the harness read that key)
    model.compile(optimizer=opt, loss="categorical_crossentropy" if mixup else "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy") if mixup else "accuracy"])
    log.info("%s: %d parameters", model.name, count_params(model))
    weights = balanced_class_weights(data.y_train, n_classes)
    sample_w = np.array([weights[c] for c in data.y_train], dtype=np.float32)
    ds = (tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train, sample_w))
          .shuffle(len(data.y_train), seed=recipe.seed, reshuffle_each_iteration=True))
    if data.log_mel:
        config, factors = data.config, vtlp_factors(vtlp)
        ds = ds.map(lambda x, y, w: (spec_augment(mel_warp(x, config, factors) if vtlp else x), y, w),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(recipe.batch_size)
    val_y = data.y_val
    if mixup:
        ds = ds.map(lambda x, y, w: mixup_batch(x, y, w, mixup, n_classes), num_parallel_calls=tf.data.AUTOTUNE)
        val_y = np.eye(n_classes, dtype=np.float32)[val_y]
    ds = ds.prefetch(2)
    validation = len(data.y_val) > 0
    epochs = recipe.epochs if validation else min(recipe.epochs, EPOCHS_WITHOUT_VALIDATION)
    callbacks = [EpochProgress(epochs), *schedule_callbacks(recipe.schedule, recipe.lr, epochs, recipe.patience,
                                                            recipe.warmup, validation=validation)]
    val_ds = tf.data.Dataset.from_tensor_slices((data.x_val, val_y)).batch(256) if validation else None
    t0 = time.monotonic()
    hist = model.fit(ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=0)
    wall_s = time.monotonic() - t0
    best = best_epoch(hist.history["val_loss"], recipe.warmup) if validation else None
    log.info("trained %d epochs in %.0f s (best epoch %s)", len(hist.history["loss"]), wall_s, best)
    return Fitted(model, hist.history, epochs, best, wall_s, recipe)


def _fit_voice_norm(recipe: Recipe, data: FitData, base) -> Fitted:
    """:func:`fit` for ``embedding_norm = "voice"`` (:mod:`training.voice_norm`): ``base``, as
    built, trained with its pooled embedding standardised per one-voice chunk; returned with the
    training voices' average statistics in place of the chunk statistics."""
    import keras
    import tensorflow as tf

    from .voice_norm import (CHUNK, chunk_standardise_layer, chunked_order, fixed_standardisation, pooled_layer,
                             voice_prior, with_standardisation)

    if data.voices_train is None or (len(data.y_val) and data.voices_val is None):
        raise ValueError("embedding_norm 'voice' needs the voice of every training and validation window")
    chunks = recipe.batch_size // CHUNK
    model = with_standardisation(base, chunk_standardise_layer(chunks))
    n_classes = data.n_classes
    opt = keras.optimizers.RMSprop(recipe.lr) if recipe.optimizer == "rmsprop" else keras.optimizers.Adam(recipe.lr)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    log.info("%s: %d parameters; pooled embedding standardised per chunk of %d windows of one voice (%d voices)",
             model.name, count_params(model), CHUNK, len(np.unique(data.voices_train)))
    weights = balanced_class_weights(data.y_train, n_classes)
    sample_w = np.array([weights[c] for c in data.y_train], dtype=np.float32)
    rng = np.random.default_rng(recipe.seed)
    x, y = data.x_train, data.y_train

    def examples():  # a new chunked order every epoch
        for i in chunked_order(data.voices_train, CHUNK, rng):
            yield x[i], y[i], sample_w[i]

    signature = (tf.TensorSpec(x.shape[1:], tf.float32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32))
    ds = tf.data.Dataset.from_generator(examples, output_signature=signature)
    if data.log_mel:
        config, factors = data.config, vtlp_factors(recipe.vtlp)
        ds = ds.map(lambda xx, yy, ww: (spec_augment(mel_warp(xx, config, factors) if recipe.vtlp else xx), yy, ww))
    # every epoch's order has the same length (each voice in whole chunks): a known number of batches
    steps = len(chunked_order(data.voices_train, CHUNK, np.random.default_rng(0))) // recipe.batch_size
    ds = ds.batch(recipe.batch_size, drop_remainder=True).repeat().prefetch(2)
    validation = len(data.y_val) > 0
    epochs = recipe.epochs if validation else min(recipe.epochs, EPOCHS_WITHOUT_VALIDATION)
    callbacks = [EpochProgress(epochs), *schedule_callbacks(recipe.schedule, recipe.lr, epochs, recipe.patience,
                                                            recipe.warmup, validation=validation)]
    val_ds = None
    if validation:
        order = chunked_order(data.voices_val, CHUNK, np.random.default_rng(recipe.seed + 1))
        val_ds = tf.data.Dataset.from_tensor_slices((data.x_val[order], data.y_val[order])).batch(
            recipe.batch_size, drop_remainder=True)
    t0 = time.monotonic()
    hist = model.fit(ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    wall_s = time.monotonic() - t0
    best = best_epoch(hist.history["val_loss"], recipe.warmup) if validation else None
    log.info("trained %d epochs in %.0f s (best epoch %s)", len(hist.history["loss"]), wall_s, best)
    pooled = keras.Model(base.inputs, pooled_layer(base).output)
    mean, var = voice_prior(pooled.predict(x, batch_size=256, verbose=0), data.voices_train)
    return Fitted(with_standardisation(base, fixed_standardisation(mean, var)), hist.history, epochs, best, wall_s,
                  recipe)


def window_voices(fs: FeatureSet, copy: str = "") -> np.ndarray:
    """The voice of each window of ``fs``: its speaker, with ``copy`` appended for an augmented
    copy (``"room0"``: heard through the first room copy), for ``embedding_norm = "voice"``."""
    speakers = np.array([u.speaker + (f"#{copy}" if copy else "") for u in fs.utterances], dtype=object)
    return speakers[fs.clip_index]


def speaker_normalised(fs: FeatureSet) -> FeatureSet:
    """``fs`` with every speaker's windows standardised per mel band with that speaker's own
    statistics over all of its windows (:func:`training.adaptation.normalise_speakers`, mode
    ``speaker``): what a model trained for causal speaker normalisation learns from."""
    import dataclasses

    from .adaptation import normalise_speakers

    speakers = np.array([u.speaker for u in fs.utterances])[fs.clip_index]
    return dataclasses.replace(fs, log_mels=normalise_speakers(fs.log_mels, speakers, fs.clip_index, frozenset(),
                                                               "speaker"))


def check_exportable(recipe: Recipe) -> None:
    """Refuse a recipe ``training.train`` cannot export for the runtime.

    Raises:
        ValueError: For an architecture that does not take the runtime's log-mel window (train
            it in the harness), or the transductive speaker normalisation ``speaker`` (an upper
            bound measured in the harness; ``causal`` is exported).
    """
    spec = SPECS[recipe.arch]
    if spec.kind != "keras" or spec.input_kind != "log_mel":
        raise ValueError(f"arch = {recipe.arch!r}: training.train exports Keras models on the runtime's log-mel "
                         "window; train it with python -m training.experiments train")
    if recipe.speaker_norm not in ("none", "causal"):
        raise ValueError(f"speaker_norm = {recipe.speaker_norm!r}: it uses every window of a test voice at once, "
                         "which no runtime can; training.train exports none or causal")


def train(recipe: Recipe, data_dir: Path, out: Path, *, name: str = "stream-ser",
          corpora: tuple[str, ...] = ("ravdess", "tess"), split: Path | None = None, cache: Path = Path(".cache"),
          work: Path = Path("runs"), parity_windows: int = 64, command: str = "python -m training.train",
          record: dict | None = None) -> Path:
    """Train on the training speakers of a split with ``recipe`` and export the model to ONNX.

    Args:
        recipe: What to train (:func:`check_exportable`).
        data_dir: Folder of the corpora.
        out: Output folder (``{name}.onnx`` is written in it) or ``.onnx`` path.
        name: File stem of the model, its Keras copy and its history.
        corpora: Corpora to read.
        split: Split JSON (default ``training/splits/si_v1.json``).
        cache: Feature cache folder.
        work: Folder for the Keras model and the history.
        parity_windows: Validation windows of the ONNX parity check.
        command: The command line, recorded in the provenance.
        record: The recipe's record (:func:`training.recipe.recipe_record`; default: this recipe,
            named ``"api"``), stored in the provenance as ``recipe``.

    Returns:
        Path of the exported ONNX model.

    Raises:
        ValueError: See :func:`check_exportable`.
    """
    import keras
    import tensorflow as tf

    from .augment import build_augmented_features
    from .export import export_onnx
    from .recipe import recipe_record
    from .room import ROOM_AUGMENT_VERSION, build_room_features

    check_exportable(recipe)
    recipe = recipe.resolved()
    config = recipe.feature_config()
    split_ = load_split(split)
    utts = [u for u in discover(Path(data_dir), corpora=list(corpora)) if u.label is not None]
    parts = split_.partition(utts)
    for part, items in parts.items():
        log.info("%s: %d clips, %d speakers", part, len(items), len({u.speaker for u in items}))
    fs = build_features(parts["train"] + parts["validation"], config, Path(cache))
    train_fs, val_fs = fs.select(split_.train), fs.select(split_.validation)
    norm_prior = None
    if recipe.speaker_norm == "causal":
        # the runtime's prior: training and validation speakers' windows before normalisation;
        # in training, every speaker standardised with its own statistics
        norm_prior = SpeakerNorm.from_windows(fs.log_mels)
        train_fs, val_fs = speaker_normalised(train_fs), speaker_normalised(val_fs)
    x_train = train_fs.log_mels.astype(np.float32)[..., None]
    y_train = window_labels(train_fs)
    x_val = val_fs.log_mels.astype(np.float32)[..., None]
    y_val = window_labels(val_fs)
    # training speakers only (they are also the babble source of the room copies)
    copies = [(f"aug{c}", build_augmented_features(parts["train"], config, c, Path(cache)))
              for c in range(recipe.augment_copies)]
    copies += [(f"room{c}", build_room_features(parts["train"], config, c, Path(cache)))
               for c in range(recipe.room_copies)]
    voices = [window_voices(train_fs)]
    for tag, extra in copies:
        if recipe.speaker_norm == "causal":  # each speaker's copies with their own statistics
            extra = speaker_normalised(extra)
        x_train = np.concatenate([x_train, extra.log_mels.astype(np.float32)[..., None]])
        y_train = np.concatenate([y_train, window_labels(extra)])
        voices.append(window_voices(extra, tag))
    log.info("windows: train %d, validation %d", len(y_train), len(y_val))
    stats = InputStats(float(x_train.mean()), float(x_train.var()))
    voices_train, voices_val = voice_ids(np.concatenate(voices), window_voices(val_fs))
    fitted = fit(recipe, FitData(x_train, y_train, x_val, y_val, stats, len(EMOTIONS), config,
                                 voices_train=voices_train, voices_val=voices_val))
    model = fitted.model

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    model.save(work / f"{name}.keras")
    (work / f"{name}-history.json").write_text(json.dumps(fitted.history, default=float, indent=1))

    provenance = {
        "architecture": recipe.arch,
        "parameters": count_params(model),
        "data": sorted({u.corpus for u in parts["train"]}),
        "split": split_.name,
        "train_speakers": sorted(split_.train),
        "validation_speakers": sorted(split_.validation),
        "test_speakers": sorted(split_.test),
        "train_windows": int(len(y_train)),
        "epochs_run": len(fitted.history["loss"]),
        "best_epoch": fitted.best_epoch,
        "schedule": recipe.schedule,
        **({"vtlp": recipe.vtlp} if recipe.vtlp else {}),
        **({"mixup": recipe.mixup} if recipe.mixup else {}),
        **({"augment_copies": recipe.augment_copies} if recipe.augment_copies else {}),
        **({"embedding_norm": "voice (in training the pooled embedding standardised per one-voice chunk of each "
                              "batch, training.voice_norm; exported with the training voices' average statistics)"}
           if recipe.embedding_norm == "voice" else {}),
        **({"speaker_norm": "causal (at run time stream_ser.adaptation.SpeakerNormaliser, per channel; in "
                            "training every speaker standardised with its own statistics, training.adaptation)"}
           if recipe.speaker_norm == "causal" else {}),
        **({"room_copies": recipe.room_copies, "room_augment": "training.room v%d" % ROOM_AUGMENT_VERSION}
           if recipe.room_copies else {}),
        "train_wall_s": round(fitted.wall_s, 1),
        "seed": recipe.seed,
        "recipe": record or recipe_record(recipe, "api"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
    }
    # what the model says on average about its training voices: the prior of output adaptation
    prior = OutputPrior.from_probabilities(model.predict(x_train, batch_size=256, verbose=0))
    out = Path(out)
    onnx_path = out / f"{name}.onnx" if out.suffix != ".onnx" else out
    export_onnx(model, onnx_path, EMOTIONS, config, provenance, parity_windows=x_val[:parity_windows, ..., 0],
                speaker_norm=norm_prior, output_prior=prior)
    return onnx_path


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a speech emotion model on RAVDESS + TESS (speaker-independent split) and export it to "
        "ONNX. What it trains is a recipe (training/recipes/, default: shipped); each recipe flag overrides one "
        "of its fields, and the exported model stores the recipe it was trained with.",
        epilog="Examples: python -m training.train --data ../shared/data --out models/   (the shipped recipe)\n"
        "          python -m training.train --data ../shared/data --recipe plateau-8k --seed 2\n"
        "          python -m training.train --data ../shared/data --recipe models/stream-ser-fp32.onnx   "
        "(rebuild a model from its stored recipe)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="folder with ravdess/ and tess/ (e.g. ../shared/data)")
    parser.add_argument("--out", default="models/", help="output folder (or .onnx path) for the exported model")
    parser.add_argument("--name", default="stream-ser", help="model file stem (default: stream-ser)")
    parser.add_argument("--corpora", nargs="*", default=["ravdess", "tess"], help="corpora to train on")
    parser.add_argument("--split", default=None, help="split JSON (default: training/splits/si_v1.json)")
    parser.add_argument("--cache", default=".cache", help="feature cache folder")
    parser.add_argument("--work", default="runs", help="folder for the Keras model and history")
    parser.add_argument("--parity-windows", type=int, default=64, help="validation windows for the ONNX parity check")
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    try:
        recipe, record = recipe_from_args(args)
        check_exportable(recipe)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    path = train(recipe, Path(args.data), Path(args.out), name=args.name, corpora=tuple(args.corpora),
                 split=Path(args.split) if args.split else None, cache=Path(args.cache), work=Path(args.work),
                 parity_windows=args.parity_windows, command="python -m training.train " + " ".join(argv),
                 record=record)
    log.info("exported %s", path)


if __name__ == "__main__":
    main()
