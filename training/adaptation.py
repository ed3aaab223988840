"""Speaker normalisation of log-mel windows (speaker adaptation), for experiments.

Position in the pipeline: between the cached windows (:mod:`training.windows`) and the model
input in :mod:`training.experiments` (``train --speaker-norm``). The runtime's counterpart is
:mod:`stream_ser.adaptation` (running statistics per channel, ``listen --calibrate S``).

Each mel band is standardised with statistics of the speaker's own speech windows (a
per-speaker, per-band mean and variance normalisation, the log-mel analogue of cepstral mean
and variance normalisation; Viikki & Laurila 1998, Speech Communication 25: 133-147):

``speaker``
    every speaker (training and test) with the statistics of all of its windows. Uses no
    labels, but a test speaker's statistics include its later clips: an upper bound.
``causal``
    training speakers as in ``speaker``; a test speaker's windows are visited clip by clip in a
    fixed random order (seed) and, within a clip, in time order; each window is standardised
    with the running statistics of that speaker's windows so far, itself included, shrunk toward
    the training speakers' pooled statistics with a prior weight of :data:`PRIOR_WINDOWS`
    windows. The running statistics are the runtime's own
    :class:`stream_ser.adaptation.SpeakerNormaliser` (one per test speaker), so this is what
    ``listen`` does from one channel's own speech, with an optional calibration phase filling the
    statistics first.
"""

from __future__ import annotations

import numpy as np

from stream_ser.adaptation import MIN_VARIANCE_DB2, SpeakerNorm, SpeakerNormaliser

#: Speaker-normalisation modes.
MODES: tuple[str, ...] = ("none", "speaker", "causal")
#: Prior weight (windows) of the training statistics in ``causal`` mode (chosen a priori, not tuned:
#: 10 windows = 5 s of speech at the 0.5 s hop).
PRIOR_WINDOWS = 10.0


def _band_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window, per-band mean and mean square over frames: 2 x ``(n, n_mels)`` float64."""
    x = x.astype(np.float64)
    return x.mean(axis=2), (x**2).mean(axis=2)


def normalise_speakers(
    log_mels: np.ndarray,
    window_speaker: np.ndarray,
    window_clip: np.ndarray,
    test_speakers: frozenset[str],
    mode: str,
    seed: int = 0,
    prior_windows: float = PRIOR_WINDOWS,
) -> np.ndarray:
    """Per-speaker, per-band standardisation of log-mel windows.

    Args:
        log_mels: ``(n, n_mels, n_frames)`` dB, windows of each clip in time order.
        window_speaker: ``(n,)`` speaker id of each window.
        window_clip: ``(n,)`` clip index of each window.
        test_speakers: Speakers normalised causally in ``causal`` mode.
        mode: One of :data:`MODES`.
        seed: Clip order of the test speakers in ``causal`` mode.
        prior_windows: Weight of the training statistics in ``causal`` mode (windows, > 0).

    Returns:
        float32 ``(n, n_mels, n_frames)`` (the input, as float32, for ``none``).

    Raises:
        ValueError: For an unknown mode, or (``causal``) a ``prior_windows`` that is not positive.
    """
    if mode not in MODES:
        raise ValueError(f"unknown speaker normalisation {mode!r}; one of {MODES}")
    x = np.asarray(log_mels)
    if mode == "none":
        return x.astype(np.float32)
    m1, m2 = _band_moments(x)
    out = np.empty(x.shape, dtype=np.float32)
    is_test = np.isin(window_speaker, list(test_speakers))
    train_rows = ~is_test
    g1 = m1[train_rows].mean(axis=0) if train_rows.any() else m1.mean(axis=0)
    g2 = m2[train_rows].mean(axis=0) if train_rows.any() else m2.mean(axis=0)
    prior = SpeakerNorm(tuple(g1), tuple(g2), prior_windows) if mode == "causal" else None
    rng = np.random.default_rng(seed)
    for spk in np.unique(window_speaker):
        rows = np.flatnonzero(window_speaker == spk)
        if mode == "speaker" or spk not in test_speakers:
            mu = m1[rows].mean(axis=0)
            sd = np.sqrt(np.maximum(m2[rows].mean(axis=0) - mu**2, MIN_VARIANCE_DB2))
            out[rows] = ((x[rows] - mu[:, None]) / sd[:, None]).astype(np.float32)
            continue
        clips = np.unique(window_clip[rows])
        normaliser = SpeakerNormaliser(prior)  # the runtime's, one per voice
        for c in clips[rng.permutation(len(clips))]:
            for r in rows[window_clip[rows] == c]:  # time order within the clip
                out[r] = normaliser(x[r])
    return out
