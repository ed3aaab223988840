"""Scoring one call, on its worker thread: :class:`CallScorer` (one
:class:`~stream_ser.api.StreamScorer` per channel, the clips and the call summary) and
:class:`CallFiles` (the call's CSV, JSON lines and summary), and the worker threads that run
them (one model each) with the load they report.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import DECODERS, MAX_GAP_S, MIN_GAP_S, CallFormat


class CallFiles:
    """A call's output files in ``out_dir``: ``STEM.csv``, ``STEM.jsonl``, ``STEM.summary.json``.

    ``STEM`` is the UTC start time and the call's name with every character outside
    ``A-Z a-z 0-9 . _ -`` replaced by ``_`` (at most 80 of them), e.g.
    ``20250101T120000Z-CA0123.csv``; ``-2``, ``-3``, ... is added when a file of that name exists, so
    no file is ever overwritten.

    Args:
        out_dir: The folder.
        source: The call's name.
        labels: The model's labels (the CSV's columns).

    Raises:
        OutputError: If the files cannot be created.

    Thread: the call's worker.
    """

    def __init__(self, out_dir: str | os.PathLike[str], source: str, labels: tuple[str, ...]) -> None:
        from ..sinks import CsvSink, JsonLinesSink, OutputError
        from ..summary import SummaryJsonFile

        safe = re.sub(r"[^A-Za-z0-9._-]", "_", source)[:80].lstrip(".") or "call"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        folder = Path(out_dir)
        for n in range(1, 1000):
            stem = f"{stamp}-{safe}" + ("" if n == 1 else f"-{n}")
            paths = [folder / f"{stem}{suffix}" for suffix in (".csv", ".jsonl", ".summary.json")]
            if not any(os.path.lexists(p) for p in paths):
                break
        else:
            raise OutputError(f"{folder}: no free file name for call {safe}")
        self.csv_path, self.jsonl_path, self.summary_path = paths
        self.csv = CsvSink(self.csv_path, labels)
        try:
            self.jsonl = JsonLinesSink(self.jsonl_path)
            try:
                self.summary = SummaryJsonFile(self.summary_path)
            except BaseException:
                self.jsonl.close()
                raise
        except BaseException:
            self.csv.close()
            raise

    def close(self, summary=None) -> None:
        """Write the summary (if given) and close the three files (idempotent).

        Raises:
            OutputError: If a file cannot be finished (a full disk); all are closed anyway.
        """
        from ..sinks import OutputError

        failure = None
        if summary is not None and not self.summary.summaries:
            self.summary.add(summary)
        for closing in (self.summary.close, self.jsonl.close, self.csv.close):
            try:
                closing()
            except OutputError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class CallScorer:
    """Scores one call: one :class:`~stream_ser.api.StreamScorer` per channel.

    Args:
        model: The worker's model.
        fmt: The call's format.
        hop_s: Seconds of new audio between predictions (None: the model's).
        gate: The speech gate.
        out_dir: Folder for the call's files, or None.
        adapt: The adaptation to each channel's voice (see :class:`~stream_ser.engine.Engine`).

    Attributes:
        fmt: As given.
        numbers: The channels' numbers (``(0,)`` for unnamed mono, else 1, 2).
        received: Samples taken per channel, at the call's rate (gap silence included).
        files: The call's :class:`CallFiles`, or None.

    Raises:
        ModelError: If the speech gate's model cannot be loaded.
        OutputError: If the call's files cannot be created.

    Thread: one at a time (the call's worker).
    """

    def __init__(self, model, fmt: CallFormat, hop_s: float | None = None, gate: str = "vad",
                 out_dir: str | None = None, adapt: str = "auto") -> None:
        from ..api import StreamScorer
        from ..engine import ClipAccumulator
        from ..summary import CallSummaryBuilder

        self.fmt = fmt
        self.model = model
        self.gate = gate
        self.labels = model.labels
        self.numbers = fmt.plan.numbers
        self.names = fmt.plan.names
        self.scorers = [StreamScorer(model, fmt.sample_rate_hz, hop_s=hop_s, source=fmt.source, channel=n, gate=gate,
                                    adapt=adapt)
                        for n in self.numbers]
        self.hop_s = self.scorers[0].hop_s
        self.builder = CallSummaryBuilder(fmt.source, self.labels, self.hop_s, self.numbers, self.names,
                                          fmt.plan.descriptions)
        self.clips = [ClipAccumulator(self.labels) for _ in self.numbers]
        self.received = [0] * fmt.channels
        self.predictions = 0
        self.files = CallFiles(out_dir, fmt.source, self.labels) if out_dir else None
        self.finished = False

    @property
    def audio_s(self) -> float:
        """Audio taken so far (s): the longest channel's."""
        return max(self.received) / self.fmt.sample_rate_hz

    def started_record(self) -> dict[str, Any]:
        """The ``started`` message: the call's format and the model's labels, hop and window."""
        cfg = self.model.feature_config
        return {
            "type": "started",
            "source": self.fmt.source,
            "protocol": self.fmt.protocol,
            "encoding": self.fmt.encoding,
            "sample_rate": self.fmt.sample_rate_hz,
            "channels": list(self.fmt.plan.ids),
            "model": self.model.name,
            "labels": list(self.labels),
            "hop_s": self.hop_s,
            "window_s": cfg.window_s,
            "gate": self.gate,
        }

    def _take(self, index: int, predictions) -> list:
        name = self.names[index]
        out = []
        for p in predictions:
            if name is not None:
                p = dataclasses.replace(p, channel_name=name)
            self.builder.add(p)
            self.clips[index].add(p)
            if self.files is not None:
                self.files.csv.write(p)
                self.files.jsonl.write(p)
            out.append(p)
        self.predictions += len(out)
        return out

    def push_frames(self, data: bytes) -> list[str]:
        """Score a raw binary message: interleaved frames in the call's encoding.

        Args:
            data: ``k * fmt.frame_bytes`` bytes.

        Returns:
            The JSON text of each new prediction, in stream order (per hop, channel order).

        Raises:
            ValueError: If ``data`` is not whole frames.
            OutputError: If a file cannot be written.
        """
        fmt = self.fmt
        if len(data) % fmt.frame_bytes:
            raise ValueError(f"a binary message of {len(data)} bytes is not whole frames of {fmt.frame_bytes} bytes")
        samples = DECODERS[fmt.encoding](data).reshape(-1, fmt.channels)
        per_channel = []
        for i, scorer in enumerate(self.scorers):
            self.received[i] += samples.shape[0]
            per_channel.append(self._take(i, scorer.push(samples[:, i])))
        return self._lines(per_channel)

    def push_channel(self, index: int, data: bytes, at_sample: int | None = None) -> list[str]:
        """Score one channel's µ-law or PCM16 bytes (a Twilio ``media`` payload).

        Args:
            index: The channel (0-based, in :attr:`numbers` order).
            data: The encoded samples.
            at_sample: Where the payload starts on the channel's clock (samples at the call's
                rate, from Twilio's ``media.timestamp``), or None. When it is ahead of the samples
                taken by at least :data:`MIN_GAP_S`, the gap is filled with silence first (at
                most :data:`MAX_GAP_S`), so the channels stay on one clock when packets are lost.

        Returns:
            The JSON text of each new prediction.

        Raises:
            ValueError: If PCM16 bytes are odd in number.
            OutputError: If a file cannot be written.
        """
        x = DECODERS[self.fmt.encoding](data)
        if at_sample is not None and at_sample - self.received[index] >= MIN_GAP_S * self.fmt.sample_rate_hz:
            gap = min(at_sample - self.received[index], int(MAX_GAP_S * self.fmt.sample_rate_hz))
            x = np.concatenate([np.zeros(gap, dtype=np.int16), x])
        self.received[index] += x.size
        return self._lines([self._take(index, self.scorers[index].push(x))])

    def _lines(self, per_channel: list[list]) -> list[str]:
        from ..sinks import json_line, prediction_record

        if len(per_channel) == 1:
            merged = per_channel[0]
        else:  # stream order: by window end, then channel order (as ChannelEngines)
            tagged = [(round(p.end_s * 1e6), i, k, p) for i, ps in enumerate(per_channel) for k, p in enumerate(ps)]
            merged = [t[3] for t in sorted(tagged, key=lambda t: t[:3])]
        return [json_line(prediction_record(p)) for p in merged]

    def finish(self) -> tuple[list[str], dict[str, Any]]:
        """End the call: score every channel's last partial hop, then make the clips and summary,
        and close the files (the summary written to ``STEM.summary.json``).

        Returns:
            The JSON text of the last predictions and of one ``clip`` per channel, and the
            ``summary`` message (a dict). Later calls return nothing new.

        Raises:
            OutputError: If a file cannot be written or finished; the files are closed anyway.
        """
        from ..sinks import clip_record, json_line

        if self.finished:
            return [], {}
        self.finished = True
        try:
            lines = self._lines([self._take(i, s.flush()) for i, s in enumerate(self.scorers)])
            duration_s = max(s.elapsed_s for s in self.scorers)
            clips = [acc.result(self.fmt.source, duration_s, n, name)
                     for acc, n, name in zip(self.clips, self.numbers, self.names)]
            for clip in clips:
                if self.files is not None:
                    self.files.jsonl.write_clip(clip)
                lines.append(json_line(clip_record(clip)))
            self.builder.set_stream(self.audio_s)
            summary = self.builder.result()
        except BaseException:
            self.close()
            raise
        if self.files is not None:
            files, self.files = self.files, None
            files.close(summary)
        return lines, {"type": "summary", **summary.to_dict()}

    def close(self) -> None:
        """Close the files without finishing (after a write failure); idempotent."""
        self.finished = True
        if self.files is not None:
            files, self.files = self.files, None
            try:
                files.close()
            except Exception:
                pass


class _Worker:
    """A scoring thread with its own model; the calls pinned to it run there one job at a time.

    Attributes:
        calls: Calls pinned to this worker now.
        busy_s: Wall time spent in jobs (s), and ``cpu_s`` the thread's CPU time in them.
    """

    def __init__(self, index: int, model) -> None:
        self.index = index
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stream-ser-score-{index}")
        self.calls = 0
        self.busy_s = 0.0
        self.cpu_s = 0.0

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on this worker's thread and return its result (or raise its error)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, fn, *args)


class _LoadMeter:
    """Process CPU and worker busy time over the last minute, sampled every 5 s."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.samples: collections.deque = collections.deque(maxlen=13)
        self.sample()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), time.process_time(), sum(w.busy_s for w in self.workers),
                             sum(w.cpu_s for w in self.workers)))

    def report(self) -> dict[str, Any]:
        now = (time.monotonic(), time.process_time(), sum(w.busy_s for w in self.workers),
               sum(w.cpu_s for w in self.workers))
        t0, cpu0, busy0, score0 = self.samples[0]
        wall = max(now[0] - t0, 1e-9)
        return {
            "window_s": round(wall, 1),
            "process_cpu": round((now[1] - cpu0) / wall, 4),
            "scoring_cpu": round((now[3] - score0) / wall, 4),
            "workers_busy": round((now[2] - busy0) / wall / max(len(self.workers), 1), 4),
            "scoring_cpu_s_total": round(now[3], 3),
        }
