"""Reader for nEMO, a dataset of emotional speech in Polish.

Christop I (2024). *nEMO: Dataset of Emotional Speech in Polish.* Proceedings of
LREC-COLING 2024, Torino, pp. 12111-12116. https://aclanthology.org/2024.lrec-main.1059/
(licence CC BY-NC-SA 4.0).

Nine Polish actors (female EB0, IC0, KD0, MK0; male KS0, MP0, SM0, TP0, WR0) read sentences
in six emotions; there is no disgust. File names follow ``<speaker>_<emotion>_<n>``, e.g.
``samples/EB0_anger_1.ogg``; emotion is ``anger``, ``fear``, ``happiness``, ``neutral``,
``sadness`` or ``surprised``. The corpus's ``data.tsv`` repeats speaker and emotion per file;
like every reader here this one uses the file name only (the two agree on all 4481 files of
the shared copy, which ``tests/test_corpora.py`` checks).
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "nemo"

SPEAKERS: tuple[str, ...] = ("EB0", "IC0", "KD0", "MK0", "KS0", "MP0", "SM0", "TP0", "WR0")
"""nEMO actors: four female (EB0, IC0, KD0, MK0), then five male (corpus ``data.tsv``)."""

FEMALE: frozenset[str] = frozenset({"EB0", "IC0", "KD0", "MK0"})
"""The female actors of :data:`SPEAKERS`."""

TO_SCHEMA: dict[str, str] = {
    "anger": "angry",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}
"""nEMO emotion name -> class of :data:`training.labels.EMOTIONS` (nEMO has no disgust)."""

_NAME = re.compile(r"(?P<speaker>[A-Za-z]{2}[0-9])_(?P<emotion>[A-Za-z]+)_(?P<n>[0-9]+)")


def parse_name(path: Path) -> Utterance | None:
    """Parses an nEMO file name ``<speaker>_<emotion>_<n>.<ext>``.

    Args:
        path: Audio file; only its name is read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"nemo:<id>"`` (e.g. ``"nemo:EB0"``), or ``None`` if the
        suffix is not audio, the speaker is not one of :data:`SPEAKERS` or the emotion is not
        one of nEMO's six.
    """
    path = Path(path)
    match = _NAME.fullmatch(path.stem)
    if not is_audio(path) or match is None:
        return None
    speaker, source_label = match["speaker"].upper(), match["emotion"].lower()
    if speaker not in SPEAKERS or source_label not in TO_SCHEMA:
        return None
    return named_utterance(path, CORPUS, speaker, source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every nEMO file under a folder (e.g. ``data/nemo``; the audio is in ``samples/``).

    Args:
        root: Folder searched recursively.

    Returns:
        Parsed utterances sorted by path; other files (``data.tsv``, ``LICENSE``) are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)
