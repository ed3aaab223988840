"""Room and line augmentation: training copies that sound like a desk, an office or a phone call.

Position in the pipeline: between the corpus audio and the feature recipe, like
:mod:`training.augment`, but with a different aim. The acted corpora are recorded close to the
mouth in quiet booths; a user's microphone hears a room, a fan, other people and, on a call, a
telephone line. Each training clip gets one random chain of those conditions, built from
`audiomentations <https://github.com/iver56/audiomentations>`_ (MIT) and
`pyroomacoustics <https://github.com/LCAV/pyroomacoustics>`_ (MIT; image source method with ray
tracing for the late tail), and is then cut into the runtime's windows by the same feature recipe
as the clean clips (:func:`training.windows.clip_features`).

The chain (each step drawn independently per clip):

==========================  ====  ===============================================================
step                        p     parameters
==========================  ====  ===============================================================
room impulse response       0.5   ``RoomSimulator``: shoebox 3.6-5.6 x 3.6-3.9 x 2.4-3.0 m, target
                                  RT60 0.2-0.8 s, image sources to order 3 plus ray tracing
other talkers (babble)      0.3   ``AddBackgroundNoise`` with clips of *other training speakers*,
                                  5-20 dB SNR (never a validation or test voice)
white noise                 0.5   ``AddGaussianSNR``, 0-30 dB SNR
telephone band              0.25  high-pass 250-400 Hz then low-pass 3000-3600 Hz (ITU-T G.712's
                                  300-3400 Hz passband, with a spread)
==========================  ====  ===============================================================

The pitch shift and time stretch of :mod:`training.augment` are deliberately left out: they
changed the voice rather than the room, and hurt a held-out speaker (model card,
"Waveform augmentation, measured and not used").

Each clip's chain is drawn from a seed derived from its file name and the copy number, so a
copy's conditions are reproducible and independent of the clip list (the ray tracer's late tail
is not, sample for sample: pyroomacoustics cannot seed it; a rebuild differs by about 0.1 dB of
log-mel on average). Copies are cached in ``.cache/`` like the clean windows. The test-time
corruption :func:`reverberate` uses a fixed bank of image-source rooms instead, so robustness
figures repeat exactly.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Version of the chain below; part of the cache key (raise it when the chain changes).
ROOM_AUGMENT_VERSION = 1
#: SNR ranges (dB) of white noise and of other talkers.
WHITE_SNR_DB = (0.0, 30.0)
BABBLE_SNR_DB = (5.0, 20.0)
#: Target reverberation time range (s).
RT60_S = (0.2, 0.8)


def room_and_line_chain(background: list[str]):
    """The random augmentation chain (an ``audiomentations.Compose``).

    Args:
        background: Paths of clips to mix in as other talkers (other training speakers' clips).

    Returns:
        A callable ``chain(samples=float32 (n,), sample_rate=int) -> float32 (n,)``.
    """
    import audiomentations as A

    steps = [
        A.RoomSimulator(p=0.5, calculation_mode="rt60", min_target_rt60=RT60_S[0], max_target_rt60=RT60_S[1],
                        use_ray_tracing=True, max_order=3, leave_length_unchanged=True),
    ]
    if background:
        steps.append(A.AddBackgroundNoise(sounds_path=background, min_snr_db=BABBLE_SNR_DB[0],
                                          max_snr_db=BABBLE_SNR_DB[1], p=0.3))
    steps += [
        A.AddGaussianSNR(min_snr_db=WHITE_SNR_DB[0], max_snr_db=WHITE_SNR_DB[1], p=0.5),
        A.Compose([A.HighPassFilter(min_cutoff_freq=250.0, max_cutoff_freq=400.0, p=1.0),
                   A.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=3600.0, p=1.0)], p=0.25),
    ]
    return A.Compose(steps)


_CHAIN = {}


def _seed_all(seed: int) -> None:
    """Seed the random sources the chain draws from (Python's and numpy's global one, which
    audiomentations uses). pyroomacoustics' ray tracer draws from its own generator, which
    ``libroom.set_rng_seed`` does not make repeatable (measured: the late tail of one room differs
    run to run), so a training copy is reproducible in its choices, not sample for sample."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _one(job):
    path, background, config, seed = job
    from stream_ser.audio import load_audio

    from .windows import clip_features

    key = tuple(background)
    if key not in _CHAIN:  # one chain per worker process (it caches loaded background clips)
        _CHAIN.clear()
        _CHAIN[key] = room_and_line_chain(list(background))
    _seed_all(seed)
    x = load_audio(path, config.sample_rate_hz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = _CHAIN[key](samples=x, sample_rate=config.sample_rate_hz)
    y = np.clip(np.nan_to_num(np.asarray(y, dtype=np.float32)), -1.0, 1.0)
    mels, end_s, n = clip_features(y, config)
    arr = np.stack(mels).astype(np.float16) if mels else np.zeros((0, *config.input_shape), np.float16)
    return arr, end_s, n


def build_room_features(utts, config, copy: int, cache_dir: Path | None = Path(".cache"),
                        workers: int | None = None, babble_clips_per_speaker: int = 30):
    """One room-and-line augmented copy of every clip, cut into the runtime's windows (cached).

    Args:
        utts: Training clips (training speakers only: they are also the babble source).
        config: Feature recipe (:class:`stream_ser.features.FeatureConfig`).
        copy: Copy number (0, 1, ...); each copy draws new conditions.
        cache_dir: Cache folder; None disables caching.
        workers: Processes (default: all cores).
        babble_clips_per_speaker: Clips of each training speaker that may be mixed into another
            speaker's clip (the first ones in file-name order).

    Returns:
        A :class:`training.windows.FeatureSet` over ``utts`` (float16 log-mels).
    """
    from .windows import build_cached

    by_speaker: dict[str, list[str]] = {}
    for u in sorted(utts, key=lambda u: u.path.name):
        by_speaker.setdefault(u.speaker, []).append(str(u.path))
    pool_paths = {s: p[:babble_clips_per_speaker] for s, p in by_speaker.items()}

    def others(speaker: str) -> tuple[str, ...]:
        return tuple(p for s, ps in sorted(pool_paths.items()) if s != speaker for p in ps)

    seeds = [int.from_bytes(hashlib.sha1(f"room/{u.path.name}/{copy}".encode()).digest()[:4], "little") for u in utts]
    jobs = [(str(u.path), others(u.speaker), config, s) for u, s in zip(utts, seeds)]
    # grouped by speaker, so each worker keeps one chain (and its loaded background) for a while
    order = sorted(range(len(jobs)), key=lambda i: utts[i].speaker)
    return build_cached(list(utts), config, _one, jobs, "room",
                        salt=f"room-v{ROOM_AUGMENT_VERSION}/{copy}/{babble_clips_per_speaker}/",
                        cache_dir=cache_dir, workers=workers, order=order)


#: Rooms of the test-time reverberation: a fixed bank, so every run hears the same rooms.
TEST_ROOMS = 16


@functools.lru_cache(maxsize=64)
def test_room_rir(index: int, rt60_s: float, sample_rate_hz: int = 16000) -> np.ndarray:
    """Impulse response of test room ``index`` (0 .. :data:`TEST_ROOMS` - 1) at a given RT60.

    A shoebox in the size range of the training rooms (3.6-5.6 x 3.6-3.9 x 2.4-3.0 m), source and
    microphone 0.5-2.5 m apart, wall absorption from Sabine's formula for ``rt60_s``, and the
    image source method (pyroomacoustics, Allen & Berkley 1979) to the order Sabine's formula
    asks for: no ray tracing, so the response is the same on every run and machine (a room at
    0.6 s takes about 2 s to compute, once per process).

    Returns:
        float64 ``(n,)``, the direct path first.
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng(1000 + index)
    dims = np.array([rng.uniform(3.6, 5.6), rng.uniform(3.6, 3.9), rng.uniform(2.4, 3.0)])
    while True:
        src = rng.uniform([0.5, 0.5, 1.0], dims - [0.5, 0.5, 0.9])
        mic = rng.uniform([0.5, 0.5, 1.0], dims - [0.5, 0.5, 0.9])
        if 0.5 <= np.linalg.norm(src - mic) <= 2.5:
            break
    absorption, max_order = pra.inverse_sabine(rt60_s, dims)
    room = pra.ShoeBox(dims, fs=sample_rate_hz, materials=pra.Material(absorption), max_order=max_order,
                       air_absorption=False)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float64)


def reverberate(x: np.ndarray, seed: int, sample_rate_hz: int = 16000, rt60_s: float = 0.6) -> np.ndarray:
    """A test-time corruption: ``x`` played in one of :data:`TEST_ROOMS` fixed rooms.

    Args:
        x: float32 ``(n,)`` at ``sample_rate_hz``.
        seed: Picks the room (``seed % TEST_ROOMS``).
        sample_rate_hz: Sample rate.
        rt60_s: Reverberation time (s) the room's walls are set for.

    Returns:
        float32 ``(n,)``, the same length (the tail past the clip's end is cut) and the same peak.
    """
    import scipy.signal

    x = np.asarray(x, dtype=np.float64)
    h = test_room_rir(int(seed) % TEST_ROOMS, float(rt60_s), int(sample_rate_hz))
    y = scipy.signal.fftconvolve(x, h)[: len(x)]
    peak_in, peak_out = float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0))
    if peak_out > 0:
        y *= peak_in / peak_out
    return np.clip(np.nan_to_num(y), -1.0, 1.0).astype(np.float32)
