"""Speaker normalisation of the network's embedding, measured on the stream protocol.

The classic result this project keeps meeting: standardising each speaker's features with that
speaker's own statistics is worth more across voices and languages than the classifier
(eGeMAPS + SVM, ``training.baseline_egemaps``; the frozen EfficientAT probe of
``../shared/pretrained/README.md``). The runtime already adapts the network's *output* per
stream (``stream_ser.adaptation.OutputAdapter``) and the training code can standardise the
*log-mel* per speaker (``training.adaptation``). This module measures the third place: the
network's **embedding**, before its last layer.

For a trained model (ONNX, unchanged) it takes two embeddings of every speech window:

- ``pooled``: the output of the last global average pooling (128 values for the shipped
  network);
- ``penultimate``: the input of the last dense layer (64 values after ReLU for the shipped
  network).

and fits a multinomial logistic regression head (scikit-learn, ``C = 1``, balanced class weights)
on the training speakers' windows, in two ways:

- ``global``: every window standardised with the training windows' mean and standard deviation;
- ``speaker``: every training speaker's windows standardised with that speaker's own.

The ``speaker`` head is scored on each test stream three ways: ``causal`` (running mean and
mean square of the stream's speech windows so far, itself included, started from the training
speakers' average statistics weighted as ``prior_windows`` windows: what a live tool can do),
``transductive`` (all of the stream's windows at once: an upper bound) and ``training`` (the
training statistics: no adaptation at all). The network's own output, without and with the
runtime's output adaptation, is scored on the same windows for comparison.

When the graph's dense layers after the pooling can be read (:func:`dense_tail`), the
``pooled`` layer is also scored with the **aligned** head: no new head, but the network's own
dense layers on the embedding mapped onto the training speakers' average mean and
within-speaker spread with the voice's statistics (:func:`aligned_embeddings`;
:data:`ALIGNED_METHODS`), the average of both heads (:data:`MIXED_METHOD`) and the aligned head
with those layers refitted on the training speakers' aligned windows (:func:`tune_tail`,
:data:`TUNED_METHOD`).

Streams are built and scored exactly as in :mod:`training.stream_protocol` (each speaker's
clips shuffled with a fixed seed, 1 s pauses; a clip's label is the argmax of the mean
probabilities of the speech windows that overlap it most). Training speakers' windows are taken
from their own streams, labelled with the clip they overlap most.

Command (validation speakers; figures in the model card)::

    python -m training.embedding_adaptation --data ../shared/data --model models/stream-ser-fp32.onnx \\
        --speakers validation nemo:IC0 nemo:SM0 --out training/results/embedding-adaptation-validation.json

With ``--write-model OUT`` it also writes the model with the ``pooled`` layer's head inside
(``--head speaker``, the default, ``aligned`` or ``aligned-tuned``; :func:`write_model`): the
graph gets a second output ``embedding`` (float32 ``(batch, dim)``), and the metadata an
``embedding_adaptation`` entry (the prior statistics and their weight, the head's weights and
bias, for the aligned heads a hidden layer, and a temperature fitted on the split's validation
speakers' causal windows, Guo et al. 2017), which the runtime's ``EmbeddingAdapter`` applies
per channel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.adaptation import OutputPrior
from stream_ser.model import EmotionModel

from .corpora import discover
from .evaluate import score, scores_to_dict
from .split import load_split
from .output_prior import DEFAULT_PRIOR_WINDOWS
from .stream_protocol import ScoredStream, adapt, build_stream, clip_labels, score_stream, select_speakers

log = logging.getLogger("training.embedding_adaptation")

#: The two embeddings taken from the graph (module docstring).
LAYERS: tuple[str, ...] = ("pooled", "penultimate")
#: Floor of an embedding dimension's variance.
MIN_VARIANCE = 1e-6
#: Heads and how each is applied to a test stream, in report order.
METHODS: tuple[str, ...] = ("global", "speaker-training", "speaker-causal", "speaker-transductive")
#: The network's own dense layers on the voice-aligned pooled embedding (:func:`aligned_embeddings`).
ALIGNED_METHODS: tuple[str, ...] = ("aligned-causal", "aligned-mean-causal", "aligned-transductive")
#: The mean of the ``speaker-causal`` and ``aligned-causal`` probabilities (both untempered).
MIXED_METHOD = "mixed-causal"
#: ``aligned-causal`` through the network's dense layers refitted on aligned training windows
#: (:func:`tune_tail`).
TUNED_METHOD = "aligned-tuned-causal"


def embedding_tensors(model_path: str | Path) -> tuple[bytes, dict[str, str]]:
    """The model's graph with its two embeddings added as outputs.

    ``pooled`` is the output of the last ``GlobalAveragePool`` node, ``penultimate`` the data
    input of the last ``MatMul`` or ``Gemm`` (the last dense layer; float in an int8 model too).

    Returns:
        ``(serialised ONNX, {layer: tensor name})``.

    Raises:
        ValueError: If the graph has no ``GlobalAveragePool`` or no ``MatMul``.
    """
    import onnx

    graph_model = onnx.load(str(model_path))
    nodes = graph_model.graph.node
    pools = [n for n in nodes if n.op_type == "GlobalAveragePool"]
    matmuls = [n for n in nodes if n.op_type in ("MatMul", "Gemm")]
    if not pools or not matmuls:
        raise ValueError(f"{model_path}: no GlobalAveragePool or MatMul/Gemm node; not a pooled CNN with a dense head")
    names = {"pooled": pools[-1].output[0], "penultimate": matmuls[-1].input[0]}
    for name in names.values():
        graph_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return graph_model.SerializeToString(), names


@dataclass(frozen=True)
class DenseTail:
    """The network's layers after its pooling: ``logits = weights @ relu(hidden_weights @ e +
    hidden_bias) + bias`` (the shipped architectures' Dense + ReLU, Dense; softmax follows).

    Attributes:
        hidden_weights: float64 ``(hidden, dim)``.
        hidden_bias: float64 ``(hidden,)``.
        weights: float64 ``(n_classes, hidden)``.
        bias: float64 ``(n_classes,)``.
    """

    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def logits(self, e: np.ndarray) -> np.ndarray:
        """float64 ``(n, n_classes)`` logits of float ``(n, dim)`` pooled embeddings."""
        h = np.maximum(np.asarray(e, np.float64) @ self.hidden_weights.T + self.hidden_bias, 0.0)
        return h @ self.weights.T + self.bias

    def probabilities(self, e: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`logits`, float64 ``(n, n_classes)``."""
        z = self.logits(e)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)


