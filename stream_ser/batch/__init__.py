"""Archives of recorded calls on Ray Data: ``stream-ser batch`` (``docs/batch.md``).

Ray Data takes the list of recordings and hands them, one at a time, to a pool of actors; each
actor loads the model once and scores every recording it gets with
:func:`stream_ser.api.score_recording`, the path ``stream-ser analyse`` runs, so a recording's
timeline here is the one ``analyse`` writes for it. ``ray.init()`` without an address starts Ray
on this machine (or joins the cluster ``ray start --head`` started here); ``--ray-address`` or
``RAY_ADDRESS`` joins a cluster.

Outputs in ``OUT`` (every path must be one that every node reads and writes, a shared
filesystem, when Ray runs on several machines)::

    OUT/timelines/recording_id=<id>/timeline.parquet   one row per prediction (Hive partitions)
    OUT/csv/<id>.csv                                   with --csv: the CSV `analyse --csv` writes
    OUT/status/<id>.json                               the recording's summary row: its commit mark
    OUT/summary.parquet                                one row per recording of the run

Each recording is committed on its own: its files are written under temporary names (hidden:
they start with ``.``, which pyarrow, DuckDB's globs and Spark skip), made durable (fsync) and
renamed into place, the status file last. A re-run skips the recordings whose status says
``ok`` (and whose files are there), retries the failed ones, and rewrites ``summary.parquet``
for all of its inputs. A recording that cannot be read or scored becomes a row with
``status = "error"`` and the message; it never fails the job.

Modules: :mod:`.inputs` (manifests, globs, recording ids), :mod:`.outputs` (the layout above,
atomic commits, the Parquet schemas, the summary row), :mod:`.scoring` (the actor) and this one,
the driver (:func:`run_batch`).

Threads and processes: each actor is a process of its own with one CPU (``num_cpus=1``), one
onnxruntime thread and numpy's BLAS on one thread; the driver only lists, schedules and
collects. Ray and pyarrow are imported when a batch runs (the ``batch`` extra:
``pip install "stream-ser[batch]"``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .inputs import MANIFEST_SUFFIXES, BatchError, Recording, read_inputs, read_manifest, recording_id  # noqa: F401
from .outputs import (  # noqa: F401
    STATUS_ERROR,
    STATUS_OK,
    BatchLayout,
    summary_schema,
    timeline_schema,
    write_summary,
)
from .scoring import BatchOptions, RecordingScorer, score_to_files  # noqa: F401

__all__ = [
    "MANIFEST_SUFFIXES",
    "STATUS_ERROR",
    "STATUS_OK",
    "BatchError",
    "BatchLayout",
    "BatchOptions",
    "BatchReport",
    "Recording",
    "RecordingScorer",
    "read_inputs",
    "read_manifest",
    "recording_id",
    "run_batch",
    "score_to_files",
    "summary_schema",
    "timeline_schema",
    "write_summary",
]

log = logging.getLogger("stream_ser")

#: Most blocks Ray Data splits the list into (one recording per block up to this many, so idle
#: actors always find work; beyond it the blocks hold several recordings each).
MAX_BLOCKS = 10_000


@dataclass
class BatchReport:
    """What a batch did.

    Attributes:
        rows: The summary row of every input recording (scored now or before), in input order.
        scored: Recordings scored by this run; ``skipped`` were done before; ``failed`` have
            ``status == "error"``.
        audio_s: Audio scored by this run (s).
        workers: Actors used (0 when nothing was left to score).
        ray_init_s: Time to start or join Ray (s).
        first_row_s: From the start of the scoring to the first recording done (s): actor
            start-up (a process, imports, the model) and scheduling, plus one recording.
        run_s: From the start of the scoring to the last recording done (s).
        total_s: The whole call, listing and summary included (s).
        interrupted: True when Ctrl-C ended it early.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0
    workers: int = 0
    ray_init_s: float = 0.0
    first_row_s: float = 0.0
    run_s: float = 0.0
    total_s: float = 0.0
    interrupted: bool = False


def _ray():
    try:
        import pyarrow.parquet  # noqa: F401  (the outputs)
        import ray
        import ray.data
    except ImportError as exc:
        raise BatchError(f'stream-ser batch needs Ray Data and pyarrow ({exc.name} is missing): '
                         'pip install "stream-ser[batch]"') from None
    return ray


