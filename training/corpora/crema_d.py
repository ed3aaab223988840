"""Reader for CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset.

Cao H, Cooper DG, Keutmann MK, Gur RC, Nenkova A, Verma R (2014). *CREMA-D:
Crowd-sourced Emotional Multimodal Actors Dataset.* IEEE Transactions on
Affective Computing 5(4): 377-390. doi:10.1109/TAFFC.2014.2336244
(licence ODbL 1.0 / DbCL 1.0).

File names follow ``<actor>_<sentence>_<emotion>_<level>``, e.g.
``AudioWAV/1001_DFA_ANG_XX.wav``:

- actor ``1001``-``1091``
- sentence: IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI, WSI
- emotion: ANG anger, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad
- level: LO, MD, HI or XX (unspecified)

``label`` is the emotion the actor was asked to portray (the file-name code),
not the crowd-perceived emotion of ``processedResults/summaryTable.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "crema-d"

SOURCE_LABELS: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
"""CREMA-D emotion code -> CREMA-D emotion name."""

TO_SCHEMA: dict[str, str] = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
}
"""CREMA-D emotion name -> class of :data:`training.labels.EMOTIONS`."""

SENTENCES: frozenset[str] = frozenset(
    {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
)
"""The twelve CREMA-D sentence codes."""

LEVELS: frozenset[str] = frozenset({"LO", "MD", "HI", "XX"})
"""Emotion intensity codes (XX: unspecified)."""

_FIRST_ACTOR, _LAST_ACTOR = 1001, 1091
_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})")


def parse_name(path: Path) -> Utterance | None:
    """Parses a CREMA-D file name ``<actor>_<sentence>_<emotion>_<level>.<ext>``.

    Args:
        path: Audio file; only its name is read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"crema-d:<actor>"`` and ``source_label``
        the CREMA-D emotion name (``"anger"``, ``"disgust"``, ``"fear"``,
        ``"happy"``, ``"neutral"``, ``"sad"``), or ``None`` if the suffix is not
        audio or any field is outside the code above.
    """
    path = Path(path)
    match = _NAME.fullmatch(path.stem)
    if not is_audio(path) or match is None:
        return None
    if not _FIRST_ACTOR <= int(match["actor"]) <= _LAST_ACTOR:
        return None
    if match["sentence"] not in SENTENCES or match["level"] not in LEVELS:
        return None
    source_label = SOURCE_LABELS.get(match["emotion"])
    if source_label is None:
        return None
    return named_utterance(path, CORPUS, match["actor"], source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every CREMA-D audio file under a folder (e.g. ``data/crema-d``).

    Args:
        root: Folder searched recursively (audio usually in ``AudioWAV/``).

    Returns:
        Parsed utterances sorted by path; metadata CSVs and other files are
        ignored, so a metadata-only folder gives an empty list.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)
