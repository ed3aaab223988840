"""Non-log-mel model inputs, derived from the runtime's own preprocessed window.

Position in the pipeline: beside :mod:`training.windows`. A few published architectures
(items 6 and 7 of :mod:`training.architectures`) use features the log-mel does not carry: chroma, zero-crossing rate
and RMS energy. They are computed here from exactly the window the runtime scores, after the
runtime's own gate, peak normalisation and trim (:func:`stream_ser.features.preprocess`), with
the recipe's STFT framing (``n_fft``, ``hop_length``, ``win_length``, ``center`` of
:class:`~stream_ser.features.FeatureConfig`), so every frame lines up with a log-mel frame and
a runtime could compute them from the same samples. MFCCs need no extra pass: they are the
DCT of the cached log-mel (:func:`training.architectures.mfcc_matrix`).

The extras are cached like the log-mels (``.cache/extras-<key>.npz``, float16), windows in the
same order as :func:`training.windows.build_features`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.engine import cut_window, window_ends
from stream_ser.features import FeatureConfig, preprocess
from stream_ser.audio import load_audio

from .architectures import mfcc_matrix
from .corpora import Utterance

log = logging.getLogger(__name__)

#: Rows of the extras array: zero-crossing rate, RMS (dBFS), 12 chroma bins.
EXTRA_NAMES: tuple[str, ...] = ("zcr", "rms_dbfs", *(f"chroma{i}" for i in range(12)))
N_CHROMA = 12


def window_extras(window: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Zero-crossing rate, RMS level and chroma of one preprocessed window, per STFT frame.

    Args:
        window: float32 ``(config.window_samples,)``, output of
            :func:`stream_ser.features.preprocess`.
        config: The feature recipe (framing and sample rate).

    Returns:
        float32 ``(len(EXTRA_NAMES), config.n_frames)``: ZCR in [0, 1]
        (``librosa.feature.zero_crossing_rate``), RMS in dBFS floored at -100
        (``librosa.feature.rms``), chroma in [0, 1] (``librosa.feature.chroma_stft`` on the
        recipe's power STFT; Ellis 2007).
    """
    import librosa

    kw = {"frame_length": config.n_fft, "hop_length": config.hop_length, "center": config.center}
    zcr = librosa.feature.zero_crossing_rate(window, **kw)[0]
    rms = librosa.feature.rms(y=window, **kw)[0]
    rms_db = 20.0 * np.log10(np.maximum(rms, 1e-5))
    spec = librosa.stft(
        window, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
        window=config.window, center=config.center, pad_mode="constant",
    )
    chroma = librosa.feature.chroma_stft(
        S=np.abs(spec) ** 2, sr=config.sample_rate_hz, n_fft=config.n_fft, hop_length=config.hop_length,
        n_chroma=N_CHROMA, tuning=0.0,
    )
    return np.vstack([zcr[None], rms_db[None], chroma]).astype(np.float32)


def _one(args: tuple[str, FeatureConfig]) -> np.ndarray:
    path, config = args
    samples = load_audio(path, config.sample_rate_hz)
    out = []
    for end in window_ends(samples.size, config.hop_samples):
        y = preprocess(cut_window(samples, end, config.window_samples), config)
        if y is not None:
            out.append(window_extras(y, config))
    n_rows = len(EXTRA_NAMES)
    return np.stack(out).astype(np.float16) if out else np.zeros((0, n_rows, config.n_frames), np.float16)


def _cache_key(utts: list[Utterance], config: FeatureConfig) -> str:
    h = hashlib.sha1(("extras-v1" + json.dumps(config.to_dict(), sort_keys=True)).encode())
    for u in utts:
        h.update(f"{u.corpus}/{u.path.name}/{u.path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def build_extras(
    utts: list[Utterance], config: FeatureConfig, cache_dir: Path | None = Path(".cache"), workers: int | None = None
) -> np.ndarray:
    """Extras of every speech window of every clip, in :func:`training.windows.build_features` order.

    Args:
        utts: Clips (same list, same order as given to ``build_features``).
        config: Feature recipe.
        cache_dir: Cache folder; None disables caching.
        workers: Processes (default: all cores).

    Returns:
        float16 ``(n_windows, len(EXTRA_NAMES), n_frames)``.
    """
    path = cache_dir / f"extras-{_cache_key(utts, config)}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)["extras"]
    t0 = time.monotonic()
    parts = []
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for i, arr in enumerate(pool.map(_one, [(str(u.path), config) for u in utts], chunksize=16)):
            parts.append(arr)
            if (i + 1) % 500 == 0:
                log.info("extras: %d/%d clips (%.0f s)", i + 1, len(utts), time.monotonic() - t0)
    extras = np.concatenate(parts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, extras=extras)
        log.info("extras: cached %d windows in %s (%.0f s)", len(extras), path, time.monotonic() - t0)
    return extras


@dataclass(frozen=True)
class FrameScaler:
    """Per-feature standardisation of frame matrices, fitted on training windows only.

    Attributes:
        mean: float64 ``(n_features,)``.
        std: float64 ``(n_features,)``, floored at 1e-6.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, frames: np.ndarray) -> "FrameScaler":
        """Fit on ``(n_windows, n_frames, n_features)``."""
        flat = frames.reshape(-1, frames.shape[-1]).astype(np.float64)
        return cls(flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-6))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of ``frames``."""
        return ((frames - self.mean) / self.std).astype(np.float32)


def frame_matrix(log_mels: np.ndarray, extras: np.ndarray, n_mfcc: int = 40) -> np.ndarray:
    """Per-frame MFCC + ZCR + RMS (the input of item 7, ``conv1d_lstm_frames``), unstandardised.

    Args:
        log_mels: ``(n, n_mels, n_frames)`` dB.
        extras: ``(n, len(EXTRA_NAMES), n_frames)`` from :func:`build_extras`.
        n_mfcc: MFCCs kept.

    Returns:
        float32 ``(n, n_frames, n_mfcc + 2)``.
    """
    d = mfcc_matrix(log_mels.shape[1], n_mfcc).astype(np.float32)
    mfcc = np.einsum("km,nmt->ntk", d, log_mels.astype(np.float32))
    return np.concatenate([mfcc, np.transpose(extras[:, :2].astype(np.float32), (0, 2, 1))], axis=2)


def time_average(log_mels: np.ndarray, extras: np.ndarray, n_mfcc: int = 40) -> np.ndarray:
    """Time average of 40 MFCC + 12 chroma + the log-mel bands (the input of item 6, ``mlp_time_avg``).

    Args:
        log_mels: ``(n, n_mels, n_frames)`` dB.
        extras: ``(n, len(EXTRA_NAMES), n_frames)``.
        n_mfcc: MFCCs kept.

    Returns:
        float32 ``(n, n_mfcc + 12 + n_mels)``.
    """
    x = log_mels.astype(np.float32)
    d = mfcc_matrix(x.shape[1], n_mfcc).astype(np.float32)
    mfcc = np.einsum("km,nmt->nk", d, x) / x.shape[2]
    chroma = extras[:, 2:].astype(np.float32).mean(axis=2)
    return np.concatenate([mfcc, chroma, x.mean(axis=2)], axis=1)
