"""Which channels of a source are scored and what each one is called: the :class:`ChannelPlan`.

A plan is made once, when a source's channels are known (a file's header read, a call's start
message parsed, the devices of a session opened), and everything downstream takes its numbers,
names and descriptions from it: the engines (one per channel), the clip results, the call
summary and the channel column of the CSV and JSON lines. The one rule that every place used to
check for itself, "as many names as channels", is checked here, in :meth:`ChannelPlan.__post_init__`.

Numbering (as :mod:`stream_ser.types`): ``(0,)`` is the source's channels averaged to one (the
default); otherwise the 1-based numbers of the channels scored each on its own, or of the
devices of a multi-device session. This module imports nothing heavy (no numpy), so the command
line can check its options with it before loading any library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .types import channel_id_of


class ChannelPlanError(ValueError):
    """Channel names that do not match the channels in number.

    Attributes:
        names: The names given.
        count: The number of channels they were given for.
        where: The source (file, device, call) the channels belong to, or ``""``.
    """

    def __init__(self, names: Sequence[str | None], count: int, where: str = "") -> None:
        self.names = tuple(names)
        self.count = count
        self.where = where
        given = ",".join(str(n) for n in self.names)
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{len(self.names)} channel name(s) given ({given}) for {count} channel(s)")


def default_description(number: int, source: str) -> str:
    """What a channel is when the source says nothing more: the source's name for the down-mix
    (channel 0), else ``channel N`` (the call summary prints it next to the channel's name)."""
    return source if number == 0 else f"channel {number}"


@dataclass(frozen=True)
class ChannelPlan:
    """The channels scored from one source: numbers, names and descriptions, one of each per
    channel, in channel order (the order of the frames' columns and of the predictions per hop).

    Build it with :meth:`of`; a plan constructed directly is validated the same way.

    Attributes:
        numbers: ``(0,)`` for the down-mix, else distinct channel (or device) numbers >= 1.
        names: The user's name for each channel (``--channel-names agent,customer``), or None
            for an unnamed channel (written as its number).
        descriptions: What each channel is, for the call summary (``channel 2``, a device's
            name, ``Twilio inbound track``).

    Raises:
        ChannelPlanError: If ``names`` do not match ``numbers`` in number.
        ValueError: If there is no channel, a number is repeated or negative, 0 is not alone,
            or the descriptions do not match the channels in number.
    """

    numbers: tuple[int, ...]
    names: tuple[str | None, ...]
    descriptions: tuple[str, ...]

    def __post_init__(self) -> None:
        numbers = self.numbers
        if not numbers:
            raise ValueError("no channel to score")
        if len(set(numbers)) != len(numbers) or any(n < 0 for n in numbers) or (0 in numbers and len(numbers) > 1):
            raise ValueError(f"channel numbers must be (0,) or distinct numbers from 1, got {list(numbers)}")
        if len(self.names) != len(numbers):
            raise ChannelPlanError(self.names, len(numbers))
        if len(self.descriptions) != len(numbers):
            raise ValueError(f"{len(self.descriptions)} description(s) for {len(numbers)} channel(s)")

    @classmethod
    def of(
        cls,
        numbers: Sequence[int],
        names: Sequence[str | None] | None = None,
        descriptions: Sequence[str] | None = None,
        *,
        source: str = "",
    ) -> "ChannelPlan":
        """The plan of a source's channels.

        Args:
            numbers: The channel numbers (``(0,)``: the down-mix), as the source resolved them.
            names: A name per channel, or None (all unnamed).
            descriptions: What each channel is, or None for :func:`default_description`.
            source: The source's name, for the default descriptions and for error messages.

        Raises:
            ChannelPlanError: ``names`` do not match the channels in number; the message names
                ``source``, e.g. ``call.wav: 1 channel name(s) given (agent) for 2 channel(s)``.
            ValueError: As the class.
        """
        numbers = tuple(int(n) for n in numbers)
        try:
            return cls(
                numbers,
                tuple(names) if names is not None else (None,) * len(numbers),
                tuple(descriptions) if descriptions is not None else tuple(default_description(n, source) for n in numbers),
            )
        except ChannelPlanError as exc:
            raise ChannelPlanError(exc.names, exc.count, source) from None

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def ids(self) -> tuple[int | str, ...]:
        """How each channel is written in the CSV and JSON lines: its name, else its number."""
        return tuple(channel_id_of(n, name) for n, name in zip(self.numbers, self.names))

    @property
    def keys(self) -> tuple[tuple[int, str | None], ...]:
        """``(number, name)`` per channel: what tells a prediction's channel apart."""
        return tuple(zip(self.numbers, self.names))
