"""Embedding adaptation on the fold protocols: each fold's network with the runtime's adaptation.

The runtime's default adapts the network to the voice through its embedding
(``stream_ser.adaptation.EmbeddingAdapter``; :mod:`training.embedding_adaptation` measures it on
the stream protocol of the fixed split). This module scores it on the speaker-independent fold
protocols of :mod:`training.folds` (``ravdess8``, ``pooled7``, ``loco6``, ...), so that a fold
figure can be set beside the peer baseline's with causal per-speaker standardisation
(:mod:`training.baseline_egemaps`, ``speaker_causal``), which adapts to the voice in the same way.

For one fold and its trained Keras network, with the fold's feature set (the engine's speech
windows of every clip, :mod:`training.windows`):

1. the pooled embedding (output of the network's last global average pooling) of every
   window of the fold's training, validation and test speakers;
2. the ``speaker`` head of :func:`training.embedding_adaptation.fit_speaker_head`, fitted on the
   training speakers' windows (each speaker standardised with its own statistics); its prior is
   their average mean and mean square, weighted as ``prior_windows`` windows (the runtime's
   default, :data:`training.output_prior.DEFAULT_PRIOR_WINDOWS`);
3. each held-out speaker's clips in a fixed random order (``order_seed``; as the baseline's
   ``speaker_causal``), their windows one after another, standardised
   ``causal`` (running statistics of the windows so far, itself included, from the prior: what
   the runtime does on one channel) and ``transductive`` (all of the speaker's windows at once:
   an upper bound a live tool cannot reach); ``training`` standardises every window with the
   prior alone (the head without adaptation: it separates what the head does from what the
   adaptation does);
4. a temperature fitted on the validation speakers' causal windows (Guo et al. 2017), as the
   shipped model carries one;
5. a clip's label: the argmax of the mean tempered probabilities over its speech windows
   (:func:`training.evaluate.clip_predictions`, as ``stream-ser analyse``).

Clips are played one after another without the pauses of the stream protocol: the windows are
the clip-level windows of the fold harness, so the figures sit beside the same fold's
unadapted ones.

**Aligned** modes (:data:`training.embedding_adaptation.ALIGNED_METHODS`) keep the network's
own layers after the pooling and adapt only their input: each window's pooled embedding is
mapped onto the training speakers' average statistics
(:func:`training.embedding_adaptation.aligned_embeddings`), causally or transductively; before
the voice has spoken, it is the network unchanged. Their probabilities are the network's own (no
temperature), like the unadapted figures they sit beside. ``mixed-causal`` averages the
untempered ``causal`` head's and the ``aligned-causal`` probabilities; ``aligned-tuned-causal``
is ``aligned-causal`` with the dense layers refitted on the training speakers' aligned windows
(:func:`training.embedding_adaptation.tune_tail`).

Command (re-scores saved fold networks; ``training.experiments train`` scores new runs itself)::

    python -m training.experiments adapt --data ../shared/data --recipe shipped --protocol ravdess8 \\
        --work runs/folds-shipped
"""

from __future__ import annotations

import numpy as np

from .embedding_adaptation import (ALIGNED_METHODS, MIXED_METHOD, TUNED_METHOD, DenseTail, aligned_heads,
                                   fit_speaker_head, head_probabilities)
from .evaluate import clip_predictions
from .output_prior import DEFAULT_PRIOR_WINDOWS

#: How a held-out speaker's windows are standardised (module docstring), in report order.
MODES: tuple[str, ...] = ("training", "causal", "transductive")
#: Seed of each held-out speaker's clip order (the baseline's ``speaker_causal`` uses seed 0).
ORDER_SEED = 0


