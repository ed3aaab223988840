"""Reader for RAVDESS, speech subset (audio only).

Livingstone SR, Russo FA (2018). *The Ryerson Audio-Visual Database of
Emotional Speech and Song (RAVDESS): A dynamic, multimodal set of facial and
vocal expressions in North American English.* PLoS ONE 13(5): e0196391.
https://doi.org/10.1371/journal.pone.0196391 (licence CC BY-NC-SA 4.0).

File names follow ``MM-VV-EE-II-SS-RR-AA`` (all two-digit codes), e.g.
``Actor_12/03-01-05-01-02-01-12.flac``:

- ``MM`` modality: ``01`` full AV, ``02`` video only, ``03`` audio only
- ``VV`` vocal channel: ``01`` speech, ``02`` song
- ``EE`` emotion: ``01`` neutral, ``02`` calm, ``03`` happy, ``04`` sad,
  ``05`` angry, ``06`` fearful, ``07`` disgust, ``08`` surprised
- ``II`` intensity: ``01`` normal, ``02`` strong
- ``SS`` statement: ``01`` "Kids are talking by the door",
  ``02`` "Dogs are sitting by the door"
- ``RR`` repetition: ``01`` or ``02``
- ``AA`` actor: ``01``-``24`` (odd male, even female)

Only audio-only speech files (``03-01-…``) parse. In the 7-class schema calm is
merged into neutral; ``source_label`` keeps the 8-class RAVDESS name.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.corpora.base import Utterance, is_audio, named_utterance, scan_tree

CORPUS = "ravdess"

SOURCE_LABELS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
"""RAVDESS emotion code -> RAVDESS 8-class emotion name."""

TO_SCHEMA: dict[str, str] = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "fear",
    "disgust": "disgust",
    "surprised": "surprise",
}
"""RAVDESS emotion name -> class of :data:`training.labels.EMOTIONS`."""

_NAME = re.compile(
    r"(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>0[1-8])-(?P<intensity>0[12])"
    r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d\d)"
)
_AUDIO_ONLY = "03"
_SPEECH = "01"
_N_ACTORS = 24


def parse_name(path: Path) -> Utterance | None:
    """Parses a RAVDESS file name ``MM-VV-EE-II-SS-RR-AA.<ext>``.

    Args:
        path: Audio file; only its name is read (any suffix in
            :data:`training.corpora.base.AUDIO_EXTENSIONS`, any case).

    Returns:
        The utterance with speaker ``"ravdess:AA"`` (two digits, as in the
        name), or ``None`` if the suffix is not audio, the name does not follow
        the code, the actor is outside 01-24, or the file is not audio-only
        speech (modality 03, vocal channel 01).
    """
    path = Path(path)
    match = _NAME.fullmatch(path.stem)
    if not is_audio(path) or match is None:
        return None
    if match["modality"] != _AUDIO_ONLY or match["channel"] != _SPEECH:
        return None
    if not 1 <= int(match["actor"]) <= _N_ACTORS:
        return None
    source_label = SOURCE_LABELS[match["emotion"]]
    return named_utterance(path, CORPUS, match["actor"], source_label, TO_SCHEMA)


def scan(root: Path) -> list[Utterance]:
    """Finds every RAVDESS speech file under a folder (e.g. ``data/ravdess``).

    Args:
        root: Folder searched recursively (usually holding ``Actor_01`` …
            ``Actor_24``).

    Returns:
        Parsed utterances sorted by path; other files are ignored.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """
    return scan_tree(root, parse_name, CORPUS)


def actor_id(utt: Utterance) -> int:
    """Returns the RAVDESS actor number of an utterance.

    Args:
        utt: A RAVDESS utterance (speaker ``"ravdess:AA"``).

    Returns:
        The actor number, 1-24 (odd male, even female).

    Raises:
        ValueError: If ``utt`` is not from RAVDESS.
    """
    if utt.corpus != CORPUS:
        raise ValueError(f"{utt.path}: not a RAVDESS utterance (corpus {utt.corpus!r})")
    return int(utt.speaker.removeprefix(f"{CORPUS}:"))
