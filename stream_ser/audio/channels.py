"""Which channels of a file or device are scored: parsing, checking and taking them from frames.

Channel numbers: ``(0,)`` means the source's channels averaged to mono (the default); otherwise
the 1-based numbers of the channels scored each on its own (``--channels 1,2`` or ``all``), at
most :data:`MAX_CHANNELS`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np

from .source import AudioSourceError

log = logging.getLogger(__name__)

#: Most channels scored on their own in one session (``--channels``, several ``--device``).
MAX_CHANNELS = 8

#: Which channels to score: None averages all channels into one (channel number 0); ``"all"``
#: scores every channel on its own; a sequence of 1-based channel numbers scores those.
ChannelSelection = Union[None, Literal["all"], Sequence[int]]


def downmix(frames: np.ndarray) -> np.ndarray:
    """Mean over channels: ``(n, channels)`` -> float32 ``(n,)``."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    return frames.mean(axis=1, dtype=np.float32)


def parse_channel_selection(text: str) -> Literal["all"] | tuple[int, ...]:
    """Parse ``--channels``: ``all`` or comma-separated 1-based channel numbers (``1,2``).

    Args:
        text: The option's value.

    Returns:
        ``"all"`` or the channel numbers in the given order.

    Raises:
        ValueError: Empty, not numbers, a number below 1, a duplicate, or more than
            :data:`MAX_CHANNELS` channels (the message says which).
    """
    t = text.strip().lower()
    if t == "all":
        return "all"
    parts = [x.strip() for x in t.split(",")]
    if not parts or any(not x.isdigit() for x in parts):
        raise ValueError(f"expected 'all' or channel numbers counted from 1 such as '1,2', got {text!r}")
    numbers = tuple(int(x) for x in parts)
    if any(n < 1 for n in numbers):
        raise ValueError(f"channels are numbered from 1, got {text!r}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"a channel is listed twice in {text!r}")
    if len(numbers) > MAX_CHANNELS:
        raise ValueError(f"at most {MAX_CHANNELS} channels, got {len(numbers)}")
    return numbers


def resolve_channels(selection: ChannelSelection, n_channels: int, where: str) -> tuple[int, ...]:
    """The channel numbers a selection gives for a source with ``n_channels`` channels.

    Args:
        selection: See :data:`ChannelSelection`.
        n_channels: The source's channel count (>= 1).
        where: The file or device, for error messages.

    Returns:
        ``(0,)`` for the down-mix (``selection`` None), else 1-based channel numbers; ``"all"``
        gives ``1 .. min(n_channels, MAX_CHANNELS)``.

    Raises:
        AudioSourceError: A channel number above ``n_channels`` or below 1, a duplicate, or
            more than :data:`MAX_CHANNELS` channels.
    """
    if selection is None:
        return (0,)
    if isinstance(selection, str):
        if selection != "all":
            raise AudioSourceError(f"{where}: channel selection must be 'all' or channel numbers, got {selection!r}")
        if n_channels > MAX_CHANNELS:
            log.warning("%s has %d channels; scoring the first %d", where, n_channels, MAX_CHANNELS)
        return tuple(range(1, min(n_channels, MAX_CHANNELS) + 1))
    numbers = tuple(int(n) for n in selection)
    if not numbers:
        raise AudioSourceError(f"{where}: no channel selected")
    if len(set(numbers)) != len(numbers) or len(numbers) > MAX_CHANNELS:
        raise AudioSourceError(f"{where}: select at most {MAX_CHANNELS} different channels, got {list(numbers)}")
    bad = [n for n in numbers if not 1 <= n <= n_channels]
    if bad:
        listed = ",".join(map(str, bad))
        raise AudioSourceError(
            f"{where}: has {n_channels} channel{'s' if n_channels != 1 else ''}; channel {listed} "
            f"does not exist (channels are numbered 1-{n_channels})"
        )
    return numbers


def select_channels(frames: np.ndarray, numbers: Sequence[int]) -> np.ndarray:
    """The channels to score, from native frames.

    Args:
        frames: float32 ``(n, channels)`` (or ``(n,)`` for mono).
        numbers: ``(0,)`` for the mean of all channels, else 1-based channel numbers.

    Returns:
        float32 C-contiguous array of shape ``(n, len(numbers))``.
    """
    if frames.ndim == 1:
        frames = frames[:, None]
    if tuple(numbers) == (0,):
        return np.ascontiguousarray(downmix(frames)[:, None])
    return np.ascontiguousarray(frames[:, [n - 1 for n in numbers]], dtype=np.float32)


def describe_channels(name: str, numbers: Sequence[int]) -> tuple[str, ...]:
    """What each scored channel of the file or device ``name`` is: ``(name,)`` for the down-mix,
    else ``channel N`` per channel number."""
    if tuple(numbers) == (0,):
        return (name,)
    return tuple(f"channel {n}" for n in numbers)
