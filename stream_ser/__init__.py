"""stream-ser: real-time speech emotion recognition.

Pipeline (see ``../shared/DESIGN.md``)::

    Source (file / microphone) -> RingBuffer -> Engine (every hop) -> sinks (CSV, lines)

The runtime needs numpy, librosa, soundfile, soxr, sounddevice and onnxruntime; it never
imports TensorFlow (training lives in the separate ``training`` package).
"""

__version__ = "0.1.0"