def _quiet_ray_logs(verbose: bool) -> None:
    """Ray Data's own progress bars and per-dataset log lines off (stream-ser prints its own
    progress), unless ``verbose``."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


def run_batch(
    recordings: Sequence[Recording],
    out_dir: str | os.PathLike[str],
    options: BatchOptions = BatchOptions(),
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    redo: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> BatchReport:
    """Score recordings on Ray Data, resumably, and write the summary table.

    Args:
        recordings: From :func:`read_inputs`.
        out_dir: The output folder (created if missing).
        options: How to score.
        workers: Actors, each one CPU and one copy of the model; None: every CPU of the cluster.
        ray_address: A cluster to join (``ray start`` prints it); None: ``RAY_ADDRESS``, else a
            cluster started on this machine, else a new local Ray. An already initialised Ray
            (``ray.init`` called by the caller) is used as it is and left running.
        redo: Score every recording again, even those done before.
        on_row: Called with each recording's summary row as it is done (on this thread).
        verbose: Leave Ray's own logs and progress bars on.

    Returns:
        The :class:`BatchReport`; ``OUT/summary.parquet`` then holds ``report.rows``.

    Raises:
        BatchError: The output folder is unusable or the ``batch`` extra is missing.
        ModelError: The model cannot be loaded (checked here, before Ray starts).
        ValueError: A bad hop or gate.
        ConnectionError: No Ray cluster at ``ray_address``.
    """
    from ..engine import ChannelEngines
    from ..model import EmotionModel

    t_start = time.perf_counter()
    report = BatchReport()
    layout = BatchLayout(out_dir)
    model = EmotionModel(options.model, num_threads=1)
    ChannelEngines(model, hop_s=options.hop_s, gate=options.gate)  # a bad hop or gate fails here, not per recording
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for rec in recordings:
        row = None if redo else layout.done_row(rec.recording_id, options.csv)
        if row is None:
            todo.append(rec)
        else:
            rows[rec.recording_id] = row
    report.skipped = len(rows)
    ray = _ray()
    started_ray = False
    try:
        if todo:
            t0 = time.perf_counter()
            if not ray.is_initialized():
                ray.init(address=ray_address, include_dashboard=False,
                         logging_level=logging.INFO if verbose else logging.ERROR, log_to_driver=verbose)
                started_ray = True
            report.ray_init_s = time.perf_counter() - t0
            _quiet_ray_logs(verbose)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            report.workers = max(1, min(workers or cpus, len(todo)))
            for row in _score_on_ray(ray, todo, layout, options, report):
                rows[row["recording_id"]] = row
                report.scored += 1
                report.audio_s += row.get("duration_s") or 0.0
                if on_row is not None:
                    on_row(row)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        if started_ray:
            ray.shutdown()
        report.rows = [rows[r.recording_id] for r in recordings if r.recording_id in rows]
        report.failed = sum(1 for r in report.rows if r.get("status") != STATUS_OK)
        write_summary(layout, report.rows, model.labels)
        report.total_s = time.perf_counter() - t_start
    return report


def _score_on_ray(ray: Any, todo: Sequence[Recording], layout: BatchLayout, options: BatchOptions,
                  report: BatchReport) -> Iterator[dict[str, Any]]:
    """The rows of ``todo`` as the actors finish them (any order); fills the report's timings."""
    items = [{"path": r.path, "recording_id": r.recording_id} for r in todo]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    ds = ds.map_batches(
        RecordingScorer,
        fn_constructor_kwargs={"options": options, "out_dir": str(layout.root)},
        batch_size=1,
        num_cpus=1,
        # a fixed pool; one task at a time per actor, so a free actor takes the next recording
        compute=ray.data.ActorPoolStrategy(size=report.workers, max_tasks_in_flight_per_actor=1),
    )
    t0 = time.perf_counter()
    for n, item in enumerate(ds.iter_rows()):
        if n == 0:
            report.first_row_s = time.perf_counter() - t0
        report.run_s = time.perf_counter() - t0
        yield json.loads(item["row"])
