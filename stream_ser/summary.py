"""The call summary: per channel, speech time, time in each emotion, longest spans, changes.

Position in the pipeline: a consumer of predictions, like the sinks. ``listen`` (at the end of
the session) and ``analyse`` (per file, with ``--channels`` or ``--summary``) print it, and
``--summary-json FILE`` writes it as JSON. It is built incrementally (:class:`CallSummaryBuilder`,
constant memory per channel), so an eight-hour session costs nothing extra.

Definitions (``docs/calls.md#call-summary`` says the same):

* Each prediction stands for the **hop** of new audio it was scored at: from the previous
  prediction's end (or ``end_s - hop_s``, whichever is later) to its own ``end_s`` on the stream
  clock. The first hop starts at 0; the last partial hop of a stream is shorter; hops skipped
  while paused leave a gap.
* **Speech time** (``speech_s``): the total length of the hops whose window passed the speech
  gate, i.e. that have an emotion label (with ``--gate vad``, the default, the gate is the level
  *and* the voice-activity detector, so music or noise between turns adds nothing). A window is 3 s long, so a hop counts as speech for up
  to 2.5 s after the voice stopped: speech time is an upper bound of talk time.
* **Time in each emotion** (``emotion_s``, ``emotion_share``): the length of the hops labelled
  with each emotion, and its share of the speech time (the shares sum to 1).
* **Longest span** of each emotion other than ``neutral``: the longest run of consecutive,
  contiguous hops with that label (a hop without speech, another label or a pause ends a run),
  with its start on the stream clock; ties go to the earliest.
* **Emotion changes**: how often a labelled hop's emotion differs from the previous labelled
  hop's in the same channel (hops without speech in between neither count nor reset).

Thread: a builder belongs to the thread that adds the predictions (the session's worker, or
``analyse``'s main thread).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .channels import ChannelPlan
from .display import format_time
from .text import printable
from .types import Prediction, channel_id_of

#: Labels that are not an "emotion" for the longest-span report (matched case-insensitively).
NEUTRAL_LABELS = ("neutral",)
#: Tolerance (s) when deciding whether two hops are contiguous (times are sample counts / rate).
_EPS_S = 1e-6


@dataclass(frozen=True)
class EmotionSpan:
    """A run of consecutive hops with one label.

    Attributes:
        label: The emotion.
        start_s: Start of the run on the stream clock (s).
        duration_s: Its length (s).
    """

    label: str
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        """End of the run on the stream clock (s)."""
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class ChannelSummary:
    """The summary of one channel (see the module docstring for the definitions).

    Attributes:
        channel: Channel number (0: down-mixed input).
        channel_name: The channel's name, or None.
        description: What the channel is (device name, ``channel 2``, or the source).
        labels: The model's labels, in model order.
        duration_s: Stream time covered by the channel's hops (s).
        n_windows: Predictions (speech or not).
        n_speech_windows: Predictions with a label.
        speech_s: Length of the labelled hops (s).
        emotion_s: Length of the hops with each label (s), in model order.
        longest: The longest span of each non-neutral label that occurred, in model order.
        changes: Number of emotion changes.
    """

    channel: int
    channel_name: str | None
    description: str
    labels: tuple[str, ...]
    duration_s: float
    n_windows: int
    n_speech_windows: int
    speech_s: float
    emotion_s: tuple[float, ...]
    longest: tuple[EmotionSpan, ...]
    changes: int

    @property
    def channel_id(self) -> int | str:
        """The channel as the CSV writes it: the name, else the number."""
        return channel_id_of(self.channel, self.channel_name)

    def emotion_share(self) -> dict[str, float] | None:
        """Share of the speech time in each emotion (model order, sums to 1), or None without speech."""
        if self.speech_s <= 0:
            return None
        return {label: s / self.speech_s for label, s in zip(self.labels, self.emotion_s)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times rounded to ms, shares to 4 decimals)."""
        shares = self.emotion_share()
        return {
            "channel": self.channel_id,
            "number": self.channel,
            "name": self.channel_name,
            "description": self.description,
            "duration_s": round(self.duration_s, 3),
            "n_windows": self.n_windows,
            "n_speech_windows": self.n_speech_windows,
            "speech_s": round(self.speech_s, 3),
            "emotion_s": {label: round(s, 3) for label, s in zip(self.labels, self.emotion_s)},
            "emotion_share": None if shares is None else {k: round(v, 4) for k, v in shares.items()},
            "longest": {
                span.label: {"start_s": round(span.start_s, 3), "duration_s": round(span.duration_s, 3)}
                for span in self.longest
            },
            "changes": self.changes,
        }