def dense_tail(model_path: str | Path) -> DenseTail:
    """Read the dense layers after the last ``GlobalAveragePool`` of an ONNX graph.

    The chain must be (``Squeeze`` / ``Reshape`` / ``Flatten``), a dense layer (``MatMul`` +
    ``Add`` or ``Gemm``), ``Relu``, a dense layer, then an optional ``Mul`` by a constant (an
    output temperature, left out) and ``Softmax``: how tf2onnx exports
    :func:`training.architectures.cnn_blstm_att` without its LSTM (``cnn_gap_small``). Its weights
    are float initializers in the float32 and in the int8 file (``training.quantize`` leaves the
    dense layers float).

    Raises:
        ValueError: If the graph after the pooling is not that chain.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pools = [n for n in graph.node if n.op_type == "GlobalAveragePool"]
    if not pools:
        raise ValueError(f"{model_path}: no GlobalAveragePool node")

    def follow(name: str):
        """The one node reading ``name`` (the ``embedding`` output added by :func:`write_model` aside)."""
        nxt = [n for n in consumers.get(name, []) if "embedding" not in n.output]
        return nxt[0] if len(nxt) == 1 else None

    def dense(node) -> tuple[np.ndarray, np.ndarray, str]:
        if node is not None and node.op_type == "Gemm" and node.input[1] in init and node.input[2] in init:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise ValueError(f"{model_path}: Gemm {node.name} with transA/alpha/beta is not read")
            w = init[node.input[1]]
            return (w if attrs.get("transB", 0) else w.T), init[node.input[2]], node.output[0]
        if node is not None and node.op_type == "MatMul" and node.input[1] in init:
            add = follow(node.output[0])
            if add is not None and add.op_type == "Add":
                bias = next((init[i] for i in add.input if i in init), None)
                if bias is not None:
                    return init[node.input[1]].T, bias, add.output[0]
        raise ValueError(f"{model_path}: expected a dense layer after the pooling, found "
                         f"{getattr(node, 'op_type', None)}")

    name = pools[-1].output[0]
    node = follow(name)
    while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Squeeze", "Reshape", "Flatten"):
        name = node.output[0]
        node = follow(name)
    w1, b1, name = dense(node)
    relu = follow(name)
    if relu is None or relu.op_type != "Relu":
        raise ValueError(f"{model_path}: expected Relu after the first dense layer")
    w2, b2, name = dense(follow(relu.output[0]))
    return DenseTail(w1, b1.reshape(-1), w2, b2.reshape(-1))


def aligned_embeddings(e: np.ndarray, prior_mean: np.ndarray, prior_var: np.ndarray, mode: str,
                       prior_windows: float = DEFAULT_PRIOR_WINDOWS) -> np.ndarray:
    """One voice's pooled embeddings (time order) mapped onto the training speakers' statistics.

    ``aligned-causal`` and ``aligned-transductive``: ``e' = mu + sd * (e - mu_voice) / sd_voice``;
    ``aligned-mean-causal``: ``e' = e - mu_voice + mu``. ``mu`` is the training speakers'
    average mean, ``sd`` the square root of their average *within-speaker* variance;
    ``mu_voice`` / ``sd_voice`` are the voice's running statistics started from that prior
    weighted as ``prior_windows`` windows (causal: the windows so far, itself included) or all
    of its windows (transductive). Before the voice has spoken ``e' = e``, so the network's own
    layers after the pooling see what they were trained on. Feature alignment in the spirit of
    AdaBN (Li et al. 2016, "Revisiting batch normalization for practical domain adaptation") and
    of CORAL's first two moments (Sun et al. 2016), per voice instead of per domain.

    Args:
        e: float ``(n, dim)``.
        prior_mean: float64 ``(dim,)``.
        prior_var: float64 ``(dim,)``: the average within-speaker variance.
        mode: One of :data:`ALIGNED_METHODS`.
        prior_windows: Weight of the prior in the causal modes, in windows.

    Returns:
        float64 ``(n, dim)``.

    Raises:
        ValueError: For a mode not in :data:`ALIGNED_METHODS`.
    """
    e = np.asarray(e, np.float64)
    sd = np.sqrt(np.maximum(prior_var, MIN_VARIANCE))
    if mode == "aligned-causal":
        return prior_mean + sd * causal_standardise(e, prior_mean, prior_var + prior_mean ** 2, prior_windows)
    if mode == "aligned-mean-causal":
        count = prior_windows + np.arange(1, len(e) + 1)[:, None]
        return e - (prior_windows * prior_mean + np.cumsum(e, axis=0)) / count + prior_mean
    if mode == "aligned-transductive":
        return prior_mean + sd * (e - e.mean(axis=0)) / np.sqrt(np.maximum(e.var(axis=0), MIN_VARIANCE))
    raise ValueError(f"unknown mode {mode!r}; one of {ALIGNED_METHODS}")


def tune_tail(tail: DenseTail, per_speaker: list[tuple[np.ndarray, np.ndarray]], epochs: int = 10,
              learning_rate: float = 1e-3, batch_size: int = 256, seed: int = 0) -> DenseTail:
    """The network's dense layers refitted on the training speakers' *aligned* windows.

    In training, the network's layers after the pooling saw each training speaker's raw
    embeddings, offsets and all; the aligned head feeds them embeddings mapped onto the training
    statistics. Here each training speaker's windows are aligned with that speaker's own
    statistics (``mu + sd * (e - mu_s) / sd_s``, :func:`aligned_embeddings` transductive) and
    the layers, started from the network's weights, are trained on them: softmax
    cross-entropy, balanced class weights, Adam (Keras), a fixed number of epochs (no early
    stopping).

    Args:
        tail: The network's dense layers (:func:`dense_tail`).
        per_speaker: One ``(embeddings float (n, dim), class indices int (n,))`` per training
            speaker.
        epochs, learning_rate, batch_size, seed: The fit.

    Returns:
        The refitted layers.
    """
    import keras

    mean, within = aligned_statistics([e for e, _ in per_speaker])
    x = np.concatenate([aligned_embeddings(e, mean, within, "aligned-transductive") for e, _ in per_speaker])
    y = np.concatenate([np.asarray(lab, np.int64) for _, lab in per_speaker])
    n_classes = len(tail.bias)
    counts = np.bincount(y, minlength=n_classes)
    weights = {k: float(len(y) / (np.count_nonzero(counts) * c)) for k, c in enumerate(counts) if c}
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(x.shape[1],))
    hidden = keras.layers.Dense(len(tail.hidden_bias), activation="relu")
    out = keras.layers.Dense(n_classes, activation="softmax")
    model = keras.Model(inp, out(hidden(inp)))
    hidden.set_weights([tail.hidden_weights.T.astype(np.float32), tail.hidden_bias.astype(np.float32)])
    out.set_weights([tail.weights.T.astype(np.float32), tail.bias.astype(np.float32)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, batch_size=batch_size, epochs=epochs, class_weight=weights, shuffle=True,
              verbose=0)
    (w1, b1), (w2, b2) = hidden.get_weights(), out.get_weights()
    return DenseTail(np.asarray(w1, np.float64).T, np.asarray(b1, np.float64), np.asarray(w2, np.float64).T,
                     np.asarray(b2, np.float64))


def aligned_statistics(per_speaker: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The training speakers' average mean and average within-speaker variance, float64
    ``(dim,)`` each: the target of :func:`aligned_embeddings`."""
    mean, _ = average_statistics(per_speaker)
    return mean, np.mean([np.asarray(e, np.float64).var(axis=0) for e in per_speaker], axis=0)


