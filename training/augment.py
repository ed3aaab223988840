"""Waveform augmentation (training folds only) and test-time corruptions (robustness).

Position in the pipeline: between the corpus audio and the feature recipe. Training copies are
made from the training speakers' clips only and then cut into the runtime's windows by
:func:`build_augmented_features` (cached like :mod:`training.windows`); corruptions are applied
to test clips before they are streamed through the engine (``python -m training.experiments
robustness``).

Augmentations: time stretch by a factor in [0.8, 1.2] (``librosa.effects.time_stretch``,
phase vocoder), pitch shift by up to +-2 semitones (``librosa.effects.pitch_shift``), Gaussian
noise of amplitude 0.005 relative to the clip peak, and noise at a chosen SNR. SpecAugment (Park
et al. 2019) is applied to log-mels during training (:func:`training.train.spec_augment`).

Corruptions (for the robustness evaluation): additive white or babble noise at 20, 10 and 0 dB SNR (babble
= the sum of several other test clips, so no training audio leaks in) and a telephone channel
(band-limit to 300-3400 Hz, resample to 8 kHz and back to 16 kHz; ITU-T G.712 passband).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Time-stretch factor range, pitch-shift range (semitones) and Gaussian noise amplitude.
STRETCH_RANGE = (0.8, 1.2)
PITCH_RANGE_SEMITONES = (-2.0, 2.0)
NOISE_AMPLITUDE = 0.005
#: SNRs of the robustness evaluation (dB).
ROBUSTNESS_SNRS_DB = (20.0, 10.0, 0.0)
#: Telephone passband (Hz) and sample rate.
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE_HZ = 8000


def add_noise_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` into ``x`` at a given signal-to-noise ratio (power over the whole clip).

    Args:
        x: float32 ``(n,)`` signal.
        noise: float ``(m,)`` noise; tiled or cut to ``n`` samples.
        snr_db: 10 log10(P_signal / P_noise) of the result.

    Returns:
        float32 ``(n,)``; clipped to [-1, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    reps = int(np.ceil(x.size / max(noise.size, 1)))
    n = np.tile(np.asarray(noise, dtype=np.float64), reps)[: x.size]
    ps, pn = np.mean(x**2), np.mean(n**2)
    if pn <= 0 or ps <= 0:
        return x.astype(np.float32)
    n = n * np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return np.clip(x + n, -1.0, 1.0).astype(np.float32)


def white_noise(n: int, seed: int) -> np.ndarray:
    """Gaussian white noise, float32 ``(n,)``, unit variance."""
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def babble(clips: list[np.ndarray], n: int, seed: int, talkers: int = 6) -> np.ndarray:
    """Babble noise: the sum of ``talkers`` randomly chosen clips (each tiled to ``n`` samples).

    Args:
        clips: float32 mono clips (other test clips, never training audio).
        n: Output length (samples).
        seed: Choice of clips and offsets.
        talkers: Clips summed.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.float64)
    for i in rng.choice(len(clips), size=min(talkers, len(clips)), replace=False):
        c = np.asarray(clips[i], dtype=np.float64)
        c = c / (np.sqrt(np.mean(c**2)) + 1e-9)
        c = np.roll(np.tile(c, int(np.ceil(n / c.size)) + 1), -int(rng.integers(c.size)))[:n]
        out += c
    return out.astype(np.float32)


def telephone(x: np.ndarray, sample_rate_hz: int = 16000) -> np.ndarray:
    """Telephone channel: 300-3400 Hz band-pass (4th-order Butterworth), 8 kHz and back.

    Args:
        x: float32 ``(n,)`` at ``sample_rate_hz``.

    Returns:
        float32 ``(n,)`` at ``sample_rate_hz``.
    """
    import scipy.signal
    import soxr

    sos = scipy.signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=sample_rate_hz, output="sos")
    y = scipy.signal.sosfiltfilt(sos, np.asarray(x, dtype=np.float64))
    y = soxr.resample(y, sample_rate_hz, TELEPHONE_RATE_HZ)
    y = soxr.resample(y, TELEPHONE_RATE_HZ, sample_rate_hz)
    out = np.zeros(len(x), dtype=np.float32)
    m = min(len(x), len(y))
    out[:m] = y[:m]
    return out


@dataclass(frozen=True)
class AugmentParams:
    """One random augmentation of one clip.

    Attributes:
        stretch: Time-stretch rate (> 1 faster/shorter).
        semitones: Pitch shift.
        noise_amplitude: Gaussian noise standard deviation relative to the clip peak.
    """

    stretch: float
    semitones: float
    noise_amplitude: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "AugmentParams":
        """Uniform in :data:`STRETCH_RANGE` and :data:`PITCH_RANGE_SEMITONES`; noise amplitude uniform in [0, 0.005]."""
        return cls(float(rng.uniform(*STRETCH_RANGE)), float(rng.uniform(*PITCH_RANGE_SEMITONES)),
                   float(rng.uniform(0.0, NOISE_AMPLITUDE)))


def augment(x: np.ndarray, params: AugmentParams, sample_rate_hz: int, seed: int) -> np.ndarray:
    """Apply time stretch, pitch shift and Gaussian noise to one clip.

    Args:
        x: float32 ``(n,)`` mono at ``sample_rate_hz``.
        params: The augmentation.
        sample_rate_hz: Sample rate.
        seed: Noise seed.

    Returns:
        float32, length about ``n / params.stretch``.
    """
    import librosa

    y = np.asarray(x, dtype=np.float32)
    if params.stretch != 1.0:
        y = librosa.effects.time_stretch(y, rate=params.stretch)
    if params.semitones != 0.0:
        y = librosa.effects.pitch_shift(y, sr=sample_rate_hz, n_steps=params.semitones)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if params.noise_amplitude > 0 and peak > 0:
        y = y + np.random.default_rng(seed).normal(0.0, params.noise_amplitude * peak, y.size).astype(np.float32)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _one(job):
    path, config, seed = job
    from stream_ser.audio import load_audio

    from .windows import clip_features

    rng = np.random.default_rng(seed)
    params = AugmentParams.draw(rng)
    x = augment(load_audio(path, config.sample_rate_hz), params, config.sample_rate_hz, seed)
    mels, end_s, n = clip_features(x, config)
    arr = np.stack(mels).astype(np.float16) if mels else np.zeros((0, *config.input_shape), np.float16)
    return arr, end_s, n


def build_augmented_features(utts, config, copy: int, cache_dir: Path | None = Path(".cache"), workers: int | None = None):
    """One augmented copy of every clip, cut into the runtime's windows (cached).

    Each clip gets its own parameters, drawn from a seed derived from the clip's file name and
    ``copy``, so a copy is reproducible and independent of the clip list.

    Args:
        utts: Clips (pass training speakers' clips only).
        config: Feature recipe.
        copy: Copy number (0, 1, ...).
        cache_dir: Cache folder; None disables caching.
        workers: Processes (default: all cores).

    Returns:
        A :class:`training.windows.FeatureSet` over ``utts``.
    """
    from .windows import build_cached

    seeds = [int.from_bytes(hashlib.sha1(f"{u.path.name}/{copy}".encode()).digest()[:4], "little") for u in utts]
    jobs = [(str(u.path), config, s) for u, s in zip(utts, seeds)]
    return build_cached(list(utts), config, _one, jobs, "augmented", salt=f"augment-v1/{copy}/",
                        cache_dir=cache_dir, workers=workers)