def pooled_embeddings(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The output of the Keras network's last global average pooling layer.

    Args:
        model: A trained ``keras.Model`` with a ``GlobalAveragePooling1D/2D`` layer.
        x: float32 ``(n, n_mels, n_frames, 1)`` network input.
        batch_size: Windows per forward pass.

    Returns:
        float64 ``(n, dim)``.

    Raises:
        ValueError: If the network has no global average pooling layer.
    """
    import keras

    from .voice_norm import pooled_layer

    sub = keras.Model(model.inputs, pooled_layer(model).output)
    return np.asarray(sub.predict(x, batch_size=batch_size, verbose=0), np.float64).reshape(len(x), -1)


def keras_dense_tail(model) -> DenseTail:
    """The network's dense layers after its last global average pooling, as a
    :class:`training.embedding_adaptation.DenseTail` (the Keras twin of
    :func:`training.embedding_adaptation.dense_tail`).

    Args:
        model: A trained ``keras.Model`` whose layers after the pooling are dropout (ignored at
            inference), a Dense layer with ReLU, and a Dense layer with softmax, as the pooled CNNs
            of :mod:`training.architectures`.

    Raises:
        ValueError: If the network has no global average pooling layer, or other layers after it.
    """
    from .voice_norm import pooled_layer

    pooled = pooled_layer(model)
    after = [layer for layer in model.layers[model.layers.index(pooled) + 1:]
             if type(layer).__name__ != "Dropout"]
    kinds = [(type(layer).__name__, getattr(getattr(layer, "activation", None), "__name__", None)) for layer in after]
    if kinds != [("Dense", "relu"), ("Dense", "softmax")]:
        raise ValueError(f"expected Dense(relu), Dense(softmax) after the pooling, found {kinds}")
    (w1, b1), (w2, b2) = after[0].get_weights(), after[1].get_weights()
    return DenseTail(np.asarray(w1, np.float64).T, np.asarray(b1, np.float64), np.asarray(w2, np.float64).T,
                     np.asarray(b2, np.float64))


def speaker_orders(speakers: list[str], held_out: set[str], seed: int = ORDER_SEED) -> dict[str, np.ndarray]:
    """Each held-out speaker's clips (indices into ``speakers``) in a fixed random order.

    One generator walks the held-out speakers in sorted order, as
    :func:`training.baseline_egemaps.standardise` does with a fold's test speakers: the same
    seed gives the same order.
    """
    rng = np.random.default_rng(seed)
    spk = np.asarray(speakers)
    out = {}
    for s in sorted(held_out):
        rows = np.flatnonzero(spk == s)
        out[s] = rows[rng.permutation(len(rows))]
    return out


def _stream_windows(clip_index: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Window indices of the clips ``order``, clip after clip, each clip's windows in time order."""
    by_clip = {int(c): np.flatnonzero(clip_index == c) for c in order}
    return np.concatenate([by_clip[int(c)] for c in order]) if len(order) else np.zeros(0, np.int64)


def adapted_probabilities(head: tuple, e: np.ndarray, mode: str, n_labels: int,
                          prior_windows: float = DEFAULT_PRIOR_WINDOWS) -> np.ndarray:
    """Head probabilities ``(n, n_labels)`` of one speaker's windows ``e`` (time order) under
    ``mode`` (:data:`MODES`), by :func:`training.embedding_adaptation.head_probabilities`.

    Raises:
        ValueError: For a mode not in :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
    return head_probabilities({"speaker": head}, f"speaker-{mode}", e, n_labels, prior_windows)


def fold_embedding_adaptation(embeddings: np.ndarray, clip_index: np.ndarray, speakers: list[str],
                              clip_y: np.ndarray, train: set[str], validation: set[str], test: set[str],
                              labels: tuple[str, ...], prior_windows: float = DEFAULT_PRIOR_WINDOWS,
                              order_seed: int = ORDER_SEED, seed: int = 0,
                              tail: DenseTail | None = None) -> dict:
    """Clip predictions of the test speakers with the embedding head, per mode (module docstring).

    Args:
        embeddings: float64 ``(n_windows, dim)``: pooled embedding of every window.
        clip_index: int ``(n_windows,)``: clip of each window (index into ``speakers``).
        speakers: Speaker of each clip.
        clip_y: int ``(n_clips,)``: class index of each clip.
        train, validation, test: The fold's speakers.
        labels: Class names in column order.
        prior_windows: Weight of the prior statistics, in windows.
        order_seed: Seed of each held-out speaker's clip order.
        seed: Seed of the head's solver.
        tail: The network's layers after the pooling (:func:`keras_dense_tail`); with it, the
            :data:`ALIGNED_METHODS` are scored too.

    Returns:
        ``{"temperature": T, "validation_windows": n, "test_clips": int array (order of the
        test clips in ``speakers``), "clip_pred": {mode: [label per test clip]}}``, modes
        :data:`MODES` (and :data:`ALIGNED_METHODS`, ``mixed-causal`` and ``aligned-tuned-causal``
        with ``tail``); a test clip without speech
        windows gets :data:`training.evaluate.NO_SPEECH`.

    Raises:
        ValueError: If a training speaker has no speech window.
    """
    from .temperature import fit_temperature, tempered

    spk = np.asarray(speakers)
    per_speaker = []
    for s in sorted(train):
        rows = np.flatnonzero(np.isin(clip_index, np.flatnonzero(spk == s)))
        if not len(rows):
            raise ValueError(f"training speaker {s} has no speech window")
        per_speaker.append((embeddings[rows], clip_y[clip_index[rows]]))
    head = fit_speaker_head(per_speaker, seed)
    heads = {"speaker": head, **(aligned_heads(tail, per_speaker, seed) if tail is not None else {})}
    # the test speakers' orders as the baseline draws them; the validation speakers' apart
    orders = {**speaker_orders(speakers, set(validation), order_seed + 1), **speaker_orders(speakers, set(test), order_seed)}

    def speaker_probs(s: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
        rows = _stream_windows(clip_index, orders[s])
        return rows, adapted_probabilities(head, embeddings[rows], mode, len(labels), prior_windows)

    temperature, n_val = 1.0, 0
    if validation:
        val = [speaker_probs(s, "causal") for s in sorted(validation)]
        rows = np.concatenate([r for r, _ in val])
        if len(rows):
            n_val = len(rows)
            temperature = fit_temperature(np.concatenate([p for _, p in val]), clip_y[clip_index[rows]])
    test_clips = np.flatnonzero(np.isin(spk, list(test)))
    pos = {int(c): i for i, c in enumerate(test_clips)}
    out = {"temperature": round(float(temperature), 4), "validation_windows": int(n_val),
           "test_clips": test_clips, "clip_pred": {}}
    for mode in MODES + ((*ALIGNED_METHODS, MIXED_METHOD, TUNED_METHOD) if tail is not None else ()):
        probs, local = [], []
        for s in sorted(test):
            if mode in MODES:
                rows, p = speaker_probs(s, mode)
                p = tempered(p, temperature) if len(p) else p
            else:  # untempered, as training.embedding_adaptation scores them
                rows = _stream_windows(clip_index, orders[s])
                p = head_probabilities(heads, mode, embeddings[rows], len(labels), prior_windows)
            probs.append(p)
            local.append([pos[int(c)] for c in clip_index[rows]])
        p = np.concatenate(probs) if probs else np.zeros((0, len(labels)))
        out["clip_pred"][mode] = clip_predictions(p, np.concatenate(local).astype(np.int64), len(test_clips), labels)
    return out