@dataclass
class StreamEmbeddings:
    """One speaker's stream: its scored speech windows and their embeddings.

    Attributes:
        scored: The stream and the network's raw probabilities (:class:`ScoredStream`).
        embeddings: ``{layer: float64 (n_speech, dim)}``, in time order.
    """

    scored: ScoredStream
    embeddings: dict[str, np.ndarray]


@contextlib.contextmanager
def recorded_windows(model: EmotionModel) -> Iterator[list[np.ndarray]]:
    """Record the log-mel windows the engine gives ``model`` to score while the block runs.

    Yields a list that fills with one float32 ``(n, n_mels, n_frames)`` array per call of
    ``model.predict`` (the engine's speech windows, in order); ``model`` scores as before.
    """
    seen: list[np.ndarray] = []
    predict = model.predict

    def recording(log_mels: np.ndarray) -> np.ndarray:
        seen.append(np.array(log_mels, dtype=np.float32, copy=True).reshape(-1, *np.shape(log_mels)[-2:]))
        return predict(log_mels)

    model.predict = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del model.predict


def embed_stream(model: EmotionModel, session, names: dict[str, str], utts: list, seed: int) -> StreamEmbeddings:
    """Score one speaker's stream with the engine and take the embeddings of the same windows.

    The engine's calls to ``model.predict`` are recorded (the speech windows' log-mels, in
    order), so the embeddings are of exactly the windows the engine scored.

    Raises:
        RuntimeError: If the recorded windows do not match the speech predictions one to one.
    """
    with recorded_windows(model) as seen:
        scored = score_stream(model, build_stream(utts, model.feature_config.sample_rate_hz, seed))
    x = np.concatenate(seen) if seen else np.zeros((0, *model.feature_config.input_shape), np.float32)
    if len(x) != len(scored.probabilities):
        raise RuntimeError(f"{len(x)} windows scored, {len(scored.probabilities)} speech predictions")
    outs = session.run([names[k] for k in LAYERS], {model.metadata.input_name: x[..., None]}) if len(x) else \
        [np.zeros((0, 1)) for _ in LAYERS]
    return StreamEmbeddings(scored, {k: np.asarray(o, np.float64).reshape(len(x), -1) for k, o in zip(LAYERS, outs)})


