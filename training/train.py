"""Train an emotion model on RAVDESS + TESS with the committed speaker-independent split.

Usage::

    python -m training.train --data ../shared/data --out models/

Steps: read the corpora (:mod:`training.corpora`), partition them by speaker with the committed
split (:mod:`training.split`; RAVDESS actors 21-24 and TESS YAF are test speakers and are never
seen here, not even for model selection), cut and featurise the engine's windows
(:mod:`training.windows`, cached), train the Keras model with class weights, SpecAugment masks and
early stopping on the validation speakers, then export it to ONNX with its metadata
(:mod:`training.export`). Evaluation on the test speakers is a separate command
(``python -m training.evaluate``) that scores the exported ONNX file through the runtime.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from pathlib import Path

import numpy as np

from stream_ser.adaptation import OutputPrior
from stream_ser.features import SPEECH_GATES, FeatureConfig

from .architectures import ARCHITECTURES, count_params
from .corpora import discover
from .labels import EMOTIONS
from .room import ROOM_AUGMENT_VERSION, build_room_features
from .split import load_split
from .transfer import mn04_ft
from .windows import FeatureSet, build_features

log = logging.getLogger("training.train")

#: Every architecture ``--arch`` accepts: the registry's log-mel models and the fine-tuned
#: pretrained encoder (:mod:`training.transfer`), with its BatchNorm statistics frozen or re-estimated.
BUILDERS = {**ARCHITECTURES, "mn04_ft": mn04_ft,
            "mn04_ft_bn": functools.partial(mn04_ft, freeze_batchnorm=False, name="mn04_ft_bn")}


def feature_config(args: argparse.Namespace):
    """The feature recipe of a training run (``training.train``, ``training.experiments train``).

    Returns:
        :class:`stream_ser.features.FeatureConfig` with the runtime's defaults, except the highest
        mel band edge (Hz) when ``args.fmax`` is given (a lower edge spends the 40 bands below it)
        and the speech gate of the training windows when ``args.speech_gate`` is given.

    Raises:
        ValueError: If ``--fmax`` is not above the lowest band edge or is above the Nyquist frequency.
    """
    import dataclasses

    config = FeatureConfig()
    gate = getattr(args, "speech_gate", None)  # namespaces built by older callers have none
    if gate is not None:
        config = dataclasses.replace(config, speech_gate=gate)
    fmax = getattr(args, "fmax", None)
    if fmax is None:
        return config
    if not config.fmin_hz < fmax:
        raise ValueError(f"--fmax {fmax:g} Hz must be above the lowest band edge ({config.fmin_hz:g} Hz)")
    return dataclasses.replace(config, fmax_hz=float(fmax))


def window_labels(fs: FeatureSet, labels: tuple[str, ...] = EMOTIONS) -> np.ndarray:
    """Class index of each window (the label of its clip), int32 ``(n_windows,)``."""
    clip_y = np.array([labels.index(u.label) for u in fs.utterances], dtype=np.int32)
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
    if not 0.0 <= max_warp < 0.5:
        raise ValueError(f"the VTLP warp must be in [0, 0.5), got {max_warp:g}")
    return np.linspace(1.0 - max_warp, 1.0 + max_warp, grid)


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


def check_mixup(alpha: float) -> float:
    """``alpha`` if it is a usable mixup parameter (0 = off).

    Raises:
        ValueError: If ``alpha`` is negative or above 1 (Zhang et al. found 0.1-0.4 best; above 1
            the mixes are mostly half-and-half).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the mixup alpha must be in [0, 1], got {alpha:g}")
    return alpha


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


#: Learning-rate schedules of ``training.train`` and ``training.experiments train`` (``--schedule``).
SCHEDULES: tuple[str, ...] = ("plateau", "cosine")
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


