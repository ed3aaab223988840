"""Reader for SAVEE, the Surrey Audio-Visual Expressed Emotion database.

Haq S, Jackson PJB (2009). *Speaker-dependent audio-visual emotion
recognition.* Proc. Int. Conf. on Auditory-Visual Speech Processing (AVSP'09),
Norwich, UK, pp. 53-58. Haq S, Jackson PJB (2010). *Multimodal emotion
recognition.* In W. Wang (ed.), Machine Audition: Principles, Algorithms and
Systems, IGI Global, pp. 398-423. University of Surrey,
http://kahlan.eps.surrey.ac.uk/savee/

Four male speakers, ``DC``, ``JE``, ``JK`` and ``KL``. Two layouts are read:

- the original release, ``AudioData/<speaker>/<code><nn>.wav``
  (e.g. ``AudioData/DC/a01.wav``; the speaker is the parent folder's name);
- the common flat copy, ``<speaker>_<code><nn>.wav`` (e.g. ``DC_a01.wav``).

Emotion codes: ``a`` anger, ``d`` disgust, ``f`` fear, ``h`` happiness,
``n`` neutral, ``sa`` sadness, ``su`` surprise; ``nn`` is the sentence number
(two digits). The two-letter codes are matched before the one-letter ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "savee"

SPEAKERS: frozenset[str] = frozenset({"DC", "JE", "JK", "KL"})
"""SAVEE speaker initials."""

SOURCE_LABELS: dict[str, str] = {
    "a": "anger",
    "d": "disgust",
    "f": "fear",
    "h": "happiness",
    "n": "neutral",
    "sa": "sadness",
    "su": "surprise",
}
"""SAVEE emotion code -> SAVEE emotion name."""

TO_SCHEMA: dict[str, str] = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprise": "surprise",
}
"""SAVEE emotion name -> class of :data:`training.labels.EMOTIONS`."""

_CODE = r"(?P<emotion>sa|su|a|d|f|h|n)(?P<sentence>\d\d)"
_FLAT_NAME = re.compile(r"(?P<speaker>[A-Za-z]{2})_" + _CODE, re.IGNORECASE)
_NESTED_NAME = re.compile(_CODE, re.IGNORECASE)


def parse_name(path: Path) -> Utterance | None:
    """Parses a SAVEE file name, flat (``DC_a01.wav``) or nested (``DC/a01.wav``).

    Speaker and emotion code are matched case-insensitively.

    Args:
        path: Audio file; its name, and for the nested layout its parent
            folder's name, are read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"savee:<initials>"`` (upper case) and
        ``source_label`` the SAVEE emotion name, or ``None`` if the suffix is
        not audio, the name follows neither layout, or the speaker is unknown.
    """
    path = Path(path)
    if not is_audio(path):
        return None
    match = _FLAT_NAME.fullmatch(path.stem)
    if match is not None:
        speaker = match["speaker"].upper()
    else:
        match = _NESTED_NAME.fullmatch(path.stem)
        speaker = path.parent.name.upper()
    if match is None or speaker not in SPEAKERS:
        return None
    source_label = SOURCE_LABELS[match["emotion"].lower()]
    return named_utterance(path, CORPUS, speaker, source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every SAVEE file under a folder (e.g. ``data/savee``).

    Args:
        root: Folder searched recursively, in either layout.

    Returns:
        Parsed utterances sorted by path; other files are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)
