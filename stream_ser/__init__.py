"""stream-ser: real-time speech emotion recognition.

Pipeline (see ``docs/architecture.md``)::

    Source (file / microphone) -> RingBuffer -> Engine (every hop) -> sinks (CSV, JSON lines, lines, UI)

The runtime needs numpy, soundfile, soxr, sounddevice, onnxruntime and textual; it never
imports TensorFlow (training lives in the separate ``training`` package), and librosa (the
``librosa`` extra) only for a model whose feature recipe is not built in.

The Python API (:mod:`stream_ser.api`) is re-exported here and imported on first use, so
``import stream_ser`` stays cheap (no numpy, librosa or onnxruntime until you call something)::

    import stream_ser

    result = stream_ser.analyse("clip.flac")
    print(result.clip.label, result.clip.confidence)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public names served lazily from :mod:`stream_ser.api`.
_API_NAMES = (
    "Analysis",
    "AudioSourceError",
    "CallSummary",
    "ChannelPlan",
    "ChannelPlanError",
    "ClipResult",
    "EmotionModel",
    "ModelError",
    "Prediction",
    "ScoredRecording",
    "StreamScorer",
    "analyse",
    "analyse_channels",
    "analyze",
    "load_model",
    "score_recording",
    "stream",
    "stream_file",
    "stream_microphone",
    "summarise_call",
    "summarize_call",
)

__all__ = ["__version__", *_API_NAMES]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from .api import (
        Analysis,
        AudioSourceError,
        CallSummary,
        ChannelPlan,
        ChannelPlanError,
        ClipResult,
        EmotionModel,
        ModelError,
        Prediction,
        ScoredRecording,
        StreamScorer,
        analyse,
        analyse_channels,
        analyze,
        load_model,
        score_recording,
        stream,
        stream_file,
        stream_microphone,
        summarise_call,
        summarize_call,
    )


def __getattr__(name: str) -> Any:
    """Import :mod:`stream_ser.api` on first access of one of its names (PEP 562)."""
    if name in _API_NAMES:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream_ser' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API_NAMES))
