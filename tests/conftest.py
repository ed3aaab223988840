"""Shared pytest fixtures for stream-ser.

``data_dir`` locates the real corpora (``shared/data``, see its README.md):

- ``STREAM_SER_DATA``: path of the data folder; default ``../shared/data``
  beside the repository, i.e. ``Path(__file__).resolve().parents[2] / "shared" / "data"``.
- ``STREAM_SER_REQUIRE_DATA``: when set (to anything but ``""``, ``0``,
  ``false`` or ``no``; CI sets ``1``), a missing data folder fails the tests
  that need it instead of skipping them.

Tests that use ``data_dir`` are marked ``data`` automatically, so
``pytest -m "not data"`` runs only the synthetic tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "STREAM_SER_DATA"
REQUIRE_DATA_ENV = "STREAM_SER_REQUIRE_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_required() -> bool:
    return os.environ.get(REQUIRE_DATA_ENV, "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Path of the real-corpus folder (holding ``ravdess/``, ``tess/``, …).

    Skips the requesting test when the folder is absent, or fails it when
    ``STREAM_SER_REQUIRE_DATA`` is set.
    """
    override = os.environ.get(DATA_ENV, "").strip()
    path = Path(override).expanduser() if override else DEFAULT_DATA_DIR
    if not path.is_dir():
        reason = f"real corpus data not found at {path} (set {DATA_ENV} to the shared/data folder)"
        if _data_required():
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV} is set, so missing data is an error", pytrace=False)
        pytest.skip(reason)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that uses ``data_dir`` with ``@pytest.mark.data``."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


FIXTURES = Path(__file__).parent / "fixtures"
ANGRY_CLIP = FIXTURES / "03-01-05-02-01-01-21.flac"  # RAVDESS actor 21, angry (4.37 s)
HAPPY_CLIP = FIXTURES / "03-01-03-02-02-01-22.flac"  # RAVDESS actor 22, happy (3.67 s)
TESS_CLIP = FIXTURES / "YAF_back_happy.flac"  # TESS YAF, happy (1.91 s)


def read_pty(fd: int, wait_s: float = 0.1) -> bytes | None:
    """One read from a pseudo-terminal: what arrived within ``wait_s`` (``b""`` if nothing), or
    None once the child has closed it."""
    import os
    import select

    ready, _, _ = select.select([fd], [], [], wait_s)
    if not ready:
        return b""
    try:
        data = os.read(fd, 65536)
    except OSError:
        return None
    return data or None


def load_fixture_16k(path: Path):
    """A 16 kHz mono fixture as float32 ``(n,)`` (fails if it is another rate or has channels)."""
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000 and x.ndim == 1
    return np.asarray(x)


def padded(*clips: Path) -> list:
    """The clips at 16 kHz, float32 ``(n,)`` each, zero-padded to the longest."""
    import numpy as np

    from stream_ser.sources import load_audio

    audio = [load_audio(c) for c in clips]
    n = max(a.size for a in audio)
    return [np.pad(a, (0, n - a.size)) for a in audio]


@pytest.fixture(scope="module")
def stereo_call(tmp_path_factory) -> Path:
    """A 48 kHz 24-bit stereo "call": the angry clip on the left, the happy clip on the right."""
    import numpy as np
    import soundfile as sf
    import soxr

    left, right = padded(ANGRY_CLIP, HAPPY_CLIP)
    path = tmp_path_factory.mktemp("call") / "call.wav"
    sf.write(path, soxr.resample(np.stack([left, right], axis=1), 16000, 48000), 48000, subtype="PCM_24")
    return path


def n_hops(path: Path) -> int:
    """The predictions the engine makes per channel for a file (0.5 s hops at 16 kHz)."""
    import soundfile as sf

    from stream_ser.engine import window_ends

    return len(window_ends(round(sf.info(path).duration * 16000), 8000))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Run librosa (the reference of the feature recipe, used by the training and reference
    tests) and the runtime recipe once, saying why the first run after installing is slow
    (librosa compiles numba code: 30-60 s), so the first test does not look hung."""
    import sys
    import time

    t0 = time.monotonic()
    print("\nstream-ser tests: warming up librosa (the first run after installing compiles numba code, 30-60 s)...",
          file=sys.stderr, flush=True)
    import numpy as np

    from stream_ser.features import FeatureConfig, window_features

    cfg = FeatureConfig()
    t = np.arange(cfg.window_samples, dtype=np.float32) / cfg.sample_rate_hz
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    window_features(x, cfg)
    import librosa

    librosa.effects.trim(x, top_db=35, ref=1.0)
    librosa.stft(x, n_fft=cfg.n_fft)
    print(f"stream-ser tests: ready after {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def shipped_model():
    """The shipped model (``models/stream-ser.onnx``), loaded through the runtime."""
    from stream_ser.model import EmotionModel

    return EmotionModel()


def make_tiny_onnx(path: Path, labels: tuple[str, ...] = ("neutral", "happy", "sad"), metadata: str | None = "auto",
                   n_mels: int | None = None, n_frames: int | None = None, seed: int = 0,
                   embedding_adaptation=None, output_prior=None) -> Path:
    """A tiny ONNX classifier built with ``onnx.helper`` (no TensorFlow).

    log_mel (batch, n_mels, n_frames, 1) -> mean over time (``pooled``, float32 (batch, n_mels))
    -> linear -> softmax; ``metadata``: "auto" writes valid stream-ser metadata, None writes none,
    any other string is stored as is. With ``embedding_adaptation`` (an
    :class:`~stream_ser.adaptation.EmbeddingAdaptation`) ``pooled`` is also the graph output it
    names (its embedding: each band's mean level over the window's frames, dB) and "auto"
    metadata carries the entry; ``output_prior`` is written into "auto" metadata as well.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from stream_ser.features import FeatureConfig
    from stream_ser.metadata import METADATA_KEY, ModelMetadata

    cfg = FeatureConfig()
    m = n_mels or cfg.n_mels
    f = n_frames or cfg.n_frames
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((m, len(labels))) * 0.05).astype(np.float32), "W")
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["log_mel", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(labels)])]
    if embedding_adaptation is not None:
        nodes.append(helper.make_node("Identity", ["pooled"], [embedding_adaptation.output]))
        outputs.append(helper.make_tensor_value_info(embedding_adaptation.output, TensorProto.FLOAT, ["batch", m]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", m, f, 1])],
        outputs,
        initializer=[w, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
        made = ModelMetadata(labels, cfg, provenance={"made_by": "tests"}, output_prior=output_prior,
                             embedding_adaptation=embedding_adaptation)
        entry.value = made.to_json() if metadata == "auto" else metadata
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    """Path of a valid tiny ONNX model with stream-ser metadata (3 labels)."""
    return make_tiny_onnx(tmp_path / "tiny.onnx")


class ListenProcess:
    """``stream-ser listen ARGS`` in a subprocess, its stderr read by a thread.

    Attributes:
        proc: The process (stdout is a pipe; read it with ``proc.communicate``).
        stderr_lines: Lines of stderr read so far.
        listening: Set once stderr says "listening to" (or stderr closed).
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import shutil
        import subprocess
        import sys
        import threading

        exe = shutil.which("stream-ser")
        cmd = ([exe] if exe else [sys.executable, "-m", "stream_ser"]) + ["listen", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        self.listening = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if "listening to" in line:
                self.listening.set()
        self.listening.set()

    def join_reader(self, timeout_s: float = 5.0) -> str:
        """Wait for the stderr reader; returns all of stderr read."""
        self._reader.join(timeout=timeout_s)
        return "".join(self.stderr_lines)
