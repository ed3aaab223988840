"""Training windows and the feature cache.

Each clip is cut into exactly the windows the runtime engine would score when the file is
streamed through ``stream-ser analyse`` (:func:`stream_ser.engine.window_ends` and
:func:`stream_ser.engine.cut_window`: every hop of 0.5 s, plus the final partial hop), and each
window goes through the one feature recipe, :func:`stream_ser.features.window_features`. Windows
the speech gate rejects are kept out of training (the runtime gives them no label) but counted.
The gate is the one the recipe names (``FeatureConfig.speech_gate``): ``"vad"``, the runtime's
default (the level gate and Silero VAD, :func:`vad_speech_windows`), or ``"level"`` alone.

Features are cached on disk (``.cache/features-<key>.npz``, float16 log-mels) keyed by the
feature config and the list of files, because computing them takes a few minutes on 2 cores
while training runs many times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ser.engine import cut_window, window_ends
from stream_ser.features import FeatureConfig, window_features
from stream_ser.audio import load_audio

from .corpora import Utterance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Log-mel windows of a list of clips.

    Attributes:
        utterances: The clips, in order.
        log_mels: float16 array ``(n_windows, n_mels, n_frames)``: speech windows only.
        clip_index: int32 array ``(n_windows,)``: index into ``utterances`` of each window.
        end_s: float32 array ``(n_windows,)``: window end on the clip's clock (s).
        windows_per_clip: int32 array ``(n_clips,)``: all windows the engine scores per clip,
            speech or not.
    """

    utterances: tuple[Utterance, ...]
    log_mels: np.ndarray
    clip_index: np.ndarray
    end_s: np.ndarray
    windows_per_clip: np.ndarray

    def select(self, speakers: frozenset[str]) -> "FeatureSet":
        """The subset of clips (and their windows) whose speaker is in ``speakers``."""
        return self.select_clips(np.array([u.speaker in speakers for u in self.utterances], dtype=bool))

    def select_clips(self, keep_clip: np.ndarray) -> "FeatureSet":
        """The subset of clips (and their windows) where ``keep_clip``, a bool ``(n_clips,)``, is True."""
        keep_clip = np.asarray(keep_clip, dtype=bool)
        new_index = np.cumsum(keep_clip) - 1
        keep_win = keep_clip[self.clip_index]
        return FeatureSet(
            tuple(u for u, k in zip(self.utterances, keep_clip) if k),
            self.log_mels[keep_win],
            new_index[self.clip_index[keep_win]].astype(np.int32),
            self.end_s[keep_win],
            self.windows_per_clip[keep_clip],
        )


#: This process's Silero frame scorer (:func:`vad_speech_windows`), made on first use: each
#: worker of the feature pool loads the model once.
_VAD_SCORER = None


def vad_speech_windows(samples: np.ndarray, ends: list[int], config: FeatureConfig) -> np.ndarray:
    """The voice-activity half of the runtime's ``"vad"`` gate for the windows of one clip.

    The same decisions an :class:`stream_ser.engine.Engine` with ``gate="vad"`` takes when the
    clip is streamed from its first sample: Silero VAD (the shipped model) scores every 32 ms
    frame once from a fresh state (:func:`stream_ser.vad.frame_scores`, the numbers
    :class:`stream_ser.vad.VoiceActivity` computes in a stream), and a window is speech when at
    least :data:`stream_ser.vad.DEFAULT_MIN_SPEECH_S` of whole frames inside it reach
    :data:`stream_ser.vad.DEFAULT_THRESHOLD`. ``tests/test_training.py`` checks that the windows
    kept are exactly the engine's speech windows.

    Args:
        samples: float32 mono audio at ``config.sample_rate_hz``, shape ``(n,)``.
        ends: Window ends (exclusive sample indices at ``config.sample_rate_hz``).
        config: Feature recipe (rate and window length).

    Returns:
        bool ``(len(ends),)``: the detector finds speech in the window.

    Raises:
        ValueError: If ``config.sample_rate_hz`` is not 16 kHz, the detector's rate (the engine
            resamples a stream for it as it arrives; training at another rate would need the
            same streaming resampler here).
        FileNotFoundError: If the Silero model cannot be found (:func:`stream_ser.vad.find_silero_model`).
    """
    from stream_ser.vad import (DEFAULT_MIN_SPEECH_S, DEFAULT_THRESHOLD, SAMPLE_RATE_HZ, frame_scores,
                                make_scorer, window_speech_s)

    global _VAD_SCORER
    if config.sample_rate_hz != SAMPLE_RATE_HZ:
        raise ValueError(f"the vad training gate works at {SAMPLE_RATE_HZ} Hz, the recipe is at "
                         f"{config.sample_rate_hz} Hz; use speech_gate='level'")
    if _VAD_SCORER is None:
        _VAD_SCORER = make_scorer("silero")
    decisions = frame_scores(samples, _VAD_SCORER) >= DEFAULT_THRESHOLD
    speech_s = window_speech_s(decisions, np.asarray(ends, np.int64), config.window_samples, _VAD_SCORER.frame_samples)
    return speech_s >= DEFAULT_MIN_SPEECH_S - 1e-9