def train(args: argparse.Namespace) -> Path:
    """Run the whole training; returns the path of the exported ONNX model."""
    import keras
    import tensorflow as tf

    from .export import export_onnx

    keras.utils.set_random_seed(args.seed)
    config = feature_config(args)
    split = load_split(Path(args.split) if args.split else None)
    utts = [u for u in discover(Path(args.data), corpora=args.corpora) if u.label is not None]
    parts = split.partition(utts)
    for name, items in parts.items():
        log.info("%s: %d clips, %d speakers", name, len(items), len({u.speaker for u in items}))
    fs = build_features(parts["train"] + parts["validation"], config, Path(args.cache))
    train_fs, val_fs = fs.select(split.train), fs.select(split.validation)
    x_train = train_fs.log_mels.astype(np.float32)[..., None]
    y_train = window_labels(train_fs)
    x_val = val_fs.log_mels.astype(np.float32)[..., None]
    y_val = window_labels(val_fs)
    room_copies = getattr(args, "room_copies", 0)  # namespaces built by older callers have none
    for copy in range(room_copies):  # training speakers only: they are also the babble source
        room = build_room_features(parts["train"], config, copy, Path(args.cache))
        x_train = np.concatenate([x_train, room.log_mels.astype(np.float32)[..., None]])
        y_train = np.concatenate([y_train, window_labels(room)])
    log.info("windows: train %d, validation %d", len(y_train), len(y_val))
    weights = balanced_class_weights(y_train, len(EMOTIONS))
    log.info("class weights: %s", {EMOTIONS[c]: round(w, 2) for c, w in weights.items()})

    model = BUILDERS[args.arch](
        config.input_shape, len(EMOTIONS), norm_mean=float(x_train.mean()), norm_var=float(x_train.var())
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log.info("%s: %d parameters", model.name, count_params(model))
    sample_w = np.array([weights[c] for c in y_train], dtype=np.float32)
    vtlp = getattr(args, "vtlp", 0.0)  # namespaces built by older callers have none
    factors = vtlp_factors(vtlp)

    def augment(x, y, w):
        return (spec_augment(mel_warp(x, config, factors) if vtlp else x), y, w)

    ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train, sample_w))
        .shuffle(len(y_train), seed=args.seed, reshuffle_each_iteration=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(args.batch_size)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(256)
    schedule = getattr(args, "schedule", "plateau")  # namespaces built by older callers have none
    callbacks = [*schedule_callbacks(schedule, args.lr, args.epochs, args.patience), EpochProgress(args.epochs)]
    t0 = time.monotonic()
    hist = model.fit(ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks, verbose=0)
    wall_s = time.monotonic() - t0
    best_epoch = int(np.argmin(hist.history["val_loss"])) + 1  # the epoch whose weights are kept
    log.info("trained %d epochs in %.0f s (best epoch %d)", len(hist.history["loss"]), wall_s, best_epoch)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model.save(work / f"{args.name}.keras")
    (work / f"{args.name}-history.json").write_text(json.dumps(hist.history, default=float, indent=1))

    provenance = {
        "architecture": args.arch,
        "parameters": count_params(model),
        "data": sorted({u.corpus for u in parts["train"]}),
        "split": split.name,
        "train_speakers": sorted(split.train),
        "validation_speakers": sorted(split.validation),
        "test_speakers": sorted(split.test),
        "train_windows": int(len(y_train)),
        "epochs_run": len(hist.history["loss"]),
        "best_epoch": best_epoch,
        "schedule": schedule,
        **({"vtlp": vtlp} if vtlp else {}),
        **({"room_copies": room_copies, "room_augment": "training.room v%d" % ROOM_AUGMENT_VERSION}
           if room_copies else {}),
        "train_wall_s": round(wall_s, 1),
        "seed": args.seed,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m training.train " + " ".join(args.argv),
    }
    # what the model says on average about its training voices: the prior of output adaptation
    prior = OutputPrior.from_probabilities(model.predict(x_train, batch_size=256, verbose=0))
    out = Path(args.out)
    onnx_path = out / f"{args.name}.onnx" if out.suffix != ".onnx" else out
    export_onnx(model, onnx_path, EMOTIONS, config, provenance, parity_windows=x_val[: args.parity_windows, ..., 0],
                output_prior=prior)
    return onnx_path


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a speech emotion model on RAVDESS + TESS (speaker-independent split) and export it to ONNX.",
        epilog="Example: python -m training.train --data ../shared/data --out models/",
    )
    parser.add_argument("--data", required=True, help="folder with ravdess/ and tess/ (e.g. ../shared/data)")
    parser.add_argument("--out", default="models/", help="output folder (or .onnx path) for the exported model")
    parser.add_argument("--name", default="stream-ser", help="model file stem (default: stream-ser)")
    parser.add_argument("--arch", default="cnn_gap_small", choices=sorted(BUILDERS),
                        help="architecture (default: the shipped one; see training/architectures.py)")
    parser.add_argument("--corpora", nargs="*", default=["ravdess", "tess"], help="corpora to train on")
    parser.add_argument("--split", default=None, help="split JSON (default: training/splits/si_v1.json)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6, help="early-stopping patience (epochs; plateau schedule)")
    parser.add_argument("--schedule", default="plateau", choices=SCHEDULES,
                        help="learning rate: plateau = halve it when the validation loss stalls, stop after --patience "
                        "epochs without improvement (default); cosine = fixed cosine decay to "
                        f"{COSINE_FINAL_FRACTION:g} of --lr over --epochs, all run, the best validation epoch kept")
    parser.add_argument("--fmax", type=float, default=None, metavar="HZ",
                        help="highest mel band edge in Hz (default: the runtime recipe's 8000). The exported model "
                        "carries its recipe in its metadata, and the runtime computes its features with it")
    parser.add_argument("--vtlp", type=float, default=0.0, metavar="W",
                        help="vocal tract length perturbation of the training log-mels: each window's frequency axis "
                        "scaled by a factor drawn from [1-W, 1+W] (Jaitly & Hinton 2013; 0.1 is the usual range; "
                        "default 0 = off)")
    parser.add_argument("--speech-gate", default=None, choices=SPEECH_GATES,
                        help="speech gate the training windows pass (default: the recipe's, vad = the level gate "
                        "and Silero VAD, as the runtime's default --gate; level = the level gate alone, the recipe "
                        "of models made before the VAD)")
    parser.add_argument("--room-copies", type=int, default=0, metavar="N",
                        help="add N copies of the training clips heard through a random room, other talkers, "
                        "white noise and a telephone band (training/room.py; audiomentations + pyroomacoustics; "
                        "cached; default 0 = off)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=".cache", help="feature cache folder")
    parser.add_argument("--work", default="runs", help="folder for the Keras model and history")
    parser.add_argument("--parity-windows", type=int, default=64, help="validation windows for the ONNX parity check")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    try:
        feature_config(args)
        vtlp_factors(args.vtlp)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    path = train(args)
    log.info("exported %s", path)


if __name__ == "__main__":
    main()
