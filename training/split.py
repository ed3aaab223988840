"""Speaker-independent train/validation/test splits.

Sits between the corpus readers (:mod:`training.corpora`) and training: a
:class:`Split` assigns whole speakers to partitions, so no voice heard in
training is scored in validation or test. Splits are committed as JSON under
``training/splits/`` so every model card can name the exact split it used::

    {
      "name": "si_v1",
      "description": "...",              # optional, free text
      "train": ["ravdess:01", ...],       # Utterance.speaker values
      "validation": ["ravdess:17", ...],
      "test": ["ravdess:21", ...],
      "notes": ["..."]                    # optional, string or list of strings
    }
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from training.corpora.base import Utterance

logger = logging.getLogger(__name__)

PARTITIONS: tuple[str, ...] = ("train", "validation", "test")
"""Partition names, in the order :meth:`Split.partition` returns them."""

DEFAULT_SPLIT_PATH: Path = Path(__file__).resolve().parent / "splits" / "si_v1.json"
"""The committed default split: RAVDESS actors 01-16/17-20/21-24, TESS OAF/-/YAF."""


@dataclass(frozen=True)
class Split:
    """A speaker-independent split: three disjoint sets of speaker ids.

    Attributes:
        name: Split name, e.g. ``"si_v1"`` (recorded in model metadata).
        train: Speakers whose utterances are for training.
        validation: Speakers for model selection / early stopping.
        test: Speakers held out for the final evaluation.
        notes: Free-text remarks carried from the split file.

    Speaker ids are :attr:`Utterance.speaker` values (``"ravdess:12"``,
    ``"tess:OAF"``). Any iterable of strings is accepted for the three sets and
    stored as a ``frozenset``.

    Raises:
        ValueError: If a speaker is in more than one set.
    """

    name: str
    train: frozenset[str]
    validation: frozenset[str]
    test: frozenset[str]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for partition in PARTITIONS:
            object.__setattr__(self, partition, frozenset(getattr(self, partition)))
        object.__setattr__(self, "notes", tuple(self.notes))
        for i, first in enumerate(PARTITIONS):
            for second in PARTITIONS[i + 1 :]:
                shared = getattr(self, first) & getattr(self, second)
                if shared:
                    raise ValueError(
                        f"split {self.name!r}: speakers {sorted(shared)} are in both {first} and {second}"
                    )

    @property
    def speakers(self) -> frozenset[str]:
        """All speakers of the split, in any partition."""
        return self.train | self.validation | self.test

    def partition_of(self, speaker: str) -> str | None:
        """Names the partition of one speaker.

        Args:
            speaker: A speaker id such as ``"ravdess:12"``.

        Returns:
            ``"train"``, ``"validation"`` or ``"test"``, or ``None`` if the
            speaker is not in the split.
        """
        for partition in PARTITIONS:
            if speaker in getattr(self, partition):
                return partition
        return None

    def partition(self, utts: Iterable[Utterance], *, strict: bool = False) -> dict[str, list[Utterance]]:
        """Assigns utterances to partitions by speaker.

        Utterances of speakers that are not in the split go to no partition.
        Their number is logged (one WARNING, with the count per speaker);
        :meth:`unassigned` returns them, and ``strict=True`` turns them into an
        error.

        Args:
            utts: Utterances, e.g. from :func:`training.corpora.discover`.
            strict: Raise instead of logging when some speaker is not in the
                split.

        Returns:
            ``{"train": [...], "validation": [...], "test": [...]}``; every key
            is present (possibly with an empty list) and each list keeps the
            input order.

        Raises:
            ValueError: If ``strict`` and some utterance's speaker is not in the
                split.
        """
        parts: dict[str, list[Utterance]] = {partition: [] for partition in PARTITIONS}
        missing: Counter[str] = Counter()
        for utt in utts:
            partition = self.partition_of(utt.speaker)
            if partition is None:
                missing[utt.speaker] += 1
            else:
                parts[partition].append(utt)
        if missing:
            message = (
                f"split {self.name!r}: {sum(missing.values())} utterances of {len(missing)} speakers "
                f"not in the split were left out: {dict(sorted(missing.items()))}"
            )
            if strict:
                raise ValueError(message)
            logger.warning(message)
        return parts

    def unassigned(self, utts: Iterable[Utterance]) -> list[Utterance]:
        """Lists the utterances whose speaker is in no partition.

        Args:
            utts: Utterances.

        Returns:
            Those of ``utts`` that :meth:`partition` leaves out, in input order.
        """
        return [utt for utt in utts if utt.speaker not in self.speakers]


def load_split(path: Path | None = None) -> Split:
    """Reads a split from a JSON file.

    Args:
        path: JSON file in the format of the module docstring; ``None`` for
            :data:`DEFAULT_SPLIT_PATH` (``training/splits/si_v1.json``).

    Returns:
        The split, with disjoint partitions.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not valid JSON, a field is missing or has the
            wrong type, a list repeats a speaker, or a speaker is in more than
            one partition.
    """
    path = DEFAULT_SPLIT_PATH if path is None else Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at top level")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: 'name' must be a non-empty string")
    sets: dict[str, frozenset[str]] = {}
    for partition in PARTITIONS:
        speakers = data.get(partition)
        if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers):
            raise ValueError(f"{path}: {partition!r} must be a list of speaker-id strings")
        repeated = sorted(s for s, n in Counter(speakers).items() if n > 1)
        if repeated:
            raise ValueError(f"{path}: {partition!r} lists {repeated} more than once")
        sets[partition] = frozenset(speakers)
    notes = data.get("notes", [])
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ValueError(f"{path}: 'notes' must be a string or a list of strings")
    try:
        return Split(name=name, notes=tuple(notes), **sets)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
