"""Keras model architectures (TensorFlow; training only, never imported by the runtime).

Each builder takes the log-mel input shape ``(n_mels, n_frames)`` from the feature config and
the number of classes, and returns an uncompiled ``keras.Model`` whose input is float32
``(batch, n_mels, n_frames, 1)`` in dB and whose output is softmax probabilities, so that the
exported ONNX graph contains the softmax. Input standardisation (a scalar mean and variance
learned from the training windows) is the first layer, so it travels inside the model too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def crnn_attention(
    input_shape: tuple[int, int],
    n_classes: int,
    filters: tuple[int, ...] = (32, 64, 128),
    rnn_units: int = 64,
    dropout: float = 0.25,
    l2: float = 1e-4,
    norm_mean: float = 0.0,
    norm_var: float = 1.0,
):
    """CNN -> bidirectional LSTM -> attention pooling -> softmax.

    The published CNN-BLSTM-attention SER recipe (Conv2D -> BatchNorm -> MaxPool -> Dropout
    blocks with growing filters, a BiLSTM over time, additive attention pooling over time steps,
    softmax; e.g. Zhao, Mao & Chen 2019, "Speech emotion recognition using deep 1D & 2D CNN LSTM
    networks", and Mirsamadi, Barsoum & Zhang 2017, "Automatic speech emotion recognition using
    recurrent neural networks with local attention"), kept small for 2-core CPU training and
    real-time scoring: 3 blocks of 32/64/128 filters and 64 LSTM units per direction.

    The time axis has a fixed length (no masking): tf2onnx has had BiLSTM bugs on
    dynamic-mask paths (tensorflow-onnx #2211, #2221).

    Args:
        input_shape: ``(n_mels, n_frames)``.
        n_classes: Number of output classes.
        filters: Filters of each Conv2D block (3x3 kernels, ReLU, 2x2 max-pooling).
        rnn_units: LSTM units per direction.
        dropout: Dropout after each block and before the classifier.
        l2: L2 weight decay on conv and dense kernels.
        norm_mean: Mean of the training log-mels (dB), subtracted at the input.
        norm_var: Variance of the training log-mels, divided out at the input.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers, regularizers

    n_mels, n_frames = input_shape
    reg = regularizers.l2(l2) if l2 else None
    inp = keras.Input((n_mels, n_frames, 1), name="log_mel")
    # plain Python floats, so the constants are folded into the graph (a Normalization layer's
    # captured tensors became extra graph inputs in tf2onnx 1.17)
    std = float(np.sqrt(norm_var))
    x = layers.Rescaling(scale=1.0 / std, offset=-norm_mean / std, name="standardise")(inp)
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    # (batch, mels', frames', channels) -> (batch, frames', mels' * channels): time-major sequence
    x = layers.Permute((2, 1, 3), name="time_major")(x)
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]), name="sequence")(x)
    x = layers.Bidirectional(layers.LSTM(rnn_units, return_sequences=True), name="bilstm")(x)
    # additive attention pooling over time (Bahdanau-style scores, softmax over time steps)
    score = layers.Dense(rnn_units, activation="tanh", name="att_hidden")(x)
    score = layers.Dense(1, use_bias=False, name="att_score")(score)
    score = layers.Flatten(name="att_flat")(score)
    weights = layers.Softmax(name="att_weights")(score)
    x = layers.Dot(axes=1, name="att_pool")([weights, x])
    x = layers.Dropout(dropout, name="drop_head")(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=reg, name="dense")(x)
    out = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="crnn_attention")


#: Architecture registry: name -> builder(input_shape, n_classes, norm_mean=, norm_var=).
ARCHITECTURES: dict[str, Callable] = {"crnn_attention": crnn_attention}


def count_params(model) -> int:
    """Trainable + non-trainable parameters of a Keras model."""
    return int(sum(np.prod(w.shape) for w in model.weights))
