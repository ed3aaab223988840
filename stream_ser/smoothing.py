"""Temporal smoothing of class probabilities over speech windows.

Position in the pipeline: after the model, on the inference thread. The engine scores a 3 s window
every hop (0.5 s), so consecutive windows overlap by 2.5 s and their raw probabilities still jump
from hop to hop; a display (the terminal UI's probability bars) reads better from a smoothed
estimate. The smoothed values are for display only: sinks (CSV, JSON lines) always receive the raw
per-window probabilities, so the timeline files stay a record of what the model said.

The smoother is an exponential moving average (a first-order IIR low-pass) updated on speech
windows only: windows the speech gate rejected carry no probabilities and leave the state as it
was, so a pause in speech neither decays nor resets the estimate. Its memory is given as a
half-life in seconds of audio, from which the per-update weight follows from the hop::

    alpha = 1 - 0.5 ** (hop_s / half_life_s)
    smoothed = alpha * probabilities + (1 - alpha) * smoothed

so a window's weight halves every ``half_life_s`` of *speech*, whatever the hop. The first speech
window after construction or :meth:`ProbabilitySmoother.reset` initialises the state directly.
The smoothed vector stays a probability distribution (a convex combination of distributions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default half-life of the display smoothing, in seconds of speech: three hops at the default
#: 0.5 s hop, about one short utterance, so the bars follow a change of emotion within a
#: sentence or two while single-window flickers stay small.
DEFAULT_HALF_LIFE_S = 1.5


def smoothing_weight(hop_s: float, half_life_s: float) -> float:
    """Weight ``alpha`` of the newest window for a given hop and half-life.

    Args:
        hop_s: Seconds of audio between updates (> 0).
        half_life_s: Seconds after which a window's weight has halved (> 0); ``0`` disables
            smoothing (``alpha`` = 1).

    Returns:
        ``alpha`` in (0, 1].

    Raises:
        ValueError: If ``hop_s`` <= 0 or ``half_life_s`` < 0.
    """
    if hop_s <= 0:
        raise ValueError(f"hop_s must be > 0, got {hop_s}")
    if half_life_s < 0:
        raise ValueError(f"half_life_s must be >= 0, got {half_life_s}")
    if half_life_s == 0:
        return 1.0
    return float(1.0 - 0.5 ** (hop_s / half_life_s))


class ProbabilitySmoother:
    """Exponential moving average of class probabilities over speech windows.

    Args:
        n_classes: Number of classes (length of every probability vector).
        hop_s: Seconds of audio between predictions (the engine's hop).
        half_life_s: Half-life of a window's weight in seconds of speech
            (:data:`DEFAULT_HALF_LIFE_S`); 0 disables smoothing.

    Attributes:
        alpha: Weight of the newest window, ``1 - 0.5 ** (hop_s / half_life_s)``.

    Raises:
        ValueError: If ``n_classes`` < 1, ``hop_s`` <= 0 or ``half_life_s`` < 0.

    Thread: one instance is used by one thread (the inference worker).
    """

    def __init__(self, n_classes: int, hop_s: float, half_life_s: float = DEFAULT_HALF_LIFE_S) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes = n_classes
        self.hop_s = float(hop_s)
        self.half_life_s = float(half_life_s)
        self.alpha = smoothing_weight(self.hop_s, self.half_life_s)
        self._state: np.ndarray | None = None

    @property
    def value(self) -> tuple[float, ...] | None:
        """The smoothed probabilities (one per class, sum 1), or None before any speech window."""
        return None if self._state is None else tuple(float(x) for x in self._state)

    def update(self, probabilities: Sequence[float] | np.ndarray | None) -> tuple[float, ...] | None:
        """Fold in one window.

        Args:
            probabilities: The window's class probabilities, shape ``(n_classes,)``, in [0, 1]
                and summing to 1; None for a window without speech (the state is kept).

        Returns:
            The smoothed probabilities after the update (see :attr:`value`).

        Raises:
            ValueError: If the vector does not have ``n_classes`` entries.
        """
        if probabilities is None:
            return self.value
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (self.n_classes,):
            raise ValueError(f"expected {self.n_classes} probabilities, got shape {p.shape}")
        if self._state is None:
            self._state = p.copy()
        else:
            self._state = self.alpha * p + (1.0 - self.alpha) * self._state
        return self.value

    def reset(self) -> None:
        """Forget the state; the next speech window initialises it."""
        self._state = None
