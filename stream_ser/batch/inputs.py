"""The recordings of a batch: manifests and glob patterns, and each recording's stable id."""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Suffixes of a manifest: a text file with one path per line (``#`` starts a comment), or a CSV
#: with a ``path`` column (and optionally ``recording_id``). Anything else is a glob pattern.
MANIFEST_SUFFIXES = (".txt", ".lst", ".list", ".csv")
#: Longest part of a file name kept in a recording id (characters).
MAX_ID_STEM_CHARS = 60


class BatchError(Exception):
    """A batch that cannot start: no input, an unreadable manifest, an unusable output folder,
    or the ``batch`` extra missing. Nothing was scored."""


@dataclass(frozen=True)
class Recording:
    """One recording of a batch.

    Attributes:
        path: The file, as the workers open it.
        recording_id: Its stable name in the outputs (:func:`recording_id`, or the manifest's).
    """

    path: str
    recording_id: str


def recording_id(path: str | os.PathLike[str]) -> str:
    """A recording's id: its file name without the suffix, reduced to ``A-Z a-z 0-9 . _ -``
    (at most 60 characters), then ``-`` and 10 hex digits of the SHA-1 of its absolute path.

    Stable across runs (so a re-run finds what is done) and distinct for two files of one name in
    different folders, e.g. ``call-0042-3f2a9c1b7d`` for ``/archive/2026/call-0042.wav``.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem)[:MAX_ID_STEM_CHARS].lstrip(".") or "recording"
    digest = hashlib.sha1(os.path.abspath(os.fspath(path)).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{stem}-{digest}"


def _check_id(rid: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", rid):
        raise BatchError(f"{where}: recording_id {rid!r} must be 1 to 128 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    return rid


def read_manifest(path: str | os.PathLike[str]) -> list[Recording]:
    """The recordings a manifest lists; relative paths are taken from the manifest's folder.

    A ``.csv`` manifest has a header with a ``path`` column and optionally ``recording_id`` (your
    own ids, e.g. a call id; default :func:`recording_id`); any other manifest has one path per
    line (blank lines and lines starting with ``#`` are skipped).

    Raises:
        BatchError: If the manifest cannot be read, has no ``path`` column, or an id is bad.
    """
    where = Path(path)
    base = where.parent
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{where}: cannot read the manifest ({exc})") from None
    out = []
    if where.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise BatchError(f"{where}: a CSV manifest needs a header with a 'path' column")
        for n, row in enumerate(reader, start=2):
            p = (row.get("path") or "").strip()
            if not p:
                raise BatchError(f"{where}, line {n}: empty path")
            full = str(base / p) if not os.path.isabs(p) else p
            rid = (row.get("recording_id") or "").strip()
            out.append(Recording(full, _check_id(rid, f"{where}, line {n}") if rid else recording_id(full)))
        return out
    for line in text.splitlines():
        p = line.strip()
        if p and not p.startswith("#"):
            full = str(base / p) if not os.path.isabs(p) else p
            out.append(Recording(full, recording_id(full)))
    return out


def read_inputs(specs: Sequence[str]) -> list[Recording]:
    """The recordings of a batch, in the order given, each once.

    Args:
        specs: Manifests (a file ending in one of :data:`MANIFEST_SUFFIXES`) or glob patterns
            (``calls/**/*.wav``; ``**`` matches folders at any depth; a plain path matches itself),
            matches sorted by name.

    Raises:
        BatchError: A pattern matching no file, an unreadable manifest, no recording at all, or
            one id given to two different files.
    """
    recordings: list[Recording] = []
    for spec in specs:
        if Path(spec).suffix.lower() in MANIFEST_SUFFIXES and os.path.isfile(spec):
            recordings += read_manifest(spec)
            continue
        matches = sorted(p for p in glob.glob(spec, recursive=True) if not os.path.isdir(p))
        if not matches:
            raise BatchError(f"{spec}: no file matches (quote a pattern so that the shell does not expand it)")
        recordings += [Recording(p, recording_id(p)) for p in matches]
    seen: dict[str, str] = {}
    unique = []
    for rec in recordings:
        other = seen.get(rec.recording_id)
        if other is None:
            seen[rec.recording_id] = rec.path
            unique.append(rec)
        elif os.path.abspath(other) != os.path.abspath(rec.path):
            raise BatchError(f"recording_id {rec.recording_id!r} is given to two files: {other} and {rec.path}")
    if not unique:
        raise BatchError("no recording to score (the manifests are empty)")
    return unique
