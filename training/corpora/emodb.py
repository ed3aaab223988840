"""Reader for EmoDB, the Berlin Database of Emotional Speech.

Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005). *A database
of German emotional speech.* Proc. Interspeech 2005, Lisbon, pp. 1517-1520.

Ten German actors (five female, five male) read ten sentences. File names
are seven characters, e.g. ``wav/03a01Fa.wav``:

- speaker, two digits: 03, 08, 09, 10, 11, 12, 13, 14, 15, 16
- text code: a01, a02, a04, a05, a07, b01, b02, b03, b09, b10
- emotion letter (German initial): ``W`` Ärger/Wut (anger), ``L`` Langeweile
  (boredom), ``E`` Ekel (disgust), ``A`` Angst (fear), ``F`` Freude
  (happiness), ``T`` Trauer (sadness), ``N`` neutral
- version letter: ``a``, ``b``, ``c``, …

Boredom has no class in the 7-class schema: those utterances parse with
``label=None`` (and ``source_label="boredom"``) so callers decide whether to
drop them. EmoDB has no surprise class.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "emodb"

SPEAKERS: frozenset[str] = frozenset({"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"})
"""EmoDB speaker codes."""

TEXTS: frozenset[str] = frozenset({"a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"})
"""EmoDB text (sentence) codes."""

SOURCE_LABELS: dict[str, str] = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
"""EmoDB emotion letter -> English emotion name."""

TO_SCHEMA: dict[str, str | None] = {
    "anger": "angry",
    "boredom": None,
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "neutral": "neutral",
}
"""EmoDB emotion name -> class of :data:`training.labels.EMOTIONS` (``None``: no class)."""

_NAME = re.compile(r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<version>[a-z])")


def parse_name(path: Path) -> Utterance | None:
    """Parses an EmoDB file name such as ``03a01Fa.wav`` (case-sensitive).

    Args:
        path: Audio file; only its name is read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"emodb:<nn>"`` and ``source_label`` the
        English emotion name (``label`` is ``None`` for boredom), or ``None``
        if the suffix is not audio or the speaker, text or emotion code is
        unknown.
    """
    path = Path(path)
    match = _NAME.fullmatch(path.stem)
    if not is_audio(path) or match is None:
        return None
    if match["speaker"] not in SPEAKERS or match["text"] not in TEXTS:
        return None
    source_label = SOURCE_LABELS[match["emotion"]]
    return named_utterance(path, CORPUS, match["speaker"], source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every EmoDB file under a folder (e.g. ``data/emodb``).

    Args:
        root: Folder searched recursively (audio usually in ``wav/``).

    Returns:
        Parsed utterances sorted by path, boredom included with
        ``label=None``; other files are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)
