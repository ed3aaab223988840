"""Scoring inside a Ray Data actor: one recording in, its committed outputs and summary row out."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .inputs import Recording
from .outputs import (
    STATUS_ERROR,
    BatchLayout,
    _clear_temporaries,
    _commit,
    _temporary,
    _write_json,
    summary_row,
    timeline_schema,
)


@dataclass(frozen=True)
class BatchOptions:
    """How every recording of a batch is scored (the options of ``stream-ser analyse``).

    Attributes:
        model: An ``.onnx`` model path (readable on every node), or None for the shipped model.
        threads: onnxruntime threads per actor.
        hop_s: Seconds between predictions (None: the model's).
        gate: ``"vad"`` or ``"level"``.
        adapt: The adaptation to each channel's voice (``--adapt``): ``"auto"``,
            ``"embedding"``, ``"output"`` or ``"none"`` (see :func:`stream_ser.api.analyse`).
        channels: None (channels averaged), ``"all"`` or 1-based channel numbers.
        channel_names: A name per scored channel, or None.
        csv: Also write each recording's timeline CSV (as ``analyse --csv``).
    """

    model: str | None = None
    threads: int = 1
    hop_s: float | None = None
    gate: str = "vad"
    adapt: str = "auto"
    channels: Any = None
    channel_names: tuple[str, ...] | None = None
    csv: bool = False


def _adaptation(model: Any, adapt: str) -> str:
    """The adaptation that runs for ``adapt`` on ``model`` (``adapt`` itself if the model cannot
    run it: the recording's row then holds that error)."""
    from ..adaptation import resolve_adapt

    try:
        return resolve_adapt(adapt, model.metadata.embedding_adaptation, model.metadata.output_prior)
    except ValueError:
        return adapt


def score_to_files(model: Any, rec: Recording, options: BatchOptions, layout: BatchLayout) -> dict[str, Any]:
    """Score one recording and commit its outputs; never raises for a bad recording.

    The timeline Parquet (and CSV) are written under temporary names and renamed into place,
    then the status file (the summary row) is committed: it is the mark a re-run checks.

    Returns:
        The recording's summary row: ``status`` ``"ok"``, or ``"error"`` with ``error`` the
        reason (an unreadable or undecodable file, a channel it lacks, names that do not fit
        its channels, a full disk, ...).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..api import score_recording
    from ..sinks import CsvSink

    labels = model.labels
    t0, c0 = time.perf_counter(), time.process_time()
    part = layout.timeline_dir(rec.recording_id)
    tmp_parquet = tmp_csv = None
    try:
        if part.is_dir():
            _clear_temporaries(part)
        scored = score_recording(rec.path, channels=options.channels, channel_names=options.channel_names,
                                 model=model, hop_s=options.hop_s, adapt=options.adapt, gate=options.gate)
        sink = None
        if options.csv:
            layout.csv_path(rec.recording_id).parent.mkdir(exist_ok=True)
            tmp_csv = _temporary(layout.csv_path(rec.recording_id))
            sink = CsvSink(tmp_csv, labels)
        columns: dict[str, list] = {name: [] for name in timeline_schema(labels).names}
        try:
            for p in scored:
                if sink is not None:
                    sink.write(p)
                _add_prediction(columns, p, labels)
        finally:
            if sink is not None:
                sink.close()
        part.mkdir(parents=True, exist_ok=True)
        tmp_parquet = _temporary(layout.timeline_path(rec.recording_id))
        pq.write_table(pa.table(columns, schema=timeline_schema(labels)), tmp_parquet)
        _commit(tmp_parquet, layout.timeline_path(rec.recording_id))
        if tmp_csv is not None:
            _commit(tmp_csv, layout.csv_path(rec.recording_id))
        row = summary_row(rec, scored, labels)
    except Exception as exc:  # a bad recording is a row, never a failed batch
        from ..channels import ChannelPlanError
        from ..sinks import OutputError
        from ..audio import AudioSourceError

        expected = isinstance(exc, (AudioSourceError, ChannelPlanError, OutputError, OSError))
        row = {"recording_id": rec.recording_id, "source": rec.path, "status": STATUS_ERROR,
               "error": str(exc) if expected else f"{type(exc).__name__}: {exc}"}
    finally:
        for tmp in (tmp_parquet, tmp_csv):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    row.update({
        "model": model.name, "hop_s": options.hop_s if options.hop_s is not None else model.feature_config.hop_s,
        "gate": options.gate, "adaptation": _adaptation(model, options.adapt),
        "scored_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": socket.gethostname(),
        "wall_s": round(time.perf_counter() - t0, 4), "cpu_s": round(time.process_time() - c0, 4),
    })
    try:
        _write_json(layout.status_path(rec.recording_id), row)
    except OSError as exc:  # the row still reaches the summary; a re-run scores it again
        row.update(status=STATUS_ERROR, error=f"{layout.status_path(rec.recording_id)}: cannot commit ({exc})")
    return row


def _add_prediction(columns: dict[str, list], p: Any, labels: Sequence[str]) -> None:
    speech = p.is_speech and p.probabilities is not None
    columns["source"].append(p.source)
    columns["channel"].append(p.channel)
    columns["channel_name"].append(p.channel_name)
    columns["start_s"].append(p.start_s)
    columns["end_s"].append(p.end_s)
    columns["is_speech"].append(p.is_speech)
    columns["label"].append(p.label if speech else None)
    columns["confidence"].append(p.confidence if speech else None)
    for label, prob in zip(labels, p.probabilities if speech else (None,) * len(labels)):
        columns[f"p_{label}"].append(prob)
    columns["adaptation"].append(p.adaptation)


class RecordingScorer:
    """The Ray Data actor: loads the model once, then scores the recordings it is handed.

    Ray Data calls it with batches of the input dataset (columns ``path`` and
    ``recording_id``, numpy arrays; one recording per batch) and collects what it returns: a
    column ``row`` holding each recording's summary row as JSON text.

    Args:
        options: The :class:`BatchOptions`.
        out_dir: The output folder (shared by every node).

    Raises:
        ModelError: If the model cannot be loaded on this node (the actor fails to start).
    """

    def __init__(self, options: BatchOptions, out_dir: str) -> None:
        from threadpoolctl import threadpool_limits

        from ..model import EmotionModel

        threadpool_limits(limits=1, user_api="blas")  # this process only scores (see one_blas_thread)
        self.options = options
        self.layout = BatchLayout(out_dir)
        self.model = EmotionModel(options.model, num_threads=options.threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [score_to_files(self.model, Recording(str(path), str(rid)), self.options, self.layout)
                for path, rid in zip(batch["path"], batch["recording_id"])]
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}
