"""Corpus readers: labelled utterance lists from folders of acted-emotion speech.

One module per corpus parses that corpus's file-naming code (no audio is
read) into :class:`~training.corpora.base.Utterance` records labelled with the
7-class schema of :mod:`training.labels`:

============  =====================  ==========================================
name          module                 folder under the data directory
============  =====================  ==========================================
``ravdess``   :mod:`.ravdess`        ``ravdess/`` (``Actor_01`` … ``Actor_24``)
``tess``      :mod:`.tess`           ``tess/``
``crema-d``   :mod:`.crema_d`        ``crema-d/`` (audio in ``AudioWAV/``)
``savee``     :mod:`.savee`          ``savee/``
``emodb``     :mod:`.emodb`          ``emodb/``
``nemo``      :mod:`.nemo`           ``nemo/`` (audio in ``samples/``)
============  =====================  ==========================================

The corpus name is also the folder name and the prefix of every speaker id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from training.corpora import crema_d, emodb, nemo, ravdess, savee, tess
from training.corpora.base import AUDIO_EXTENSIONS, CorpusReader, Utterance

__all__ = ["AUDIO_EXTENSIONS", "READERS", "CorpusReader", "Utterance", "discover"]

logger = logging.getLogger(__name__)

READERS: Mapping[str, CorpusReader] = MappingProxyType(
    {
        ravdess.CORPUS: ravdess,
        tess.CORPUS: tess,
        crema_d.CORPUS: crema_d,
        savee.CORPUS: savee,
        emodb.CORPUS: emodb,
        nemo.CORPUS: nemo,
    }
)
"""Corpus name (= folder name under the data directory) -> reader module."""


def discover(data_dir: Path, corpora: Iterable[str] | None = None) -> list[Utterance]:
    """Scans every corpus present under a data directory.

    Looks for ``data_dir/<name>`` for each name in :data:`READERS` (``ravdess``,
    ``tess``, ``crema-d``, ``savee``, ``emodb``, ``nemo``). A corpus whose folder is
    absent, or holds no parseable audio (e.g. CREMA-D metadata only), is
    skipped with an INFO log message.

    Args:
        data_dir: Folder holding one sub-folder per corpus, e.g. ``shared/data``.
        corpora: Corpus names to look for; ``None`` for all of :data:`READERS`.

    Returns:
        All utterances found, corpus by corpus in :data:`READERS` order, each
        corpus sorted by path.

    Raises:
        FileNotFoundError: If ``data_dir`` does not exist, or no utterance was
            found in any corpus folder.
        KeyError: If ``corpora`` names a corpus that has no reader.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    names = list(READERS) if corpora is None else list(corpora)
    unknown = [name for name in names if name not in READERS]
    if unknown:
        raise KeyError(f"no reader for corpora {unknown}; known: {list(READERS)}")
    utterances: list[Utterance] = []
    for name in READERS:
        if name not in names:
            continue
        root = data_dir / name
        if not root.is_dir():
            logger.info("%s: no folder %s, skipped", name, root)
            continue
        found = READERS[name].scan(root)
        if not found:
            logger.info("%s: no parseable audio under %s, skipped", name, root)
            continue
        logger.info("%s: %d utterances from %s", name, len(found), root)
        utterances.extend(found)
    if not utterances:
        raise FileNotFoundError(f"no corpus audio found under {data_dir} (looked for {names})")
    return utterances
