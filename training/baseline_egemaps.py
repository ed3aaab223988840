"""Peer baseline: eGeMAPSv02 functionals + SVM, on the protocols of :mod:`training.folds`.

Benchmark only: ``opensmile`` is never a runtime dependency and not part of the
``train`` extra; install it with ``pip install opensmile`` to run this module.

Method:

* **Features**: the 88 eGeMAPSv02 functionals of each whole clip (Eyben et al. 2016, "The
  Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for voice research and affective
  computing", IEEE Trans. Affective Computing 7(2): 190-202; extended set v02 of the
  ``opensmile`` Python package, audEERING), from the 16 kHz mono audio as read by
  :func:`stream_ser.sources.load_audio`. Cached in ``.cache/egemaps-<key>.npz``.
* **Classifier**: scikit-learn ``SVC(kernel="rbf", C=1, gamma="scale",
  class_weight="balanced")`` on standardised features.
* **Standardisation** (the speaker-adaptation question):

  ``global``
      z-score with mean and standard deviation of the training clips.
  ``speaker``
      every speaker z-scored with its own statistics over all of its clips (training and test
      speakers alike). Uses no labels, but a test speaker's statistics come from all of that
      speaker's clips, including later ones: an upper bound a live tool cannot reach.
  ``speaker_causal``
      training speakers as in ``speaker``; each test clip is z-scored with running statistics
      of its speaker's clips *up to and including it*, in a fixed random order (seed 0),
      shrunk toward the training statistics with a prior weight of :data:`PRIOR_CLIPS` clips.
      This is what a live tool could do with the audio it has heard from one channel.

Clip level only (one functional vector per clip); there is no window level for this baseline.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .corpora import Utterance

log = logging.getLogger(__name__)

#: Standardisation modes (see the module docstring).
MODES: tuple[str, ...] = ("global", "speaker", "speaker_causal")
#: Prior weight (in clips) of the training statistics in ``speaker_causal`` mode (chosen a priori,
#: not tuned: about one minute of speech before a speaker's own statistics dominate).
PRIOR_CLIPS = 10.0
#: SVM settings of the baseline (as in the published baseline: RBF, balanced class weights; C and gamma are
#: scikit-learn's defaults, not tuned on any fold).
SVM_PARAMS = {"kernel": "rbf", "C": 1.0, "gamma": "scale", "class_weight": "balanced"}

_SMILE = None


def _smile():
    global _SMILE
    if _SMILE is None:
        import opensmile

        _SMILE = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
        )
    return _SMILE


def clip_functionals(path: str, sample_rate_hz: int = 16000) -> np.ndarray:
    """The 88 eGeMAPSv02 functionals of one file, float64 ``(88,)``, in this process.

    Do not call this in a process that has imported TensorFlow: openSMILE's native library and
    TensorFlow's corrupt each other's heap there (``malloc(): invalid size``, then SIGABRT;
    opensmile 2.6, tensorflow-cpu 2.21). :func:`functionals` runs it in fresh processes.
    """
    from stream_ser.audio import load_audio

    x = load_audio(path, sample_rate_hz)
    return _smile().process_signal(x, sample_rate_hz).to_numpy(dtype=np.float64)[0]


def functionals(paths: list[str], workers: int | None = None) -> np.ndarray:
    """eGeMAPSv02 functionals of files, computed in *spawned* worker processes.

    Spawned (not forked) workers never inherit TensorFlow from the caller, so this is safe to
    call from the training harness and from the tests (see :func:`clip_functionals`).

    Args:
        paths: Audio files (any format :func:`stream_ser.sources.load_audio` reads).
        workers: Processes (default: all cores).

    Returns:
        float64 ``(len(paths), 88)``.

    Raises:
        ImportError: In the worker, if ``opensmile`` is not installed.
        stream_ser.sources.AudioSourceError: For an unreadable file.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=ctx) as pool:
        rows = list(pool.map(clip_functionals, [str(p) for p in paths], chunksize=16))
    return np.stack(rows) if rows else np.zeros((0, 88))


