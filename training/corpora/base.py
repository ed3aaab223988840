"""Shared types and helpers for the corpus readers.

Corpus readers are the first stage of training: they turn a folder of audio
files into a list of labelled :class:`Utterance` records, using only the file
names (no audio is read). Each reader module exposes ``parse_name`` and
``scan`` (see :class:`CorpusReader`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from training.labels import EMOTIONS

AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3"})
"""Lower-case file suffixes treated as audio; matching is case-insensitive."""


@dataclass(frozen=True)
class Utterance:
    """One labelled recording of a corpus.

    Attributes:
        path: The audio file.
        corpus: Corpus name: ``"ravdess"``, ``"tess"``, ``"crema-d"``, ``"savee"``,
            ``"emodb"`` or ``"nemo"``.
        speaker: Corpus-qualified speaker id, ``"<corpus>:<id>"`` with the id as
            written in the corpus's file names, e.g. ``"ravdess:12"``,
            ``"tess:OAF"``, ``"crema-d:1001"``, ``"savee:DC"``, ``"emodb:03"``, ``"nemo:EB0"``.
        label: One of :data:`training.labels.EMOTIONS`, or ``None`` when the
            corpus's emotion has no class in the schema (EmoDB boredom).
        source_label: The corpus's own emotion name, e.g. ``"calm"``, ``"ps"``,
            ``"boredom"``.

    Raises:
        ValueError: If ``label`` is neither ``None`` nor one of ``EMOTIONS``.
    """

    path: Path
    corpus: str
    speaker: str
    label: str | None
    source_label: str

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in EMOTIONS:
            raise ValueError(f"{self.path}: label {self.label!r} is not one of {EMOTIONS}")


def named_utterance(path: Path, corpus: str, speaker_id: str, source_label: str,
                    to_schema: Mapping[str, str | None]) -> Utterance:
    """The utterance a reader parsed from a file name.

    Args:
        path: The audio file.
        corpus: Corpus name (the reader's ``CORPUS``).
        speaker_id: The speaker as written in the corpus's file names (``"12"``, ``"OAF"``).
        source_label: The corpus's own emotion name.
        to_schema: The reader's ``TO_SCHEMA``: corpus emotion -> class (or None).

    Returns:
        ``Utterance(path, corpus, "<corpus>:<speaker_id>", to_schema[source_label], source_label)``.
    """
    return Utterance(path=path, corpus=corpus, speaker=f"{corpus}:{speaker_id}",
                     label=to_schema[source_label], source_label=source_label)


class CorpusReader(Protocol):
    """What every module in :mod:`training.corpora` provides."""

    CORPUS: str

    def parse_name(self, path: Path) -> Utterance | None:
        """Parses one file name; ``None`` if it does not follow the corpus code."""
        ...

    def scan(self, root: Path) -> list[Utterance]:
        """Finds and parses every audio file under ``root``."""
        ...


def is_audio(path: Path) -> bool:
    """Tells whether a path has an audio suffix.

    Args:
        path: Any file path.

    Returns:
        True if the suffix, lower-cased, is in :data:`AUDIO_EXTENSIONS`.
    """
    return path.suffix.lower() in AUDIO_EXTENSIONS


def scan_tree(root: Path, parse_name: Callable[[Path], Utterance | None], corpus: str) -> list[Utterance]:
    """Parses every audio file below a folder with one corpus's name parser.

    Args:
        root: Folder searched recursively.
        parse_name: The corpus's ``parse_name``.
        corpus: Corpus name, for the error message.

    Returns:
        The utterances whose names parse, sorted by path. Non-audio files and
        names that do not follow the corpus code are skipped silently.

    Raises:
        FileNotFoundError: If ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{corpus} folder not found: {root} (does not exist or is not a directory)")
    utterances = []
    for path in sorted(root.rglob("*")):
        if not is_audio(path) or not path.is_file():
            continue
        utterance = parse_name(path)
        if utterance is not None:
            utterances.append(utterance)
    return utterances
