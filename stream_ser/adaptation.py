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


class SpeakerNormaliser:
    """Running per-band statistics of one channel's speech windows (see the module docstring).

    Args:
        norm: The model's prior.

    Thread: used by one thread (the engine's).
    """

    def __init__(self, norm: SpeakerNorm) -> None:
        self.norm = norm
        self._g1 = np.asarray(norm.prior_mean_db, dtype=np.float64)
        self._g2 = np.asarray(norm.prior_mean_square_db2, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget the voice: back to the training prior (a new speaker, a new file)."""
        w = self.norm.prior_windows
        self._s1, self._s2, self._n = w * self._g1, w * self._g2, w
        self.windows = 0

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
        self._s1 = self._s1 + x64.mean(axis=1)
        self._s2 = self._s2 + (x64**2).mean(axis=1)
        self._n += 1
        self.windows += 1
        mu = self._s1 / self._n
        sd = np.sqrt(np.maximum(self._s2 / self._n - mu**2, MIN_VARIANCE_DB2))
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
