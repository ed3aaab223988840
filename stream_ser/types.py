"""Frozen dataclasses passed between pipeline stages.

``Prediction`` is what the engine hands to every sink (CSV, printed lines, later the terminal
UI). Its times are on the *stream clock*: derived from sample counts, never from the wall
clock, so replaying a file gives the same timeline however it is chunked.

Channels: ``channel`` is a *number*. 0 means the source's channels averaged (the default,
down-mixed path); 1, 2, ... are the source's channels scored on their own (``--channels 1,2``),
numbered from 1 as on the command line; with several devices (``--device A --device B``) device
*k* is channel *k*. ``channel_name`` is the user's name for it (``--channel-names agent,customer``)
or None. :func:`channel_id_of` gives what the CSV and JSON lines write: the name, else the number.
"""

from __future__ import annotations

from dataclasses import dataclass


def channel_id_of(number: int, name: str | None) -> int | str:
    """How a channel is written in the timeline CSV and JSON lines: its name, else its number.

    Args:
        number: 0 for down-mixed input, 1-based channel (or device) number otherwise.
        name: The user's name for the channel, or None.

    Returns:
        ``name`` when it is a non-empty string, else ``number``.
    """
    return name if name else number


@dataclass(frozen=True)
class Prediction:
    """One scored window.

    Attributes:
        source: Name of the audio source (file path, or ``mic:<device name>``).
        channel: Channel number: 0 for mono or down-mixed input, else the 1-based channel of
            the source (or device number with several devices).
        start_s: Start of the scored window on the stream clock, in seconds (>= 0; the first
            windows of a stream are shorter than the model window and start at 0).
        end_s: End of the window (the hop boundary) on the stream clock, in seconds.
        is_speech: False when the speech gate found no speech in the window; then ``label``,
            ``confidence`` and ``probabilities`` are None and no model was run.
        label: The most probable emotion, one of ``labels``; None when not speech.
        confidence: Probability of ``label`` in [0, 1]; None when not speech.
        probabilities: One probability per entry of ``labels`` (model order, sums to 1);
            None when not speech.
        labels: The model's class names in output order.
        channel_name: The channel's name (``--channel-names``), or None when unnamed.
        adaptation: The adaptation to the voice that produced ``probabilities``:
            ``"embedding"`` (:class:`~stream_ser.adaptation.EmbeddingAdapter`, the model's head
            on its voice-standardised embedding), ``"output"``
            (:class:`~stream_ser.adaptation.OutputAdapter`) or ``"none"`` (the network's own).
    """

    source: str
    channel: int
    start_s: float
    end_s: float
    is_speech: bool
    label: str | None
    confidence: float | None
    probabilities: tuple[float, ...] | None
    labels: tuple[str, ...]
    channel_name: str | None = None
    adaptation: str = "none"

    @property
    def channel_id(self) -> int | str:
        """The channel as the CSV and JSON lines write it: the name, else the number."""
        return channel_id_of(self.channel, self.channel_name)

    def probabilities_by_label(self) -> dict[str, float] | None:
        """The probabilities as ``{label: p}`` in model order, or None when not speech."""
        if self.probabilities is None:
            return None
        return dict(zip(self.labels, self.probabilities))


@dataclass(frozen=True)
class ClipResult:
    """Clip-level summary of a stream, as ``stream-ser analyse`` prints it.

    The clip label is the argmax of the mean class probabilities over the speech windows; the
    confidence is that mean probability. This is the clip-level rule used by the evaluation
    (``training.evaluate``) too.

    Attributes:
        source: Name of the source.
        duration_s: Audio duration in seconds (samples at 16 kHz / 16000).
        n_windows: Number of scored windows (speech or not).
        n_speech_windows: Windows that passed the speech gate.
        label: Clip label, or None when no window contained speech.
        confidence: Mean probability of ``label`` over speech windows, or None.
        mean_probabilities: Mean probability per class over speech windows, or None.
        labels: Class names in model order.
        channel: Channel number the result is for (0: down-mixed input; see :class:`Prediction`).
        channel_name: The channel's name, or None.
    """

    source: str
    duration_s: float
    n_windows: int
    n_speech_windows: int
    label: str | None
    confidence: float | None
    mean_probabilities: tuple[float, ...] | None
    labels: tuple[str, ...]
    channel: int = 0
    channel_name: str | None = None

    @property
    def channel_id(self) -> int | str:
        """The channel as written in outputs: the name, else the number."""
        return channel_id_of(self.channel, self.channel_name)

    def probabilities_by_label(self) -> dict[str, float] | None:
        """The mean probabilities as ``{label: p}`` in model order, or None without speech."""
        if self.mean_probabilities is None:
            return None
        return dict(zip(self.labels, self.mean_probabilities))


@dataclass(frozen=True)
class Analysis:
    """A scored recording: the clip-level result and the window timeline it summarises.

    Returned by :func:`stream_ser.analyse`.

    Attributes:
        clip: The clip-level summary (label, confidence, mean probabilities, duration).
        timeline: Every scored window in stream order, one per hop (``hop_s``, 0.5 s by
            default) plus the final partial hop; windows without speech are included with
            ``is_speech=False``.
    """

    clip: ClipResult
    timeline: tuple[Prediction, ...]

    @property
    def label(self) -> str | None:
        """Shortcut for ``clip.label`` (None when no window held speech)."""
        return self.clip.label

    @property
    def confidence(self) -> float | None:
        """Shortcut for ``clip.confidence``, in [0, 1] (None when no window held speech)."""
        return self.clip.confidence


@dataclass(frozen=True)
class Marker:
    """A user's mark on the timeline.

    Attributes:
        source: Source name (as in the CSV's ``source`` column).
        channel: Channel number (0 for mono input; see :class:`Prediction`).
        time_s: Stream-clock time of the request (s): the end of the audio the worker had received
            when it took the request, minus the time the request waited (so a worker busy
            scoring does not push the marker late); accurate to about one capture block.
        number: 1 for the session's first marker, then 2, 3, ...
        channel_name: The channel's name, or None. A session scoring several channels writes
            a marker once per channel (same time and number).
    """

    source: str
    channel: int
    time_s: float
    number: int
    channel_name: str | None = None

    @property
    def channel_id(self) -> int | str:
        """The channel as written in outputs: the name, else the number."""
        return channel_id_of(self.channel, self.channel_name)