def clip_features(samples: np.ndarray, config: FeatureConfig) -> tuple[list[np.ndarray], list[float], int]:
    """The engine's windows of one clip, through the speech gate of the recipe and its features.

    Args:
        samples: float32 mono audio at ``config.sample_rate_hz``, shape ``(n,)``.
        config: Feature recipe; ``config.speech_gate`` picks the gate (``"vad"``: the detector
            of :func:`vad_speech_windows` and then the level gate, as the engine; ``"level"``:
            the level gate alone).

    Returns:
        (log-mels of the speech windows, their end times in s, number of windows scored).
    """
    ends = window_ends(samples.size, config.hop_samples)
    voiced = (vad_speech_windows(samples, ends, config) if config.speech_gate == "vad"
              else np.ones(len(ends), dtype=bool))
    mels, end_s = [], []
    for end, voice in zip(ends, voiced):
        if not voice:
            continue
        feats = window_features(cut_window(samples, end, config.window_samples), config)
        if feats is not None:
            mels.append(feats)
            end_s.append(end / config.sample_rate_hz)
    return mels, end_s, len(ends)


def _one(args: tuple[str, FeatureConfig]) -> tuple[np.ndarray, list[float], int]:
    path, config = args
    mels, end_s, n = clip_features(load_audio(path, config.sample_rate_hz), config)
    arr = np.stack(mels).astype(np.float16) if mels else np.zeros((0, *config.input_shape), np.float16)
    return arr, end_s, n


def cache_key(utts: list[Utterance], config: FeatureConfig, salt: str = "") -> str:
    """16 hex digits naming a cached :class:`FeatureSet`: ``salt``, the recipe and every clip's
    corpus, file name and size (a changed file or recipe makes a new key)."""
    h = hashlib.sha1(salt.encode() + json.dumps(config.to_dict(), sort_keys=True).encode())
    for u in utts:
        h.update(f"{u.corpus}/{u.path.name}/{u.path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def build_cached(utts: list[Utterance], config: FeatureConfig, worker, jobs: list, name: str, salt: str = "",
                 cache_dir: Path | None = Path(".cache"), workers: int | None = None,
                 order: list[int] | None = None) -> FeatureSet:
    """Run ``worker`` over ``jobs`` (one per clip) in a process pool and assemble a cached :class:`FeatureSet`.

    The clean windows (:func:`build_features`) and the augmented copies
    (:mod:`training.augment`, :mod:`training.room`) are all built and cached this way.

    Args:
        utts: The clips, in the order of ``jobs``.
        config: Feature recipe (part of the cache key).
        worker: Picklable ``job -> (float16 (windows, n_mels, n_frames) log-mels, end times in s,
            windows scored)``.
        jobs: One job per clip.
        name: Cache file prefix and progress label (``features``, ``room``, …).
        salt: Extra cache-key text (the augmentation's version and copy).
        cache_dir: Folder of the cache (``{name}-{key}.npz``); None disables caching.
        workers: Processes; default: all cores.
        order: The order to run the jobs in (e.g. grouped by speaker); results keep the clip order.

    Returns:
        A :class:`FeatureSet` over ``utts`` in order.
    """
    path = cache_dir / f"{name}-{cache_key(utts, config, salt)}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        data = np.load(path)
        log.info("%s: loaded %d windows from %s", name, data["log_mels"].shape[0], path)
        return FeatureSet(tuple(utts), data["log_mels"], data["clip_index"], data["end_s"], data["windows_per_clip"])
    t0 = time.monotonic()
    order = list(range(len(jobs))) if order is None else list(order)
    results: list = [None] * len(jobs)
    # a process that has started TensorFlow's threads must not fork (a forked child can abort on
    # a lock one of those threads held): start the workers fresh then
    context = multiprocessing.get_context("spawn") if "tensorflow" in sys.modules else None
    with ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=context) as pool:
        for k, res in enumerate(pool.map(worker, [jobs[i] for i in order], chunksize=16)):
            results[order[k]] = res
            if (k + 1) % 500 == 0 or k + 1 == len(jobs):
                rate = (k + 1) / (time.monotonic() - t0)
                log.info("%s: %d/%d clips (%.0f clips/s, ETA %.0f s)", name, k + 1, len(jobs), rate,
                         (len(jobs) - k - 1) / rate)
    mels, idx, ends, counts = [], [], [], []
    for i, (arr, end_s, n) in enumerate(results):
        mels.append(arr)
        idx.extend([i] * arr.shape[0])
        ends.extend(end_s)
        counts.append(n)
    fs = FeatureSet(
        tuple(utts),
        np.concatenate(mels) if mels else np.zeros((0, *config.input_shape), np.float16),
        np.asarray(idx, np.int32),
        np.asarray(ends, np.float32),
        np.asarray(counts, np.int32),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, log_mels=fs.log_mels, clip_index=fs.clip_index, end_s=fs.end_s, windows_per_clip=fs.windows_per_clip)
        log.info("%s: cached %d windows in %s (%.0f s)", name, fs.log_mels.shape[0], path, time.monotonic() - t0)
    return fs


def build_features(
    utts: list[Utterance], config: FeatureConfig, cache_dir: Path | None = Path(".cache"), workers: int | None = None
) -> FeatureSet:
    """Compute (or load from the cache) the speech-window log-mels of every clip.

    Args:
        utts: Clips to featurise.
        config: Feature recipe (part of the cache key).
        cache_dir: Folder of the cache; None disables caching.
        workers: Processes; default: all cores.

    Returns:
        A :class:`FeatureSet` over ``utts`` in order.
    """
    jobs = [(str(u.path), config) for u in utts]
    return build_cached(utts, config, _one, jobs, "features", cache_dir=cache_dir, workers=workers)
