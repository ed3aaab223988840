"""ONNX model loading and validation (onnxruntime; never TensorFlow).

Sits between the feature recipe and the engine: :class:`EmotionModel` takes log-mel windows
and returns class probabilities. Its labels and feature recipe come only from the model file's
metadata (:mod:`stream_ser.metadata`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from .metadata import METADATA_KEY, ModelMetadata, ModelMetadataError

#: File name of the shipped model (``models/`` in the repository, ``stream_ser/models/`` once
#: installed).
DEFAULT_MODEL_NAME = "stream-ser.onnx"
#: Most onnxruntime intra-op threads a model may be given (``--threads``).
MAX_THREADS = 64
#: How far a row of the model's output may sum from 1 and still count as probabilities: room
#: for float16 and 8-bit quantised outputs (float32 softmax rows are within 1e-6).
PROBABILITY_SUM_TOLERANCE = 0.01
#: The environment variable that turns off onnxruntime's telemetry (set to 1 unless already
#: set). onnxruntime 1.2x and later on Linux and macOS otherwise writes a device identifier and
#: an event database under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` on every run, and
#: warns ("Failed to persist telemetry device ID") where the home folder is read-only. It is read
#: when onnxruntime is first imported, so it has no effect in a process that imported onnxruntime
#: before stream-ser's model.
ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def _onnxruntime():
    """Import onnxruntime with its telemetry off (:data:`ORT_TELEMETRY_ENV`)."""
    os.environ.setdefault(ORT_TELEMETRY_ENV, "1")
    import onnxruntime

    return onnxruntime


class ModelError(RuntimeError):
    """The model file cannot be used (missing, not ONNX, bad metadata, wrong shapes)."""


def default_model_path() -> Path:
    """Locate the shipped model.

    Looks in the installed package (``stream_ser/models/``), then in the source checkout's
    ``models/`` folder (editable installs and running from the repository).

    Raises:
        ModelError: If neither holds the model.
    """
    candidates = [
        Path(str(resources.files("stream_ser") / "models" / DEFAULT_MODEL_NAME)),
        Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelError(
        "the shipped model was not found (looked in: " + ", ".join(str(p) for p in candidates) + "); "
        "pass --model PATH or reinstall stream-ser"
    )


class EmotionModel:
    """An emotion classifier in ONNX format, run with onnxruntime.

    Args:
        path: The ``.onnx`` file; None for the shipped model (:func:`default_model_path`).
        num_threads: onnxruntime intra-op threads, 1 to :data:`MAX_THREADS`; 1 keeps live
            scoring off the other cores.

    Attributes:
        path: The model file.
        metadata: Parsed :class:`~stream_ser.metadata.ModelMetadata`.
        labels: Class names in output order.
        feature_config: The feature recipe the model expects.

    Raises:
        ValueError: If ``num_threads`` is not an integer from 1 to :data:`MAX_THREADS`.
        ModelError: If the file is missing or not a loadable ONNX model, its metadata is missing
            or invalid, its input/output shapes do not match the metadata, or its feature
            recipe needs librosa (:func:`~stream_ser.features.needs_librosa`) and librosa is
            not installed (the ``librosa`` extra).

    Thread safety: :meth:`predict` may be called from one thread at a time per instance
    (onnxruntime sessions are thread-safe, but the engine keeps one caller per model).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, num_threads: int = 1) -> None:
        ort = _onnxruntime()

        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or not 1 <= num_threads <= MAX_THREADS:
            raise ValueError(f"num_threads must be an integer from 1 to {MAX_THREADS}, got {num_threads!r}")
        self.path = Path(path) if path is not None else default_model_path()
        if not self.path.is_file():
            what = "is not a regular file (a pipe, a device or a folder)" if self.path.exists() else "model file not found"
            raise ModelError(f"{self.path}: {what}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        meta_map = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta_map:
            raise ModelError(
                f"{self.path}: no '{METADATA_KEY}' metadata; export models with "
                "`python -m training.export` so labels and the feature recipe travel with them"
            )
        try:
            self.metadata = ModelMetadata.from_json(meta_map[METADATA_KEY])
        except ModelMetadataError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        self.labels = self.metadata.labels
        self.feature_config = self.metadata.feature_config
        self._check_io()
        self._check_librosa()

    def _check_librosa(self) -> None:
        """A recipe whose filterbank or window is not built in needs librosa, an optional
        extra of the runtime: say so at load time, before any audio."""
        import importlib.util

        from .features import needs_librosa

        if needs_librosa(self.feature_config) and importlib.util.find_spec("librosa") is None:
            raise ModelError(
                f"{self.path}: its feature recipe (mel bands {self.feature_config.fmin_hz:g}-"
                f"{self.feature_config.fmax_hz:g} Hz, {self.feature_config.n_mels} bands, window "
                f"{self.feature_config.window}) is not built into stream-ser and needs librosa: "
                "pip install 'stream-ser[librosa]'"
            )

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        meta = self.metadata
        if meta.input_name not in inputs:
            raise ModelError(f"{self.path}: input '{meta.input_name}' not in graph inputs {list(inputs)}")
        if meta.output_name not in outputs:
            raise ModelError(f"{self.path}: output '{meta.output_name}' not in graph outputs {list(outputs)}")
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: the graph takes inputs {list(inputs)}; only '{meta.input_name}' is fed")
        want_in = (*self.feature_config.input_shape, 1)
        shape = inputs[meta.input_name].shape
        if len(shape) != 4 or tuple(shape[1:]) != want_in:
            raise ModelError(
                f"{self.path}: input shape {shape} does not match the feature config "
                f"(batch, {want_in[0]}, {want_in[1]}, 1)"
            )
        if inputs[meta.input_name].type != "tensor(float)":
            raise ModelError(f"{self.path}: input '{meta.input_name}' is {inputs[meta.input_name].type}, not tensor(float)")
        if outputs[meta.output_name].type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
            raise ModelError(
                f"{self.path}: output '{meta.output_name}' is {outputs[meta.output_name].type}, not a float tensor"
            )
        out_shape = outputs[meta.output_name].shape
        if len(out_shape) != 2 or out_shape[1] != len(self.labels):
            raise ModelError(
                f"{self.path}: output shape {out_shape} does not match {len(self.labels)} labels"
            )
        emb = meta.embedding_adaptation
        if emb is not None:
            if emb.output not in outputs:
                raise ModelError(f"{self.path}: the embedding adaptation's output '{emb.output}' is not in graph "
                                 f"outputs {list(outputs)}")
            if outputs[emb.output].type != "tensor(float)":
                raise ModelError(f"{self.path}: embedding output '{emb.output}' is {outputs[emb.output].type}, "
                                 "not tensor(float)")
            emb_shape = outputs[emb.output].shape
            if len(emb_shape) != 2 or (isinstance(emb_shape[1], int) and emb_shape[1] != emb.dim):
                raise ModelError(f"{self.path}: embedding output '{emb.output}' has shape {emb_shape}, not "
                                 f"(batch, {emb.dim}) as its adaptation's prior")

    @property
    def name(self) -> str:
        """Short model name (file stem)."""
        return self.path.stem

    def predict(self, log_mels: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of log-mel windows.

        Args:
            log_mels: float32 array of shape ``(batch, n_mels, n_frames)`` (or one window of shape
                ``(n_mels, n_frames)``), as made by :func:`stream_ser.features.window_features`.

        Returns:
            float32 array of shape ``(batch, n_labels)`` (or ``(n_labels,)`` for one window):
            finite, non-negative, rows summing to 1 (within
            :data:`PROBABILITY_SUM_TOLERANCE`).

        Raises:
            ValueError: If the shape does not match ``feature_config.input_shape``.
            ModelError: If the model fails to run, or its output is not class probabilities:
                another shape, a value that is NaN, infinite or negative, or a row that does not
                sum to 1.
        """
        probs, _, single = self._run(log_mels, ())
        return probs[0] if single else probs

    def _run(self, log_mels: np.ndarray, extra: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray], bool]:
        """One onnxruntime run: ``(probabilities (batch, n_labels), [each output of extra],
        single window given)``, the probabilities checked as :meth:`predict` says."""
        x = np.asarray(log_mels, dtype=np.float32)
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != self.feature_config.input_shape:
            raise ValueError(
                f"expected log-mels of shape (batch, {self.feature_config.input_shape[0]}, "
                f"{self.feature_config.input_shape[1]}), got {np.asarray(log_mels).shape}"
            )
        try:
            probs, *others = self._session.run([self.metadata.output_name, *extra],
                                               {self.metadata.input_name: x[..., None]})
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelError(f"{self.path}: model {self.name} failed to run ({' '.join(str(exc).split())})") from None
        # one vectorised check per call (the per-hop path): NaN fails both comparisons, an
        # infinity makes its row's sum infinite
        if probs.shape != (x.shape[0], len(self.labels)) or (
            probs.size
            and not (probs.min() >= 0.0 and np.abs(probs.sum(axis=1) - 1.0).max() <= PROBABILITY_SUM_TOLERANCE)
        ):
            raise ModelError(f"{self.path}: model {self.name} {self._not_probabilities(probs, x.shape[0])}")
        return probs, others, single

    def predict_with_embedding(self, log_mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and the embedding of the model's embedding adaptation, from one run.

        Used by the engine only when embedding adaptation runs (:class:`~stream_ser.adaptation.EmbeddingAdapter`);
        :meth:`predict` asks the graph for the probabilities alone.

        Args:
            log_mels: As for :meth:`predict`.

        Returns:
            ``(probabilities, embeddings)``: the probabilities as :meth:`predict` returns them,
            and float32 ``(batch, dim)`` (or ``(dim,)`` for one window), the graph output that
            ``metadata.embedding_adaptation.output`` names.

        Raises:
            ValueError: As :meth:`predict`, or if the model carries no ``embedding_adaptation``.
            ModelError: As :meth:`predict`, or if the embedding is not finite or not of shape
                ``(batch, dim)``.
        """
        emb = self.metadata.embedding_adaptation
        if emb is None:
            raise ValueError(f"model {self.name} carries no embedding adaptation (no 'embedding_adaptation' entry)")
        probs, (e,), single = self._run(log_mels, (emb.output,))
        want = (probs.shape[0], emb.dim)
        if e.shape != want or not np.all(np.isfinite(e)):
            what = f"shape {e.shape} instead of {want}" if e.shape != want else "a value that is not finite"
            raise ModelError(f"{self.path}: model {self.name} gave an embedding with {what}")
        return (probs[0], e[0]) if single else (probs, e)

    def _not_probabilities(self, probs: np.ndarray, batch: int) -> str:
        """What is wrong with an output that failed :meth:`predict`'s check (one line)."""
        want = "finite, non-negative and summing to 1 per row"
        if probs.shape != (batch, len(self.labels)):
            return f"output shape {probs.shape} instead of ({batch}, {len(self.labels)}) for {len(self.labels)} labels"
        if np.isnan(probs).any():
            return f"output NaN instead of class probabilities ({want})"
        if np.isinf(probs).any():
            return f"output an infinite value instead of class probabilities ({want})"
        if (probs < 0).any():
            return f"output a negative value ({float(probs.min()):g}) instead of class probabilities ({want})"
        sums = probs.sum(axis=1, dtype=np.float64)
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        return f"output a row summing to {worst:g} instead of class probabilities ({want})"
