"""Reader for TESS, the Toronto Emotional Speech Set.

Dupuis K, Pichora-Fuller MK (2010). *Toronto Emotional Speech Set (TESS).*
University of Toronto, Psychology Department. https://doi.org/10.5683/SP2/E8H2MF
(licence CC BY-NC-ND 4.0).

Two female talkers, ``OAF`` (aged 64) and ``YAF`` (aged 26), say 200 target
words in the carrier phrase "Say the word ___". File names follow
``<speaker>_<word>_<emotion>``, e.g. ``OAF_angry/OAF_back_angry.flac``; emotion
is ``angry``, ``disgust``, ``fear``, ``happy``, ``neutral``, ``sad`` or ``ps``
(pleasant surprise, mapped to ``"surprise"``). Labels come from the file name,
never from the folder, whose capitalisation differs between releases
(``OAF_Fear``, ``YAF_pleasant_surprised``).

The original release misnames one file ``OA_bite_neutral.wav``; ``OA`` is read
as ``OAF`` so that file counts when present.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "tess"

SPEAKERS: tuple[str, ...] = ("OAF", "YAF")
"""TESS talkers: older adult female, younger adult female."""

TO_SCHEMA: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "surprise",
}
"""TESS emotion name (lower case) -> class of :data:`training.labels.EMOTIONS`."""

_SPEAKER_ALIASES: dict[str, str] = {"OAF": "OAF", "YAF": "YAF", "OA": "OAF"}
_NAME = re.compile(r"(?P<speaker>[A-Za-z]+)_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z]+)")


def parse_name(path: Path) -> Utterance | None:
    """Parses a TESS file name ``<speaker>_<word>_<emotion>.<ext>``.

    Speaker and emotion are matched case-insensitively; ``source_label`` is the
    lower-cased emotion (``"ps"`` for pleasant surprise).

    Args:
        path: Audio file; only its name is read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"tess:OAF"`` or ``"tess:YAF"``, or ``None``
        if the suffix is not audio, the speaker is unknown or the emotion is
        not one of the seven TESS emotions.
    """
    path = Path(path)
    match = _NAME.fullmatch(path.stem)
    if not is_audio(path) or match is None:
        return None
    speaker = _SPEAKER_ALIASES.get(match["speaker"].upper())
    source_label = match["emotion"].lower()
    if speaker is None or source_label not in TO_SCHEMA:
        return None
    return named_utterance(path, CORPUS, speaker, source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every TESS file under a folder (e.g. ``data/tess``).

    Args:
        root: Folder searched recursively (flat or per-emotion sub-folders).

    Returns:
        Parsed utterances sorted by path; other files are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)