@dataclass(frozen=True)
class CallSummary:
    """The summary of a session or file: one :class:`ChannelSummary` per channel.

    Attributes:
        source: The source name (as in the CSV).
        hop_s: Seconds between predictions.
        labels: The model's labels.
        channels: One summary per channel, in channel order.
        clocks: With several devices, each device's measured clock
            (:class:`~stream_ser.sources.DeviceClock`); empty otherwise.
        stream_s: The audio the session took in (s, stream clock), scored or not, when the
            builder was told (:meth:`CallSummaryBuilder.set_stream`: ``listen``); None otherwise,
            and then the channels' hops cover all of it.
        paused_s: Of that audio, the part that was not scored because scoring was paused (s).
    """

    source: str
    hop_s: float
    labels: tuple[str, ...]
    channels: tuple[ChannelSummary, ...]
    clocks: tuple[Any, ...] = field(default=())
    stream_s: float | None = None
    paused_s: float = 0.0

    @property
    def duration_s(self) -> float:
        """The audio the summary is about (s): :attr:`stream_s` when known (so a paused stretch
        counts, as in the session's own line), else the stream time the longest channel's hops
        cover."""
        covered = max((c.duration_s for c in self.channels), default=0.0)
        return covered if self.stream_s is None else max(self.stream_s, covered)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``source``, ``duration_s``, ``paused_s``, ``hop_s``, ``labels``,
        ``channels``, ``clocks``."""
        return {
            "source": self.source,
            "duration_s": round(self.duration_s, 3),
            "paused_s": round(self.paused_s, 3),
            "hop_s": self.hop_s,
            "labels": list(self.labels),
            "channels": [c.to_dict() for c in self.channels],
            "clocks": [
                {
                    "device": c.device,
                    "nominal_rate_hz": c.nominal_rate_hz,
                    "measured_rate_hz": None if c.measured_rate_hz is None else round(c.measured_rate_hz, 3),
                    "drift_ppm": None if c.drift_ppm is None else round(c.drift_ppm, 1),
                    "drift_uncertainty_ppm": None if c.drift_uncertainty_ppm is None else round(c.drift_uncertainty_ppm, 1),
                    "corrected_frames": c.corrected_frames,
                    "start_offset_s": round(c.start_offset_s, 4),
                }
                for c in self.clocks
            ],
        }


class _ChannelState:
    """Running figures of one channel (builder internals)."""

    def __init__(self, n_labels: int) -> None:
        self.prev_end_s = 0.0
        self.duration_s = 0.0
        self.n_windows = 0
        self.n_speech = 0
        self.speech_s = 0.0
        self.emotion_s = [0.0] * n_labels
        self.longest: dict[str, EmotionSpan] = {}
        self.run_label: str | None = None
        self.run_start_s = 0.0
        self.run_end_s = 0.0
        self.last_label: str | None = None
        self.changes = 0

    def close_run(self) -> None:
        if self.run_label is None:
            return
        span = EmotionSpan(self.run_label, self.run_start_s, self.run_end_s - self.run_start_s)
        best = self.longest.get(span.label)
        if best is None or span.duration_s > best.duration_s + _EPS_S:
            self.longest[span.label] = span
        self.run_label = None


class CallSummaryBuilder:
    """Builds a :class:`CallSummary` from predictions as they come.

    Args:
        source: The source name.
        labels: The model's labels.
        hop_s: Seconds between predictions (the engine's hop).
        channels: Channel numbers, in channel order.
        channel_names: A name per channel, or None.
        descriptions: What each channel is (device name, ``channel 2``), or None.

    Raises:
        ValueError: If the channels, names or descriptions do not make a valid
            :class:`~stream_ser.channels.ChannelPlan` (which checks them).

    Thread: the thread that adds the predictions.
    """

    def __init__(
        self,
        source: str,
        labels: Sequence[str],
        hop_s: float,
        channels: Sequence[int] = (0,),
        channel_names: Sequence[str | None] | None = None,
        descriptions: Sequence[str] | None = None,
    ) -> None:
        self.source = source
        self.labels = tuple(labels)
        self.hop_s = float(hop_s)
        plan = ChannelPlan.of(channels, channel_names, descriptions, source=source)
        self.channels, self.names, self.descriptions = plan.numbers, plan.names, plan.descriptions
        self._index = {(c, n): i for i, (c, n) in enumerate(zip(self.channels, self.names))}
        self._states = [_ChannelState(len(self.labels)) for _ in self.channels]
        self._neutral = {label for label in self.labels if label.lower() in NEUTRAL_LABELS}
        self._stream_s: float | None = None
        self._paused_s = 0.0

    def set_stream(self, stream_s: float, paused_s: float = 0.0) -> None:
        """Tell the builder how much audio the session took in, scored or not (a live session:
        a paused stretch and the last samples have no prediction, but they were heard).

        Args:
            stream_s: Audio taken in so far (s, stream clock).
            paused_s: Of it, the part not scored because scoring was paused (s).

        Raises:
            ValueError: If a value is negative or not finite, or ``paused_s > stream_s``.
        """
        if not (math.isfinite(stream_s) and math.isfinite(paused_s) and 0 <= paused_s <= stream_s):
            raise ValueError(f"need 0 <= paused_s <= stream_s, got {paused_s} and {stream_s}")
        self._stream_s = float(stream_s)
        self._paused_s = float(paused_s)

    def add(self, p: Prediction) -> None:
        """Account for one prediction (of any of the channels, in stream order per channel).

        Raises:
            KeyError: If the prediction's channel is not one of the builder's.
        """
        st = self._states[self._index[(p.channel, p.channel_name)]]
        end_s = p.end_s
        start_s = max(st.prev_end_s, end_s - self.hop_s)
        length_s = max(0.0, end_s - start_s)
        contiguous = abs(start_s - st.prev_end_s) <= _EPS_S
        st.prev_end_s = end_s
        st.n_windows += 1
        st.duration_s += length_s
        if not (p.is_speech and p.label is not None):
            st.close_run()
            return
        st.n_speech += 1
        st.speech_s += length_s
        st.emotion_s[self.labels.index(p.label)] += length_s
        if st.last_label is not None and p.label != st.last_label:
            st.changes += 1
        st.last_label = p.label
        if st.run_label == p.label and contiguous:
            st.run_end_s = end_s
        else:
            st.close_run()
            if p.label not in self._neutral:
                st.run_label, st.run_start_s, st.run_end_s = p.label, start_s, end_s

    def add_all(self, predictions: Iterable[Prediction]) -> "CallSummaryBuilder":
        """Add every prediction; returns the builder."""
        for p in predictions:
            self.add(p)
        return self

    def result(self, clocks: Sequence[Any] = ()) -> CallSummary:
        """The summary so far (the builder can go on).

        Args:
            clocks: Device clocks to report (:meth:`~stream_ser.sources.MultiDeviceSource.clock_report`).
        """
        out = []
        for c, name, desc, st in zip(self.channels, self.names, self.descriptions, self._states):
            longest = dict(st.longest)
            if st.run_label is not None:  # the open run counts too
                span = EmotionSpan(st.run_label, st.run_start_s, st.run_end_s - st.run_start_s)
                best = longest.get(span.label)
                if best is None or span.duration_s > best.duration_s + _EPS_S:
                    longest[span.label] = span
            spans = tuple(longest[label] for label in self.labels if label in longest)
            out.append(ChannelSummary(c, name, desc, self.labels, st.duration_s, st.n_windows, st.n_speech,
                                      st.speech_s, tuple(st.emotion_s), spans, st.changes))
        return CallSummary(self.source, self.hop_s, self.labels, tuple(out), tuple(clocks), self._stream_s,
                           self._paused_s)


def summarise_call(
    predictions: Iterable[Prediction],
    source: str,
    labels: Sequence[str],
    hop_s: float,
    channels: Sequence[int] = (0,),
    channel_names: Sequence[str | None] | None = None,
) -> CallSummary:
    """The :class:`CallSummary` of a finished timeline (e.g. ``stream_ser.analyse(...).timeline``).

    ``summarize_call`` is the same function under the American spelling, as ``analyze`` is
    ``analyse``.
    """
    return CallSummaryBuilder(source, labels, hop_s, channels, channel_names).add_all(predictions).result()


summarize_call = summarise_call


def format_summary(summary: CallSummary) -> str:
    """The printed call summary (several lines, no trailing newline), e.g. for a stereo file
    scored with ``--channels 1,2 --channel-names agent,customer`` (``docs/calls.md``)::

        call summary: call.wav, 00:08.0 of audio (hop 0.5 s)
          agent (channel 1): speech 5.0 s of 8.0 s, 1 emotion change
            time in each emotion: angry 60%, happy 40%
            longest: angry 3.0 s at 00:03.0, happy 2.0 s at 00:01.0
          customer (channel 2): speech 2.5 s of 8.0 s, 0 emotion changes
            time in each emotion: fear 100%
            longest: fear 2.5 s at 00:05.5

    After a pause the first line also says how much of the audio was paused (``call summary:
    .../demo.flac, 00:21.1 of audio, 00:03.0 of it paused (hop 0.5 s)``), and a channel's ``of
    ... s`` counts only its scored hops. A channel without speech is ``NAME: no speech (N
    windows)``; with several devices, one ``clock:`` line per device after the first gives its
    drift against the first, the frames dropped or repeated and the start offset.
    """
    paused = f", {format_time(summary.paused_s)} of it paused" if summary.paused_s > 0 else ""
    lines = [f"call summary: {summary.source}, {format_time(summary.duration_s)} of audio{paused} (hop {summary.hop_s:g} s)"]
    for ch in summary.channels:
        who = str(ch.channel_id) if ch.channel != 0 or ch.channel_name else "mono"
        if ch.description and ch.description not in (who, summary.source):
            who = f"{who} ({ch.description})"
        if ch.n_speech_windows == 0:
            lines.append(f"  {who}: no speech ({ch.n_windows} windows)")
            continue
        changes = f"{ch.changes} emotion change{'' if ch.changes == 1 else 's'}"
        lines.append(f"  {who}: speech {ch.speech_s:.1f} s of {ch.duration_s:.1f} s, {changes}")
        shares = ch.emotion_share() or {}
        ranked = sorted(((v, k) for k, v in shares.items() if v > 0), reverse=True)
        lines.append("    time in each emotion: " + ", ".join(f"{k} {100 * v:.0f}%" for v, k in ranked))
        if ch.longest:
            spans = sorted(ch.longest, key=lambda s: -s.duration_s)
            lines.append("    longest: " + ", ".join(f"{s.label} {s.duration_s:.1f} s at {format_time(s.start_s)}" for s in spans))
    clocks = list(summary.clocks)
    if len(clocks) > 1:
        ref = clocks[0].device
        for c in clocks[1:]:
            if c.drift_ppm is None:
                lines.append(f"  clock: {c.device} vs {ref}: not measured (it needs a few seconds of audio)")
                continue
            known = c.drift_uncertainty_ppm is not None and math.isfinite(c.drift_uncertainty_ppm)
            sigma = f" (+-{c.drift_uncertainty_ppm:.0f})" if known else ""
            lines.append(
                f"  clock: {c.device} runs {c.drift_ppm:+.0f} ppm{sigma} against {ref}; "
                f"{abs(c.corrected_frames)} frame{'' if abs(c.corrected_frames) == 1 else 's'} "
                f"{'dropped' if c.corrected_frames >= 0 else 'repeated'} to stay aligned, "
                f"start offset {1000 * c.start_offset_s:+.1f} ms"
            )
    return "\n".join(printable(line) for line in lines)  # names escaped, one line each


#: The ``format`` field of a summary JSON file.
SUMMARY_FORMAT = "stream-ser call summary"
#: Its version (bumped when a field changes meaning; new fields may be added). 2: a summary's
#: ``duration_s`` is all the audio of the session, paused stretches included (``paused_s`` says
#: how much of it was paused); in version 1 it left out what came after a pause.
SUMMARY_VERSION = 2


class SummaryJsonFile:
    """The ``--summary-json FILE`` output: opened (and checked) before any audio, written at the end.

    The file holds one JSON object: ``{"format": "stream-ser call summary", "version": 1,
    "summaries": [...]}``, one entry per session (``listen``) or file (``analyse``), each a
    :meth:`CallSummary.to_dict`.

    Args:
        path: Output file.
        force: Replace an existing file.

    Raises:
        OutputError: If the file exists and ``force`` is not set, or cannot be written.

    Thread: the thread that runs the command.
    """

    def __init__(self, path: str | os.PathLike[str], force: bool = False) -> None:
        from .sinks import OutputError, OutputFile, _has_content

        self.path = Path(path)
        if _has_content(self.path) and not force:
            raise OutputError(f"{self.path}: already exists (use --force to replace it)")
        self._file = OutputFile(self.path)
        self.summaries: list[CallSummary] = []

    def add(self, summary: CallSummary) -> None:
        """Keep a summary for the file."""
        self.summaries.append(summary)

    def close(self) -> None:
        """Write the summaries and close the file (idempotent).

        Raises:
            OutputError: If the file cannot be written (a full disk), naming it; it is then left
                empty rather than holding part of the document.
        """
        if self._file.closed:
            return
        doc = {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "summaries": [s.to_dict() for s in self.summaries]}
        try:
            self._file.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        finally:
            self._file.close()
