"""Where a batch writes and how: the output folder's layout, atomic commits, the Parquet schemas
of the timelines and of the summary table, and a recording's summary row."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .inputs import BatchError, Recording

STATUS_OK = "ok"
STATUS_ERROR = "error"


class BatchLayout:
    """Where a batch's outputs go in ``OUT`` (see the module docstring).

    Args:
        root: The output folder; created if missing.

    Raises:
        BatchError: If it cannot be created or written.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            for sub in ("timelines", "status"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BatchError(f"{self.root}: cannot create the output folder ({exc.strerror or exc})") from None
        if not os.access(self.root / "status", os.W_OK | os.X_OK):
            raise BatchError(f"{self.root}: not writable")

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.parquet"

    def timeline_dir(self, rid: str) -> Path:
        """The recording's Hive partition: ``timelines/recording_id=<id>``."""
        return self.root / "timelines" / f"recording_id={rid}"

    def timeline_path(self, rid: str) -> Path:
        return self.timeline_dir(rid) / "timeline.parquet"

    def csv_path(self, rid: str) -> Path:
        return self.root / "csv" / f"{rid}.csv"

    def status_path(self, rid: str) -> Path:
        return self.root / "status" / f"{rid}.json"

    def done_row(self, rid: str, want_csv: bool) -> dict[str, Any] | None:
        """The committed summary row of a recording scored before, or None when it must be scored
        (never scored, failed, a file missing, or the CSV wanted now and not written then)."""
        try:
            row = json.loads(self.status_path(rid).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(row, dict) or row.get("status") != STATUS_OK or not self.timeline_path(rid).is_file():
            return None
        if want_csv and not self.csv_path(rid).is_file():
            return None
        return row


def _temporary(final: Path) -> Path:
    """A hidden, unique name beside ``final`` for writing it (readers skip names with a leading dot)."""
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")


def _commit(tmp: Path, final: Path) -> None:
    """Make ``tmp`` durable and rename it to ``final`` (atomic on one filesystem), then make the
    rename durable (the folder's fsync, best effort)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    try:
        dfd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _write_json(path: Path, obj: Any) -> None:
    tmp = _temporary(path)
    try:
        tmp.write_text(json.dumps(obj) + "\n", encoding="utf-8")
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _clear_temporaries(folder: Path) -> None:
    """Remove what an interrupted run left half-written in ``folder`` (its hidden temporaries)."""
    for stale in folder.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)


def timeline_schema(labels: Sequence[str]):
    """The Parquet schema of a timeline: one row per prediction.

    Columns: ``source`` (the path), ``channel`` (int32: 0 down-mix, else from 1),
    ``channel_name`` (null when unnamed), ``start_s``/``end_s`` (float64, s on the stream clock),
    ``is_speech`` (bool), ``label`` and ``confidence`` (float32; null when not speech),
    ``p_<label>`` (float32 per model label, null when not speech) and ``adaptation``. The
    recording id is the Hive partition (``recording_id=<id>`` folders), a column when read.
    """
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()), ("channel", pa.int32()), ("channel_name", pa.string()),
        ("start_s", pa.float64()), ("end_s", pa.float64()), ("is_speech", pa.bool_()),
        ("label", pa.string()), ("confidence", pa.float32()),
        *((f"p_{label}", pa.float32()) for label in labels),
        ("adaptation", pa.string()),
    ])


def summary_schema(labels: Sequence[str]):
    """The Parquet schema of ``summary.parquet``: one row per recording (see :func:`summary_row`)."""
    import pyarrow as pa

    return pa.schema([
        ("recording_id", pa.string()), ("source", pa.string()), ("status", pa.string()), ("error", pa.string()),
        ("duration_s", pa.float64()), ("channels", pa.list_(pa.string())), ("n_windows", pa.int64()),
        ("speech_s", pa.float64()), ("label", pa.string()),
        *((f"share_{label}", pa.float64()) for label in labels),
        ("emotion_changes", pa.int64()), ("call_summary", pa.string()),
        ("model", pa.string()), ("hop_s", pa.float64()), ("gate", pa.string()), ("adaptation", pa.string()),
        ("scored_at", pa.string()), ("host", pa.string()), ("wall_s", pa.float64()), ("cpu_s", pa.float64()),
    ])


def summary_row(rec: Recording, scored: Any, labels: Sequence[str]) -> dict[str, Any]:
    """A scored recording's row of the summary table.

    ``label`` and ``share_<label>`` are over the speech of all its channels (time in each emotion
    over speech time; null without speech), ``speech_s``, ``n_windows`` and ``emotion_changes``
    are summed over the channels, and ``call_summary`` is the JSON of the call summary (the
    entry ``--summary-json`` writes: per channel speech time, time in each emotion, longest spans,
    emotion changes). The caller adds the timing, host and model columns.
    """
    summary = scored.summary
    speech_s = sum(ch.speech_s for ch in summary.channels)
    per_label = [sum(ch.emotion_s[i] for ch in summary.channels) for i in range(len(labels))]
    shares = {f"share_{lab}": (round(s / speech_s, 4) if speech_s > 0 else None) for lab, s in zip(labels, per_label)}
    return {
        "recording_id": rec.recording_id, "source": rec.path, "status": STATUS_OK, "error": None,
        "duration_s": round(scored.duration_s, 3), "channels": [str(i) for i in scored.plan.ids],
        "n_windows": sum(ch.n_windows for ch in summary.channels), "speech_s": round(speech_s, 3),
        "label": labels[max(range(len(labels)), key=per_label.__getitem__)] if speech_s > 0 else None,
        **shares,
        "emotion_changes": sum(ch.changes for ch in summary.channels),
        "call_summary": json.dumps(summary.to_dict()),
    }


def write_summary(layout: BatchLayout, rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> Path:
    """Write ``summary.parquet`` (one row per recording, :func:`summary_schema`) atomically.

    Returns:
        Its path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = summary_schema(labels)
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    tmp = _temporary(layout.summary_path)
    try:
        pq.write_table(table, tmp)
        _commit(tmp, layout.summary_path)
    finally:
        tmp.unlink(missing_ok=True)
    return layout.summary_path