def causal_standardise(e: np.ndarray, prior_mean: np.ndarray, prior_m2: np.ndarray, prior_windows: float) -> np.ndarray:
    """Standardise each row with the running mean and mean square of the rows so far (itself
    included), started from ``prior_mean`` / ``prior_m2`` weighted as ``prior_windows`` rows.

    Args:
        e: float64 ``(n, dim)`` in time order.
        prior_mean, prior_m2: float64 ``(dim,)``.
        prior_windows: Weight of the prior (rows).
    """
    count = prior_windows + np.arange(1, len(e) + 1)[:, None]
    mean = (prior_windows * prior_mean + np.cumsum(e, axis=0)) / count
    m2 = (prior_windows * prior_m2 + np.cumsum(e * e, axis=0)) / count
    return (e - mean) / np.sqrt(np.maximum(m2 - mean * mean, MIN_VARIANCE))


def _standardise(e: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return (e - mean) / np.sqrt(np.maximum(var, MIN_VARIANCE))


def _logistic_head(features: np.ndarray, y: np.ndarray, seed: int):
    """The head every embedding method fits: multinomial logistic regression (scikit-learn,
    ``C = 1``, balanced class weights)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=seed).fit(features, y)


def fit_speaker_head(per_speaker: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> tuple:
    """The ``speaker`` head: each training speaker's embeddings standardised with that speaker's
    own mean and variance, one logistic-regression head over all of them.

    Args:
        per_speaker: One ``(embeddings float (n, dim), class indices int (n,))`` per training
            speaker.
        seed: Seed of the solver.

    Returns:
        ``(clf, prior_mean, prior_m2)``: the head and the training speakers' average mean and
        mean square, float64 ``(dim,)`` (the prior of :func:`causal_standardise`).
    """
    zs, ys = [], []
    for e, y in per_speaker:
        e = np.asarray(e, np.float64)
        zs.append(_standardise(e, e.mean(axis=0), e.var(axis=0)))
        ys.append(np.asarray(y))
    prior_mean, prior_m2 = average_statistics([e for e, _ in per_speaker])
    return _logistic_head(np.concatenate(zs), np.concatenate(ys), seed), prior_mean, prior_m2


def average_statistics(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The average over groups (speakers, voices) of each group's per-dimension mean and mean
    square: ``(mean, m2)``, float64 ``(dim,)``, each group weighted equally whatever its size."""
    means = [np.asarray(e, np.float64).mean(axis=0) for e in groups]
    m2s = [np.mean(np.square(np.asarray(e, np.float64)), axis=0) for e in groups]
    return np.mean(means, axis=0), np.mean(m2s, axis=0)


def fit_heads(train: list[StreamEmbeddings], labels: tuple[str, ...], layer: str, seed: int = 0,
              tail: DenseTail | None = None) -> dict:
    """The ``global`` and ``speaker`` heads of one layer, and the statistics they apply.

    Args:
        tail: The network's own dense layers (:func:`dense_tail`), for the ``pooled`` layer:
            with it, the ``aligned`` entry.

    Returns:
        ``{"global": (clf, mean, var), "speaker": (clf, prior_mean, prior_m2)}``: the prior is
        the training speakers' average mean and mean square (:func:`fit_speaker_head`); with
        ``tail``, also ``"aligned": (tail, prior_mean, within_variance)``
        (:func:`aligned_statistics`) and ``"aligned-tuned"``, the same with the tail refitted
        (:func:`tune_tail`).
    """
    per_speaker = []
    for s in train:
        keep = s.scored.clip >= 0
        y = np.array([labels.index(s.scored.stream.utterances[c].label) for c in s.scored.clip[keep]], dtype=np.int64)
        per_speaker.append((s.embeddings[layer][keep], y))
    x, y = np.concatenate([e for e, _ in per_speaker]), np.concatenate([y for _, y in per_speaker])
    g_mean, g_var = x.mean(axis=0), x.var(axis=0)
    heads = {"global": (_logistic_head(_standardise(x, g_mean, g_var), y, seed), g_mean, g_var),
             "speaker": fit_speaker_head(per_speaker, seed)}
    if tail is not None:
        heads.update(aligned_heads(tail, per_speaker, seed))
    return heads


def aligned_heads(tail: DenseTail, per_speaker: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> dict:
    """The ``aligned`` and ``aligned-tuned`` entries of a layer's heads (:func:`fit_heads`,
    :func:`head_probabilities`): ``(tail, prior_mean, within_variance)``, the second with the
    tail refitted (:func:`tune_tail`), from the training speakers' ``(embeddings, classes)``."""
    stats = aligned_statistics([e for e, _ in per_speaker])
    return {"aligned": (tail, *stats), "aligned-tuned": (tune_tail(tail, per_speaker, seed=seed), *stats)}


def head_probabilities(heads: dict, method: str, e: np.ndarray, n_labels: int, prior_windows: float) -> np.ndarray:
    """Probabilities ``(n, n_labels)`` of one stream's windows under ``method`` (:data:`METHODS`,
    and :data:`ALIGNED_METHODS`, :data:`MIXED_METHOD` and :data:`TUNED_METHOD` for heads with an
    ``aligned`` entry)."""
    if method == TUNED_METHOD:
        tail, mean, within = heads["aligned-tuned"]
        return tail.probabilities(aligned_embeddings(e, mean, within, "aligned-causal", prior_windows))
    if method == MIXED_METHOD:
        return 0.5 * (head_probabilities(heads, "speaker-causal", e, n_labels, prior_windows)
                      + head_probabilities(heads, "aligned-causal", e, n_labels, prior_windows))
    if method in ALIGNED_METHODS:
        tail, mean, within = heads["aligned"]
        return tail.probabilities(aligned_embeddings(e, mean, within, method, prior_windows))
    if method == "global":
        clf, mean, var = heads["global"]
        z = _standardise(e, mean, var)
    else:
        clf, mean, m2 = heads["speaker"]
        if method == "speaker-training":
            z = _standardise(e, mean, m2 - mean * mean)
        elif method == "speaker-causal":
            z = causal_standardise(e, mean, m2, prior_windows)
        elif method == "speaker-transductive":
            z = _standardise(e, e.mean(axis=0), e.var(axis=0))
        else:
            raise ValueError(f"unknown method {method!r}; one of {METHODS}")
    out = np.zeros((len(e), n_labels))
    out[:, clf.classes_] = clf.predict_proba(z)
    return out


def run(model_path: str | Path, data: Path, speakers: list[str], split_path: Path | None = None, seed: int = 0,
        prior_windows: float = DEFAULT_PRIOR_WINDOWS, prior_sweep: tuple[float, ...] = ()) -> dict:
    """Fit the heads on the split's training speakers and score every speaker's stream.

    Args:
        prior_sweep: Further prior weights (windows) to score the ``pooled/speaker-causal`` row
            with (``prior_sweep`` in the result: ``{weight: {corpus: scores}}``).

    Returns:
        ``{"corpora": {corpus: {row: scores}}, "speakers": {...}, ...}``; rows are
        ``network-none``, ``network-output``, ``LAYER/METHOD`` for every layer and method, and
        ``pooled/ALIGNED_METHOD`` when the graph's dense layers can be read (:func:`dense_tail`).
    """
    import onnxruntime as ort

    model = EmotionModel(model_path)
    labels = model.labels
    graph, names = embedding_tensors(model_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    utts = [u for u in discover(data) if u.label is not None]
    split = load_split(split_path)
    prior = model.metadata.output_prior or OutputPrior(tuple(np.log(np.full(len(labels), 1 / len(labels)))), prior_windows)

    def stream_of(spk: str) -> StreamEmbeddings:
        t0 = time.monotonic()
        out = embed_stream(model, session, names, [u for u in utts if u.speaker == spk], seed)
        log.info("%s: %d speech windows (%.1f s)", spk, len(out.scored.clip), time.monotonic() - t0)
        return out

    try:
        tail = dense_tail(model_path)
    except ValueError as exc:
        tail = None
        log.info("no aligned rows: %s", exc)
    train = [stream_of(s) for s in sorted(split.train)]
    heads = {layer: fit_heads(train, labels, layer, seed, tail if layer == "pooled" else None) for layer in LAYERS}
    validation = {s: stream_of(s) for s in sorted(split.validation)}
    rows = ["network-none", "network-output", *(f"{layer}/{m}" for layer in LAYERS for m in METHODS),
            *(f"pooled/{m}" for m in ((*ALIGNED_METHODS, MIXED_METHOD, TUNED_METHOD) if tail is not None else ()))]
    truth: dict[str, list[str]] = {}
    predicted: dict[tuple[str, str], list[str]] = {}
    per_speaker: dict[str, dict] = {}
    scored: dict[str, list[StreamEmbeddings]] = {}
    swept: dict[tuple[float, str], list[str]] = {}
    for spk in select_speakers(utts, speakers, split):
        s = validation[spk] if spk in validation else stream_of(spk)
        y = [u.label for u in s.scored.stream.utterances]
        corpus = s.scored.stream.utterances[0].corpus
        truth.setdefault(corpus, []).extend(y)
        scored.setdefault(corpus, []).append(s)
        for w in prior_sweep:
            probs = head_probabilities(heads["pooled"], "speaker-causal", s.embeddings["pooled"], len(labels), w)
            swept.setdefault((w, corpus), []).extend(clip_labels(s.scored, probs, labels))
        per_speaker[spk] = {}
        for row in rows:
            if row.startswith("network-"):
                probs = adapt(s.scored.probabilities, row.removeprefix("network-"), prior)
            else:
                layer, method = row.split("/")
                probs = head_probabilities(heads[layer], method, s.embeddings[layer], len(labels), prior_windows)
            pred = clip_labels(s.scored, probs, labels)
            predicted.setdefault((corpus, row), []).extend(pred)
            per_speaker[spk][row] = round(score(y, pred, labels).uar, 4)
    corpora: dict[str, dict] = {}
    for (corpus, row), pred in predicted.items():
        corpora.setdefault(corpus, {})[row] = scores_to_dict(score(truth[corpus], pred, labels))
    sweep: dict[str, dict] = {}
    for (w, corpus), pred in sorted(swept.items()):
        sweep.setdefault(f"{w:g}", {})[corpus] = scores_to_dict(score(truth[corpus], pred, labels))
    return {"rows": rows, "corpora": corpora, "speakers": per_speaker, "embeddings": names,
            "train_speakers": sorted(split.train), "prior_windows": prior_windows, "seed": seed,
            **({"prior_sweep": sweep} if sweep else {}),
            "_heads": heads, "_validation": list(validation.values()), "_scored": scored}


def causal_head_windows(heads: dict, streams: list[StreamEmbeddings], labels: tuple[str, ...],
                        prior_windows: float, method: str = "speaker-causal") -> tuple[np.ndarray, np.ndarray]:
    """The ``pooled`` head's causal probabilities (``method``: ``speaker-causal`` or
    ``aligned-causal``) of the streams' windows that overlap a clip, float ``(n, n_labels)``, and
    each window's class index (its clip's), int ``(n,)``."""
    probs, ys = [], []
    for s in streams:
        keep = s.scored.clip >= 0
        p = head_probabilities(heads["pooled"], method, s.embeddings["pooled"], len(labels), prior_windows)
        probs.append(p[keep])
        ys.extend(labels.index(s.scored.stream.utterances[c].label) for c in s.scored.clip[keep])
    return np.concatenate(probs), np.asarray(ys, dtype=np.int64)


def fit_head_temperature(heads: dict, validation: list[StreamEmbeddings], labels: tuple[str, ...],
                         prior_windows: float, method: str = "speaker-causal") -> tuple[float, dict]:
    """The temperature of the ``pooled`` head (``method`` as :func:`causal_head_windows`),
    fitted on the validation streams' causal windows (:func:`training.temperature.fit_temperature`),
    and the ECE before and after.

    Returns:
        ``(T, {"windows", "ece_before", "ece_after"})``.
    """
    from .temperature import expected_calibration_error, fit_temperature, tempered

    p, y = causal_head_windows(heads, validation, labels, prior_windows, method)
    t = fit_temperature(p, y)
    return t, {"windows": int(len(y)), "ece_before": round(expected_calibration_error(p, y), 4),
               "ece_after": round(expected_calibration_error(tempered(p, t), y), 4)}


def temperature_check(heads: dict, validation: list[StreamEmbeddings], scored: dict[str, list[StreamEmbeddings]],
                      labels: tuple[str, ...], prior_windows: float) -> dict:
    """The head's temperature fitted two ways, and the window ECE of each on every corpus scored.

    ``split validation``: on the split's validation speakers (what ``--write-model`` ships);
    ``all scored speakers``: on every stream of ``scored`` pooled (e.g. validation speakers of
    several languages).

    Returns:
        ``{way: {"temperature": T, "ece": {corpus: ECE}}}``, plus ``"untempered": {"ece": ...}``.
    """
    from .temperature import expected_calibration_error, tempered

    everyone = [s for streams in scored.values() for s in streams]
    ways = {"split validation": fit_head_temperature(heads, validation, labels, prior_windows)[0],
            "all scored speakers": fit_head_temperature(heads, everyone, labels, prior_windows)[0]}
    out: dict[str, dict] = {"untempered": {"temperature": 1.0, "ece": {}}}
    out.update({way: {"temperature": round(t, 4), "ece": {}} for way, t in ways.items()})
    for corpus, streams in scored.items():
        p, y = causal_head_windows(heads, streams, labels, prior_windows)
        for way, entry in out.items():
            entry["ece"][corpus] = round(expected_calibration_error(tempered(p, entry["temperature"]), y), 4)
    return out


def aligned_entry(tail: DenseTail, prior_mean: np.ndarray, within_var: np.ndarray) -> dict:
    """The aligned head as the runtime's ``embedding_adaptation`` fields: the mapping
    ``e' = mu + sd * z`` of the standardised embedding ``z`` (:func:`aligned_embeddings`) folded
    into the network's first dense layer, ``relu(W1 e' + b1) = relu((W1 * sd) z + (W1 mu + b1))``,
    and the prior statistics whose variance is the within-speaker one (so that before a voice
    has spoken, the network's own output is unchanged).

    Returns:
        ``{"prior_mean", "prior_mean_square", "hidden_weights", "hidden_bias", "weights",
        "bias"}``, float64 arrays.
    """
    sd = np.sqrt(np.maximum(within_var, MIN_VARIANCE))
    return {"prior_mean": prior_mean, "prior_mean_square": within_var + prior_mean ** 2,
            "hidden_weights": tail.hidden_weights * sd[None, :],
            "hidden_bias": tail.hidden_weights @ prior_mean + tail.hidden_bias,
            "weights": tail.weights, "bias": tail.bias}


#: The heads :func:`write_model` writes: ``speaker`` (a logistic regression on the
#: speaker-standardised embedding) and ``aligned`` (the network's own dense layers on the
#: voice-aligned embedding, :func:`aligned_entry`) or ``aligned-tuned`` (those layers refitted,
#: :func:`tune_tail`).
HEADS: tuple[str, ...] = ("speaker", "aligned", "aligned-tuned")


def write_model(model_path: str | Path, out: str | Path, heads: dict, prior_windows: float, temperature: float,
                facts: dict, head: str = "speaker") -> Path:
    """Write the model at ``model_path`` to ``out`` with the ``pooled`` layer's ``head`` inside
    (:data:`HEADS`).

    The graph gets an output ``embedding`` (float32 ``(batch, dim)``: a ``Flatten`` of the last
    global average pooling), and the metadata an ``embedding_adaptation`` entry: ``output``,
    ``prior_mean``, ``prior_mean_square`` (the training speakers' average per-dimension mean and
    mean square; for ``aligned``, the mean square of the average within-speaker variance),
    ``prior_windows``, ``weights`` (``n_classes`` rows, in label order), ``bias``,
    ``temperature`` and, for ``aligned``, ``hidden_weights`` and ``hidden_bias``; ``facts`` go
    to the provenance under the same key.

    Returns:
        The path written.

    Raises:
        ValueError: For a head not in :data:`HEADS`, or ``aligned`` without an ``aligned``
            entry in ``heads["pooled"]``.
    """
    import onnx

    from stream_ser.metadata import METADATA_KEY

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; one of {HEADS}")
    if head != "speaker" and head not in heads["pooled"]:
        raise ValueError("no aligned head: the graph's dense layers after the pooling could not be read")
    proto = onnx.load(str(model_path))
    clf, mean, m2 = heads["pooled"]["speaker"]
    if "embedding" not in {o.name for o in proto.graph.output}:
        pooled = [n for n in proto.graph.node if n.op_type == "GlobalAveragePool"][-1].output[0]
        proto.graph.node.append(onnx.helper.make_node("Flatten", [pooled], ["embedding"], axis=1,
                                                      name="embedding_flatten"))
        proto.graph.output.append(onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT,
                                                                     ["batch", len(mean)]))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(entry.value)
    labels_n = len(meta["labels"])
    weights = np.zeros((labels_n, len(mean)))
    bias = np.full(labels_n, -30.0)  # a class the head never saw in training: never chosen
    weights[clf.classes_] = clf.coef_
    bias[clf.classes_] = clf.intercept_
    fields = {"prior_mean": mean, "prior_mean_square": m2, "weights": weights, "bias": bias}
    if head != "speaker":
        fields = aligned_entry(*heads["pooled"][head])
    meta["embedding_adaptation"] = {
        "output": "embedding", "prior_windows": float(prior_windows), "temperature": float(temperature),
        **{k: np.asarray(v, np.float64).tolist() for k, v in fields.items()}}
    meta.setdefault("provenance", {})["embedding_adaptation"] = facts
    entry.value = json.dumps(meta)
    onnx.checker.check_model(proto)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(target))
    return target


def markdown(result: dict) -> str:
    """Clip UAR per row (columns: corpora)."""
    corpora = list(result["corpora"])
    lines = ["| head / normalisation | " + " | ".join(f"{c} UAR" for c in corpora) + " |",
             "| --- | " + " | ".join("---:" for _ in corpora) + " |"]
    for row in result["rows"]:
        lines.append(f"| {row} | " + " | ".join(f"{result['corpora'][c][row]['uar']:.3f}" for c in corpora) + " |")
    for w, per in result.get("prior_sweep", {}).items():
        lines.append(f"| pooled/speaker-causal, prior {w} windows | "
                     + " | ".join(f"{per[c]['uar']:.3f}" for c in corpora) + " |")
    if "temperature_check" in result:
        lines += ["", "| temperature fitted on | T | " + " | ".join(f"{c} window ECE" for c in corpora) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in corpora) + " |"]
        for way, entry in result["temperature_check"].items():
            lines.append(f"| {way} | {entry['temperature']:.3f} | "
                         + " | ".join(f"{entry['ece'][c]:.3f}" for c in corpora) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m training.embedding_adaptation", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="folder of the corpora (ravdess/, tess/, nemo/)")
    p.add_argument("--model", required=True, help="float32 ONNX model with a pooled embedding and a dense head")
    p.add_argument("--speakers", nargs="+", default=["validation"],
                   help="'validation', 'test', a corpus name or speaker ids (as training.stream_protocol)")
    p.add_argument("--split", type=Path, default=None, help="split JSON (default: training/splits/si_v1.json)")
    p.add_argument("--prior-windows", type=float, default=DEFAULT_PRIOR_WINDOWS,
                   help="weight of the training statistics in the causal running statistics, in windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    p.add_argument("--write-model", type=Path, default=None, metavar="OUT.onnx",
                   help="also write --model with the pooled-embedding head inside (its temperature fitted on the "
                   "split's validation speakers), for the runtime's embedding adaptation")
    p.add_argument("--head", choices=HEADS, default="speaker",
                   help="the head --write-model writes: 'speaker', a logistic regression on the speaker-standardised "
                   "embedding; 'aligned', the network's own dense layers on the embedding mapped onto the "
                   "training speakers' statistics; 'aligned-tuned', those layers refitted on the training speakers' "
                   "aligned windows (default: %(default)s)")
    p.add_argument("--prior-sweep", type=float, nargs="+", default=(), metavar="W",
                   help="also score the pooled/speaker-causal head with these prior weights (windows)")
    p.add_argument("--temperature-check", action="store_true",
                   help="also fit the head's temperature on every scored speaker and give each corpus's window "
                   "ECE with it, with the split's validation temperature and untempered")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run(args.model, args.data, args.speakers, args.split, args.seed, args.prior_windows,
                 tuple(args.prior_sweep))
    heads, validation, scored = result.pop("_heads"), result.pop("_validation"), result.pop("_scored")
    result["command"] = "python -m training.embedding_adaptation " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.temperature_check:
        labels = EmotionModel(args.model).labels
        result["temperature_check"] = temperature_check(heads, validation, scored, labels, args.prior_windows)
    print(markdown(result))
    if args.write_model is not None:
        labels = EmotionModel(args.model).labels
        method = {"speaker": "speaker-causal", "aligned": "aligned-causal", "aligned-tuned": TUNED_METHOD}[args.head]
        t, calibration = fit_head_temperature(heads, validation, labels, args.prior_windows, method)
        described = {"speaker": "logistic regression, C = 1, balanced class weights (scikit-learn), on the training "
                     "speakers' windows, each speaker standardised with its own statistics",
                     "aligned": "the network's own dense layers after the pooling, on the embedding standardised "
                     "with the voice's running statistics and mapped onto the training speakers' average mean and "
                     "within-speaker spread",
                     "aligned-tuned": "the aligned head with the network's dense layers refitted on the training "
                     "speakers' aligned windows (balanced class weights, Adam 1e-3, 10 epochs)"}
        facts = {"command": result["command"], "layer": "pooled", "head": described[args.head],
                 "train_speakers": result["train_speakers"],
                 "temperature_fitted_on": "validation speakers' stream windows, causal statistics",
                 "calibration": calibration}
        result["written"] = {"path": str(write_model(args.model, args.write_model, heads, args.prior_windows, t,
                                                     facts, args.head)), "head": args.head, "temperature": t,
                             **calibration}
        log.info("wrote %s (temperature %.3f, ECE %.3f -> %.3f on %d validation windows)", args.write_model, t,
                 calibration["ece_before"], calibration["ece_after"], calibration["windows"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
