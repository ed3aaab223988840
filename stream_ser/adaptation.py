"""Causal speaker normalisation of log-mel windows: running per-band statistics of one voice.

Speaker differences dominate speaker-independent SER: the same emotion sits at a
different spectral level and spread for every voice. A model trained with per-speaker, per-band
standardised log-mels (the log-mel analogue of cepstral mean and variance normalisation; Viikki
& Laurila 1998, Speech Communication 25: 133-147) needs, at run time, statistics of the voice it
is hearing. This module keeps them **causally**, per channel: every speech window first adds its
per-band mean and mean square (over its frames) to running sums that start from the training
speakers' pooled statistics with a weight of ``prior_windows`` windows, then is standardised
with the running mean and standard deviation, itself included. Nothing comes from the future or
from labels; the first windows of a new voice lean on the training statistics and the voice's
own take over after a few seconds of speech.

It is exactly the ``causal`` mode of ``training.adaptation.normalise_speakers`` (tested against
it), so a model trained with that mode sees at run time what it saw for its validation and test
speakers. A model that needs it says so in its metadata (:class:`SpeakerNorm`); the engine then
keeps one :class:`SpeakerNormaliser` per channel.

The same idea applies after the network, for any model that carries what it needs (its
metadata says so; ``stream-ser info`` shows it), one adapter per channel, chosen with ``adapt``
(``--adapt``, :func:`resolve_adapt`):

- ``embedding`` (:class:`EmbeddingAdapter`, the default for a model with an
  ``embedding_adaptation``): the network's pooled embedding standardised with the voice's
  running statistics, then a head (``training.embedding_adaptation``): a linear head fitted on
  speaker-standardised training embeddings, or the network's own dense layers applied to the
  embedding mapped onto the training speakers' statistics (the *aligned* head);
- ``output`` (:class:`OutputAdapter`, the default for a model with only an ``output_prior``):
  the voice's running shift of the log-probabilities removed;
- ``none``: the network's own probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Floor of the per-band variance (dB^2), as in training.
MIN_VARIANCE_DB2 = 1e-6


@dataclass(frozen=True)
class SpeakerNorm:
    """The prior of causal speaker normalisation, carried in the model metadata.

    Attributes:
        prior_mean_db: Per mel band, the mean over training windows of each window's mean level
            over its frames (dB), ``n_mels`` values.
        prior_mean_square_db2: The same for the mean square (dB^2).
        prior_windows: Weight of the prior in windows (10 = 5 s of speech at the 0.5 s hop).

    Raises:
        ValueError: If the two vectors differ in length or are empty, a variance would be
            negative, or ``prior_windows`` is not positive.
    """

    prior_mean_db: tuple[float, ...]
    prior_mean_square_db2: tuple[float, ...]
    prior_windows: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prior_mean_db", tuple(float(v) for v in self.prior_mean_db))
        object.__setattr__(self, "prior_mean_square_db2", tuple(float(v) for v in self.prior_mean_square_db2))
        if not self.prior_mean_db or len(self.prior_mean_db) != len(self.prior_mean_square_db2):
            raise ValueError("prior_mean_db and prior_mean_square_db2 must be non-empty and of equal length")
        mu, m2 = np.array(self.prior_mean_db), np.array(self.prior_mean_square_db2)
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(m2)) and np.all(m2 - mu**2 > -1e-6 * (1 + m2))):
            raise ValueError("the prior statistics are not finite or give a negative variance")
        if not self.prior_windows > 0:
            raise ValueError(f"prior_windows must be positive, got {self.prior_windows}")

    @property
    def n_mels(self) -> int:
        """Number of mel bands."""
        return len(self.prior_mean_db)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the ``speaker_norm`` entry of the model metadata)."""
        return {
            "mode": "causal",
            "prior_mean_db": list(self.prior_mean_db),
            "prior_mean_square_db2": list(self.prior_mean_square_db2),
            "prior_windows": self.prior_windows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SpeakerNorm":
        """Parse :meth:`to_dict` output.

        Raises:
            ValueError: If the mode is not ``causal`` or a field is missing or invalid.
        """
        if data.get("mode") != "causal":
            raise ValueError(f"unknown speaker normalisation mode {data.get('mode')!r}")
        try:
            return cls(data["prior_mean_db"], data["prior_mean_square_db2"], float(data["prior_windows"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"speaker normalisation entry is incomplete: {exc}") from None

    @classmethod
    def from_windows(cls, log_mels: np.ndarray, prior_windows: float = 10.0) -> "SpeakerNorm":
        """The prior from training windows ``(n, n_mels, n_frames)`` (dB), as training computes it."""
        x = np.asarray(log_mels, dtype=np.float64)
        return cls(tuple(x.mean(axis=(0, 2))), tuple((x**2).mean(axis=2).mean(axis=0)), prior_windows)


class _RunningMoments:
    """Running per-dimension mean and mean square started from a prior weighted as
    ``prior_windows`` windows: what :class:`SpeakerNormaliser` and :class:`EmbeddingAdapter`
    keep of a voice.

    Args:
        mean0, mean_square0: float ``(dim,)``, the prior's mean and mean square.
        prior_windows: The prior's weight in windows (> 0).
        min_variance: Floor of the variance before its square root.
    """

    def __init__(self, mean0, mean_square0, prior_windows: float, min_variance: float) -> None:
        self._mean0 = np.asarray(mean0, dtype=np.float64)
        self._m20 = np.asarray(mean_square0, dtype=np.float64)
        self._w = prior_windows
        self._floor = min_variance
        self.reset()

    def reset(self) -> None:
        """Back to the prior."""
        self._sum, self._sum_sq, self._n = self._w * self._mean0, self._w * self._m20, self._w
        self.windows = 0

    def add(self, mean: np.ndarray, mean_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one window's ``mean`` and ``mean_square`` (float64 ``(dim,)``); returns the running
        ``(mean, standard deviation)`` with it included, float64 ``(dim,)`` each."""
        self._sum = self._sum + mean
        self._sum_sq = self._sum_sq + mean_square
        self._n += 1
        self.windows += 1
        mu = self._sum / self._n
        return mu, np.sqrt(np.maximum(self._sum_sq / self._n - mu * mu, self._floor))


class _Voice:
    """What the per-channel adapters share: the voice's :class:`_RunningMoments` (``_moments``)."""

    _moments: _RunningMoments

    @property
    def windows(self) -> int:
        """Speech windows taken since the last :meth:`reset`."""
        return self._moments.windows

    def reset(self) -> None:
        """Forget the voice: back to the training prior (a new speaker, a new file)."""
        self._moments.reset()


class SpeakerNormaliser(_Voice):
    """Running per-band statistics of one channel's speech windows (see the module docstring).

    Args:
        norm: The model's prior.

    Thread: used by one thread (the engine's).
    """

    def __init__(self, norm: SpeakerNorm) -> None:
        self.norm = norm
        self._moments = _RunningMoments(norm.prior_mean_db, norm.prior_mean_square_db2, norm.prior_windows,
                                        MIN_VARIANCE_DB2)

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        """Add one speech window to the statistics, then standardise it with them.

        Args:
            log_mel: ``(n_mels, n_frames)`` dB, the output of the feature recipe.

        Returns:
            float32 ``(n_mels, n_frames)``: per band, (level - running mean) / running std.

        Raises:
            ValueError: If the number of bands differs from the prior's.
        """
        x = np.asarray(log_mel)
        if x.ndim != 2 or x.shape[0] != self.norm.n_mels:
            raise ValueError(f"expected a log-mel of shape ({self.norm.n_mels}, n_frames), got {x.shape}")
        x64 = x.astype(np.float64)
        mu, sd = self._moments.add(x64.mean(axis=1), (x64**2).mean(axis=1))
        return ((x64 - mu[:, None]) / sd[:, None]).astype(np.float32)


@dataclass(frozen=True)
class OutputPrior:
    """What a model says on average about the voices it was trained on: the prior of
    :class:`OutputAdapter`, carried in the model metadata (``output_prior``).

    Attributes:
        mean_log_prob: Per class, in the model's label order, the mean over training speech
            windows of the natural log of the model's probability; only differences between
            classes matter (:meth:`from_probabilities` centres it, the adapter centres it again).
        prior_windows: Weight of the prior in windows (at the 0.5 s hop, 40 windows = 20 s of
            speech before a voice's own statistics weigh as much as the prior).

    Raises:
        ValueError: If ``mean_log_prob`` has fewer than two classes or is not finite, or
            ``prior_windows`` is not positive and finite.
    """

    mean_log_prob: tuple[float, ...]
    prior_windows: float = 40.0

    def __post_init__(self) -> None:
        values = np.asarray([float(v) for v in self.mean_log_prob], dtype=np.float64)
        if values.size < 2 or not np.all(np.isfinite(values)):
            raise ValueError("mean_log_prob must hold at least two finite values")
        object.__setattr__(self, "mean_log_prob", tuple(float(v) for v in values))
        if not (np.isfinite(self.prior_windows) and self.prior_windows > 0):
            raise ValueError(f"prior_windows must be positive and finite, got {self.prior_windows}")

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.mean_log_prob)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the ``output_prior`` entry of the model metadata)."""
        return {"mean_log_prob": list(self.mean_log_prob), "prior_windows": self.prior_windows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OutputPrior":
        """Parse :meth:`to_dict` output.

        Raises:
            ValueError: If a field is missing or invalid.
        """
        try:
            return cls(tuple(data["mean_log_prob"]), float(data["prior_windows"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"output prior entry is incomplete: {exc}") from None

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, prior_windows: float = 40.0) -> "OutputPrior":
        """The prior from the model's probabilities on training speech windows.

        Args:
            probabilities: float ``(n_windows, n_classes)``, each row a softmax output.
            prior_windows: Weight of the prior in windows.
        """
        p = np.asarray(probabilities, dtype=np.float64)
        mean = np.log(np.maximum(p, PROBABILITY_FLOOR)).mean(axis=0)
        return cls(tuple(mean - mean.mean()), prior_windows)


#: Floor of a probability before its log (the model's float32 softmax can round to 0).
PROBABILITY_FLOOR = 1e-12


class OutputAdapter:
    """Causal adaptation of a model's output to one voice: running log-probability centring.

    A voice the model never heard shifts all of its windows toward the same classes (a new
    speaker, language or microphone; "every window is fear"). Per class, the adapter keeps the
    running mean of the log-probabilities of this channel's speech windows, starting from the
    training mean (:class:`OutputPrior`) with a weight of ``prior_windows`` windows, and
    subtracts the voice's shift from that mean before the softmax:

    ``adapted = softmax(log p - (running mean - training mean))``

    The window itself is added to the running mean first. With no speech heard yet the output is
    the model's own; the voice's own statistics take over gradually. This is the output-side
    counterpart of per-speaker feature normalisation (the causal mean normalisation of
    Viikki & Laurila 1998, applied to log-probabilities, i.e. to logits up to a per-window
    constant) and assumes what a conversation usually holds: over tens of seconds a voice shows
    several emotions. A long stretch of one emotion is pulled toward the others over time.

    Args:
        prior: The model's training statistics.

    Thread: used by one thread (the engine's model thread).
    """

    def __init__(self, prior: OutputPrior) -> None:
        self.prior = prior
        mean0 = np.asarray(prior.mean_log_prob, dtype=np.float64)
        self._mean0 = mean0 - mean0.mean()
        self.reset()

    def reset(self) -> None:
        """Forget the voice: back to the training prior."""
        self._sum = self.prior.prior_windows * self._mean0
        self._n = self.prior.prior_windows
        self.windows = 0

    @property
    def shift(self) -> np.ndarray:
        """float64 ``(n_classes,)``: the voice's current shift of the centred log-probabilities."""
        return self._sum / self._n - self._mean0

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        """Add one speech window to the statistics, then return its adapted probabilities.

        Args:
            probabilities: ``(n_classes,)`` softmax output of the model for one speech window.

        Returns:
            float32 ``(n_classes,)``, non-negative, summing to 1.

        Raises:
            ValueError: If the number of classes differs from the prior's.
        """
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (self.prior.n_classes,):
            raise ValueError(f"expected {self.prior.n_classes} probabilities, got shape {p.shape}")
        log_p = np.log(np.maximum(p, PROBABILITY_FLOOR))
        self._sum = self._sum + (log_p - log_p.mean())
        self._n += 1
        self.windows += 1
        z = log_p - self.shift
        z = np.exp(z - z.max())
        return (z / z.sum()).astype(np.float32)


#: Floor of an embedding dimension's running variance, as in training
#: (``training.embedding_adaptation.MIN_VARIANCE``).
MIN_EMBEDDING_VARIANCE = 1e-6


@dataclass(frozen=True)
class EmbeddingAdaptation:
    """Speaker normalisation of the network's embedding and the head applied after it: the
    prior and weights of :class:`EmbeddingAdapter`, carried in the model metadata
    (``embedding_adaptation``), as ``training.embedding_adaptation`` fits them.

    Attributes:
        output: Name of the graph output holding the embedding, float32 ``(batch, dim)`` (the
            network's last global average pooling).
        prior_mean: Per dimension, the average over the training speakers of each speaker's
            mean embedding, ``dim`` values.
        prior_mean_square: The same for each speaker's mean square, ``dim`` values.
        prior_windows: Weight of the prior in windows (> 0; at the 0.5 s hop, 40 windows = 20 s
            of speech before a voice's own statistics weigh as much as the prior).
        weights: The head's output weights, ``n_classes`` rows of ``dim`` values (of
            ``hidden`` values with a hidden layer), rows in the model's label order.
        bias: The head's output bias, ``n_classes`` values.
        temperature: Logits are divided by it before the softmax (> 0; 1 leaves them as fitted).
        hidden_weights: Optional ReLU hidden layer before the output: ``hidden`` rows of ``dim``
            values; empty for a linear head. ``training.embedding_adaptation`` writes the
            network's own dense layers here, with the mapping of the standardised embedding
            onto the training speakers' statistics folded into them (the *aligned* head).
        hidden_bias: Its bias, ``hidden`` values (empty for a linear head).

    Raises:
        ValueError: If ``output`` is empty, the vectors are empty or differ in length from
            ``dim``, the head has fewer than two classes or rows of another length than ``dim``
            (or than ``hidden``), ``bias`` another length than the rows, the hidden layer's rows
            another length than ``dim`` or its bias another length than its rows, a value is not
            finite, a prior variance (``prior_mean_square - prior_mean**2``) is negative beyond
            rounding, or ``prior_windows`` or ``temperature`` is not positive and finite.
    """

    output: str
    prior_mean: tuple[float, ...]
    prior_mean_square: tuple[float, ...]
    prior_windows: float
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    temperature: float = 1.0
    hidden_weights: tuple[tuple[float, ...], ...] = ()
    hidden_bias: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.output, str) or not self.output:
            raise ValueError(f"output must be the name of a graph output, got {self.output!r}")
        vectors = {name: tuple(float(v) for v in getattr(self, name))
                   for name in ("prior_mean", "prior_mean_square", "bias", "hidden_bias")}
        rows = tuple(tuple(float(v) for v in row) for row in self.weights)
        hidden = tuple(tuple(float(v) for v in row) for row in self.hidden_weights)
        for name, values in vectors.items():
            object.__setattr__(self, name, values)
        object.__setattr__(self, "weights", rows)
        object.__setattr__(self, "hidden_weights", hidden)
        object.__setattr__(self, "prior_windows", float(self.prior_windows))
        object.__setattr__(self, "temperature", float(self.temperature))
        dim = len(self.prior_mean)
        if not dim or len(self.prior_mean_square) != dim:
            raise ValueError(f"prior_mean and prior_mean_square must be non-empty and of equal length, got "
                             f"{dim} and {len(self.prior_mean_square)}")
        if any(len(r) != dim for r in hidden):
            raise ValueError(f"hidden_weights must be rows of {dim} values, got row lengths {[len(r) for r in hidden]}")
        if len(self.hidden_bias) != len(hidden):
            raise ValueError(f"hidden_bias has {len(self.hidden_bias)} values, hidden_weights {len(hidden)} rows")
        width = len(hidden) or dim
        if len(rows) < 2 or any(len(r) != width for r in rows):
            raise ValueError(f"weights must be at least two rows of {width} values (one per class), got row lengths "
                             f"{[len(r) for r in rows]}")
        if len(self.bias) != len(rows):
            raise ValueError(f"bias has {len(self.bias)} values, weights {len(rows)} rows")
        mu, m2 = np.array(self.prior_mean), np.array(self.prior_mean_square)
        if not all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in
                   (mu, m2, np.array(rows), np.array(self.bias), np.array(hidden), np.array(self.hidden_bias))):
            raise ValueError("the prior statistics, weights and bias must be finite")
        if not np.all(m2 - mu**2 > -1e-6 * (1 + m2)):
            worst = int(np.argmin(m2 - mu**2))
            raise ValueError(f"the prior gives a negative variance in dimension {worst} "
                             f"(mean square {m2[worst]:g} < mean^2 {mu[worst] ** 2:g})")
        for name in ("prior_windows", "temperature"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value}")

    @property
    def dim(self) -> int:
        """Length of the embedding."""
        return len(self.prior_mean)

    @property
    def n_classes(self) -> int:
        """Number of classes of the head."""
        return len(self.weights)

    @property
    def hidden(self) -> int:
        """Units of the head's ReLU hidden layer (0: a linear head)."""
        return len(self.hidden_weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the ``embedding_adaptation`` entry of the model metadata)."""
        return {
            "output": self.output,
            "prior_mean": list(self.prior_mean),
            "prior_mean_square": list(self.prior_mean_square),
            "prior_windows": self.prior_windows,
            "weights": [list(r) for r in self.weights],
            "bias": list(self.bias),
            "temperature": self.temperature,
            **({"hidden_weights": [list(r) for r in self.hidden_weights], "hidden_bias": list(self.hidden_bias)}
               if self.hidden_weights else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbeddingAdaptation":
        """Parse :meth:`to_dict` output (``temperature`` may be absent: 1; ``hidden_weights``
        and ``hidden_bias`` too: a linear head).

        Raises:
            ValueError: If a field is missing or invalid.
        """
        try:
            return cls(data["output"], tuple(data["prior_mean"]), tuple(data["prior_mean_square"]),
                       float(data["prior_windows"]), tuple(tuple(r) for r in data["weights"]), tuple(data["bias"]),
                       float(data.get("temperature", 1.0)), tuple(tuple(r) for r in data.get("hidden_weights", ())),
                       tuple(data.get("hidden_bias", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"embedding adaptation entry is incomplete or malformed: {exc}") from None


class EmbeddingAdapter(_Voice):
    """Causal speaker normalisation of one channel's embedding, then the head: probabilities.

    Per embedding dimension, running sums of the channel's speech windows start from the
    training speakers' average statistics weighted as ``prior_windows`` windows
    (:class:`EmbeddingAdaptation`). Each window is first added to them, then standardised with
    the running mean and standard deviation (variance floored at
    :data:`MIN_EMBEDDING_VARIANCE`); the head maps it to logits (through its ReLU hidden layer
    first, if it has one), divided by the temperature before the softmax. This is
    ``training.embedding_adaptation.causal_standardise`` followed by the head written there,
    one window at a time (tested against it); the same per-speaker standardisation as
    :class:`SpeakerNormaliser`, applied where the network has already summarised the window.

    Args:
        adaptation: The model's prior and head.

    Attributes:
        windows: Speech windows taken since the last :meth:`reset`.

    Thread: used by one thread (the engine's model thread).
    """

    def __init__(self, adaptation: EmbeddingAdaptation) -> None:
        self.adaptation = adaptation
        self._moments = _RunningMoments(adaptation.prior_mean, adaptation.prior_mean_square, adaptation.prior_windows,
                                        MIN_EMBEDDING_VARIANCE)
        self._weights = np.asarray(adaptation.weights, dtype=np.float64)
        self._bias = np.asarray(adaptation.bias, dtype=np.float64)
        self._hidden = (np.asarray(adaptation.hidden_weights, dtype=np.float64).reshape(adaptation.hidden, -1),
                        np.asarray(adaptation.hidden_bias, dtype=np.float64)) if adaptation.hidden else None

    def __call__(self, embedding: np.ndarray) -> np.ndarray:
        """Add one speech window's embedding to the statistics, then return its probabilities.

        Args:
            embedding: ``(dim,)`` float, the model's embedding of one speech window.

        Returns:
            float32 ``(n_classes,)`` in the model's label order, non-negative, summing to 1.

        Raises:
            ValueError: If the embedding's shape is not ``(dim,)``.
        """
        e = np.asarray(embedding, dtype=np.float64)
        if e.shape != (self.adaptation.dim,):
            raise ValueError(f"expected an embedding of shape ({self.adaptation.dim},), got {e.shape}")
        mean, sd = self._moments.add(e, e * e)
        z = (e - mean) / sd
        if self._hidden is not None:
            z = np.maximum(self._hidden[0] @ z + self._hidden[1], 0.0)
        logits = (self._weights @ z + self._bias) / self.adaptation.temperature
        p = np.exp(logits - logits.max())
        return (p / p.sum()).astype(np.float32)


#: The values of ``adapt`` (``--adapt``): ``auto`` picks the best the model carries.
ADAPT_MODES: tuple[str, ...] = ("auto", "embedding", "output", "none")


def resolve_adapt(adapt: str, embedding_adaptation: EmbeddingAdaptation | None,
                  output_prior: OutputPrior | None) -> str:
    """The adaptation to the voice that runs for ``adapt`` and what a model carries.

    ``"auto"`` is ``"embedding"`` for a model with an ``embedding_adaptation``, else
    ``"output"`` for one with an ``output_prior``, else ``"none"``; the other modes are taken
    as asked.

    Args:
        adapt: One of :data:`ADAPT_MODES`.
        embedding_adaptation, output_prior: The model's entries (None when absent).

    Returns:
        ``"embedding"``, ``"output"`` or ``"none"``.

    Raises:
        ValueError: If ``adapt`` is not one of :data:`ADAPT_MODES`, or names an adaptation the
            model does not carry (the message says what it carries).
    """
    if adapt not in ADAPT_MODES:
        raise ValueError(f"adapt must be one of {', '.join(map(repr, ADAPT_MODES))}, got {adapt!r}")
    carried = [m for m, entry in (("embedding", embedding_adaptation), ("output", output_prior)) if entry is not None]
    if adapt == "auto":
        return carried[0] if carried else "none"
    if adapt != "none" and adapt not in carried:
        has = " and ".join(f"{m} adaptation" for m in carried) if carried else "no adaptation"
        entry = "embedding_adaptation" if adapt == "embedding" else "output_prior"
        raise ValueError(f"{adapt} adaptation needs an '{entry}' entry in the model's metadata; this model carries "
                         f"{has} (`stream-ser info` shows it; 'auto' picks the best it carries, 'none' turns it off)")
    return adapt


def adapt_from_deprecated(adapt: str, adapt_output: bool | None, stacklevel: int = 3) -> str:
    """``adapt`` for a caller that still passes the former ``adapt_output``: True is ``"auto"``,
    False ``"none"``, with a :class:`DeprecationWarning`; None leaves ``adapt`` as given.

    Raises:
        TypeError: If both ``adapt_output`` and an ``adapt`` other than ``"auto"`` are given.
    """
    if adapt_output is None:
        return adapt
    import warnings

    if adapt != "auto":
        raise TypeError(f"pass adapt={adapt!r} or the deprecated adapt_output, not both")
    warnings.warn("adapt_output is deprecated: pass adapt='auto' (True) or adapt='none' (False)",
                  DeprecationWarning, stacklevel=stacklevel)
    return "auto" if adapt_output else "none"
