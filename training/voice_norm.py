"""Training the network for the runtime's embedding adaptation: each voice's embedding
standardised with that voice's own statistics, during training.

The runtime adapts to a voice by standardising the network's pooled embedding with the running
statistics of that voice (``stream_ser.adaptation.EmbeddingAdapter``); the head that reads it
is fitted afterwards on the training speakers' standardised embeddings
(:mod:`training.embedding_adaptation`). A network trained the usual way never saw its embedding
standardised per voice. With the recipe field ``embedding_norm = "voice"`` it does:

- every batch is made of ``batch_size / chunk`` chunks of ``chunk`` consecutive windows, each
  chunk drawn from one *voice* (one training speaker, or one speaker's copy through a room, a
  line or noise, :mod:`training.room`: the runtime adapts to the voice and the channel alike);
- between the global average pooling and the rest of the head, :class:`ChunkStandardise`
  standardises each chunk's pooled embeddings with that chunk's mean and variance (the gradient
  flows through the statistics, as in batch normalisation's training mode: Ioffe & Szegedy 2015;
  per-domain statistics as in AdaBN, Li et al. 2018);
- the validation windows are chunked the same way (fixed order), so the validation loss that
  picks the epoch is measured with per-voice standardisation as well;
- the exported network replaces the chunk statistics with fixed ones, the training voices'
  average mean and variance (:func:`fixed_standardisation`), so it still runs alone
  (``--adapt none|output``). Its ``embedding`` output (the pooled embedding, before the
  standardisation) is what the runtime's adapter standardises per voice.

Chunks of 32 windows (16 s of speech at the 0.5 s hop) hold several emotions of a voice in a
random draw; the runtime's statistics start from a prior of 40 windows and grow.
"""

from __future__ import annotations

import numpy as np

#: Windows per voice chunk in a batch (module docstring).
CHUNK = 32
#: Floor of a chunk's per-dimension variance (as the runtime adapter's, ``MIN_VARIANCE``).
MIN_VARIANCE = 1e-6


def chunk_standardise_layer(chunks: int, name: str = "voice_standardise"):
    """A Keras layer standardising ``(batch, dim)`` embeddings within each of ``chunks`` equal
    consecutive slices of the batch (mean and variance over the slice's rows, per dimension).

    The batch size must be a multiple of ``chunks`` (a static batch: ``drop_remainder=True``).
    """
    import keras
    from keras import ops

    class ChunkStandardise(keras.layers.Layer):
        """(batch, dim) -> (batch, dim), each chunk of the batch standardised on its own."""

        def __init__(self, chunks: int, **kwargs):
            super().__init__(**kwargs)
            self.chunks = chunks

        def call(self, x):
            dim = x.shape[-1]
            g = ops.reshape(x, (self.chunks, -1, dim))
            mean = ops.mean(g, axis=1, keepdims=True)
            var = ops.mean(ops.square(g - mean), axis=1, keepdims=True)
            return ops.reshape((g - mean) / ops.sqrt(ops.maximum(var, MIN_VARIANCE)), (-1, dim))

        def get_config(self):
            return {**super().get_config(), "chunks": self.chunks}

    return ChunkStandardise(chunks, name=name)


def fixed_standardisation(mean: np.ndarray, variance: np.ndarray, name: str = "voice_prior"):
    """A frozen Keras layer computing ``(x - mean) / sqrt(variance + 1e-6)`` per dimension.

    A ``BatchNormalization`` without scale and offset whose moving statistics are ``mean`` and
    ``variance`` (float ``(dim,)``): its weights export through tf2onnx as constants, as every
    other layer's (a ``Normalization`` layer's constants become extra graph inputs).
    """
    import keras

    layer = keras.layers.BatchNormalization(center=False, scale=False, epsilon=MIN_VARIANCE, name=name)
    layer.build((None, len(mean)))
    layer.set_weights([np.asarray(mean, np.float32), np.asarray(variance, np.float32)])
    layer.trainable = False
    return layer


def pooled_layer(model):
    """The network's last global average pooling layer.

    Raises:
        ValueError: If there is none.
    """
    pools = [layer for layer in model.layers if type(layer).__name__.startswith("GlobalAveragePooling")]
    if not pools:
        raise ValueError(f"{model.name}: no global average pooling layer; a pooled CNN is needed")
    return pools[-1]


def head_layers(model) -> list:
    """The layers after the last global average pooling, when they form a single chain to the
    output (dropout, dense, ...).

    Raises:
        ValueError: If the network has no pooling layer or its head is not a single chain.
    """
    pool = pooled_layer(model)
    layers = model.layers[model.layers.index(pool) + 1:]
    previous = pool
    for layer in layers:
        if layer.input is not previous.output:
            raise ValueError(f"{model.name}: the layers after {pool.name} are not one chain ({layer.name})")
        previous = layer
    if not layers or layers[-1].output is not model.outputs[0]:
        raise ValueError(f"{model.name}: the layers after {pool.name} do not end at the output")
    return layers


def with_standardisation(model, standardise):
    """``model`` with ``standardise`` (a Keras layer) between its pooling and its head: the same
    layers and weights, one more layer."""
    import keras

    x = standardise(pooled_layer(model).output)
    for layer in head_layers(model):
        x = layer(x)
    return keras.Model(model.inputs, x, name=model.name)


def voice_ids(*voices: np.ndarray) -> list[np.ndarray]:
    """Integer ids of voice labels (any hashable per window), one array per input, shared ids."""
    allv = np.concatenate([np.asarray(v, dtype=object) for v in voices]) if voices else np.zeros(0, object)
    _, inverse = np.unique(allv.astype(str), return_inverse=True)
    out, start = [], 0
    for v in voices:
        out.append(inverse[start:start + len(v)].astype(np.int64))
        start += len(v)
    return out


def chunked_order(voices: np.ndarray, chunk: int, rng: np.random.Generator) -> np.ndarray:
    """Window indices in chunks of ``chunk``, each chunk from one voice, the chunks shuffled.

    Each voice's windows are shuffled and cut into chunks; a voice's last chunk is completed
    with its first windows again (so every window is used and every chunk is full).

    Args:
        voices: int ``(n,)``: voice id of each window.
        chunk: Windows per chunk.
        rng: Random generator (shuffles).

    Returns:
        int64 ``(n_chunks * chunk,)``.
    """
    chunks = []
    for v in np.unique(voices):
        idx = np.flatnonzero(voices == v)
        rng.shuffle(idx)
        need = (-len(idx)) % chunk
        idx = np.concatenate([idx, np.resize(idx, need)])
        chunks.extend(idx.reshape(-1, chunk))
    if not chunks:
        return np.zeros(0, np.int64)
    return np.concatenate([chunks[i] for i in rng.permutation(len(chunks))]).astype(np.int64)


def voice_prior(embeddings: np.ndarray, voices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training voices' average mean and variance of the embedding (the fixed standardisation
    of the exported network).

    Args:
        embeddings: float ``(n, dim)``.
        voices: int ``(n,)``.

    Returns:
        ``(mean, variance)``, float64 ``(dim,)``: the mean over voices of each voice's mean, and
        the mean of their mean squares minus its square.
    """
    from .embedding_adaptation import average_statistics

    mean, m2 = average_statistics([embeddings[voices == v] for v in np.unique(voices)])
    return mean, np.maximum(m2 - mean * mean, MIN_VARIANCE)