def _cache_key(utts: list[Utterance]) -> str:
    import opensmile

    h = hashlib.sha1(f"egemapsv02-functionals/opensmile {opensmile.__version__}".encode())
    for u in utts:
        h.update(f"{u.corpus}/{u.path.name}/{u.path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def extract(utts: list[Utterance], cache_dir: Path | None = Path(".cache"), workers: int | None = None) -> np.ndarray:
    """eGeMAPSv02 functionals of every clip (cached).

    Args:
        utts: Clips.
        cache_dir: Cache folder; None disables caching.
        workers: Processes (default: all cores).

    Returns:
        float64 ``(len(utts), 88)``.

    Raises:
        ImportError: If ``opensmile`` is not installed.
    """
    path = cache_dir / f"egemaps-{_cache_key(utts)}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)["functionals"]
    t0 = time.monotonic()
    x = functionals([str(u.path) for u in utts], workers)
    log.info("eGeMAPS: %d clips in %.0f s", len(utts), time.monotonic() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, functionals=x)
    return x


def standardise(
    x: np.ndarray, speakers: np.ndarray, train: np.ndarray, mode: str, seed: int = 0, prior_clips: float = PRIOR_CLIPS
) -> np.ndarray:
    """Standardise features for one fold (see the module docstring for the modes).

    Args:
        x: float ``(n, d)`` features.
        speakers: ``(n,)`` speaker id of each row.
        train: bool ``(n,)``: rows of training speakers (the others are test rows).
        mode: One of :data:`MODES`.
        seed: Order of a test speaker's clips in ``speaker_causal`` mode.
        prior_clips: Prior weight of the training statistics in ``speaker_causal`` mode.

    Returns:
        float64 ``(n, d)``.

    Raises:
        ValueError: For an unknown mode.
    """
    x = np.asarray(x, dtype=np.float64)
    mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    if mode == "global":
        return (x - mu) / sd
    if mode not in MODES:
        raise ValueError(f"unknown standardisation {mode!r}; one of {MODES}")
    out = np.empty_like(x)
    rng = np.random.default_rng(seed)
    for spk in np.unique(speakers):
        rows = np.flatnonzero(speakers == spk)
        if mode == "speaker" or train[rows[0]]:
            m, s = x[rows].mean(axis=0), x[rows].std(axis=0)
            out[rows] = (x[rows] - m) / np.where(s > 1e-12, s, 1.0)
            continue
        order = rows[rng.permutation(len(rows))]
        # running sums, with the training statistics as a prior of `prior_clips` clips
        s1 = prior_clips * mu
        s2 = prior_clips * (sd**2 + mu**2)
        n = prior_clips
        for r in order:
            s1 = s1 + x[r]
            s2 = s2 + x[r] ** 2
            n += 1
            m = s1 / n
            v = np.maximum(s2 / n - m**2, 1e-12)
            out[r] = (x[r] - m) / np.sqrt(v)
    return out


def svm_fold(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, train: np.ndarray, test: np.ndarray, mode: str):
    """Fit the SVM on the training rows and predict the test rows of one fold.

    Args:
        x: ``(n, d)`` features of all rows of the protocol.
        y: ``(n,)`` class names.
        speakers: ``(n,)`` speaker ids.
        train: bool ``(n,)`` training rows (validation speakers count as training here: the
            SVM has no early stopping).
        test: bool ``(n,)`` test rows.
        mode: Standardisation mode.

    Returns:
        Predicted class names of the test rows, in row order.
    """
    from sklearn.svm import SVC

    rows = train | test
    z = standardise(x[rows], speakers[rows], train[rows], mode)
    tr = train[rows]
    clf = SVC(**SVM_PARAMS).fit(z[tr], y[rows][tr])
    return list(clf.predict(z[~tr]))
