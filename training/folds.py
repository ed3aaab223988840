"""Speaker-independent cross-validation protocols.

Sits beside :mod:`training.split`: where the committed split ``si_v1`` is one fixed partition,
a *protocol* here is a list of :class:`~training.split.Split` folds plus a label scheme, so the
same training and scoring code serves the one fixed fold and the full cross-validation.

Protocols (:data:`PROTOCOLS`):

``ravdess8``
    RAVDESS speech, the literature's 8 classes (neutral, calm, happy, sad, angry, fearful,
    disgust, surprised; :attr:`Utterance.source_label`), 6 folds of 4 consecutive actors
    (1-4, 5-8, ..., 21-24). Each fold holds 2 male (odd) and 2 female (even) actors.
``ravdess7``
    The same folds in the project's 7-class schema (:data:`training.labels.EMOTIONS`; calm is
    merged into neutral).
``tess7``
    TESS leave-one-speaker-out: train OAF, test YAF, and the reverse (7 classes; ``ps`` is
    surprise). TESS has only two talkers, so these folds have no validation speaker.
``loco6``
    Leave one corpus out over RAVDESS, TESS and nEMO: fold *k* trains on two corpora and tests
    on every speaker of the third, in the 6 classes all three share (nEMO has no disgust;
    RAVDESS calm is neutral). Validation speakers come from a training corpus: two nEMO actors
    (one female, one male: :data:`LOCO_NEMO_VALIDATION`) when nEMO trains, else RAVDESS actors
    17-20. It measures what a voice, a language and a studio never heard do to a model.
``pooled7``
    RAVDESS + TESS in 7 classes: fold *k* tests RAVDESS fold *k* together with one TESS
    talker, alternating OAF (folds 1, 3, 5) and YAF (folds 2, 4, 6), and trains on the other
    TESS talker. Fold 6 (actors 21-24 + YAF, validation 17-20) is exactly the committed split
    ``si_v1`` (:func:`fixed_fold`), the one fold on which all architectures are compared.

Validation speakers (early stopping, model selection) always come from the training side of
the fold, never from its test speakers: the 4 RAVDESS actors of the preceding fold (fold 1 takes
actors 21-24). The 6-fold grouping of 4 consecutive actors is this project's protocol;
published "speaker-independent" RAVDESS figures use similar actor-disjoint partitions (e.g.
Krasnoproshin & Vashkevich 2026, arXiv:2606.03359), but their exact folds may differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .corpora.base import Utterance
from .corpora.nemo import SPEAKERS as NEMO_SPEAKERS
from .labels import EMOTIONS
from .split import Split

#: nEMO's validation actors in ``loco6`` when nEMO trains: one female, one male, chosen a priori.
LOCO_NEMO_VALIDATION: tuple[str, ...] = ("IC0", "SM0")
#: The classes RAVDESS, TESS and nEMO share: the 7-class schema without disgust.
SHARED_6: tuple[str, ...] = tuple(e for e in EMOTIONS if e != "disgust")

#: RAVDESS's own 8 emotion names (file-name codes 01-08), the literature's 8-class setting.
RAVDESS_8: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

#: Number of RAVDESS actors and of actors per fold (Livingstone & Russo 2018: 24 actors).
N_RAVDESS_ACTORS = 24
ACTORS_PER_FOLD = 4
TESS_SPEAKERS: tuple[str, ...] = ("OAF", "YAF")


def ravdess_speaker(actor: int) -> str:
    """Speaker id of a RAVDESS actor number (1-24), as in :attr:`Utterance.speaker`."""
    return f"ravdess:{actor:02d}"


def is_male_ravdess(speaker: str) -> bool:
    """RAVDESS actors with odd ids are male, even ids female (corpus documentation)."""
    return int(speaker.split(":")[1]) % 2 == 1


def ravdess_fold_actors(fold: int) -> tuple[int, ...]:
    """Actor numbers of RAVDESS fold ``fold`` (0-based): fold 0 is 1-4, fold 5 is 21-24."""
    n_folds = N_RAVDESS_ACTORS // ACTORS_PER_FOLD
    if not 0 <= fold < n_folds:
        raise ValueError(f"RAVDESS fold must be in 0..{n_folds - 1}, got {fold}")
    return tuple(range(fold * ACTORS_PER_FOLD + 1, (fold + 1) * ACTORS_PER_FOLD + 1))


def ravdess_folds() -> tuple[Split, ...]:
    """The 6 speaker-independent RAVDESS folds.

    Returns:
        6 splits; split *k* tests actors ``4k+1 .. 4k+4``, validates on the 4 actors of the
        preceding fold (cyclically) and trains on the other 16.
    """
    n_folds = N_RAVDESS_ACTORS // ACTORS_PER_FOLD
    all_spk = {ravdess_speaker(a) for a in range(1, N_RAVDESS_ACTORS + 1)}
    out = []
    for k in range(n_folds):
        test = {ravdess_speaker(a) for a in ravdess_fold_actors(k)}
        val = {ravdess_speaker(a) for a in ravdess_fold_actors((k - 1) % n_folds)}
        out.append(Split(f"ravdess-f{k + 1}", all_spk - test - val, val, test))
    return tuple(out)


def tess_folds() -> tuple[Split, ...]:
    """TESS leave-one-speaker-out: (train YAF, test OAF) and (train OAF, test YAF); no validation."""
    return tuple(
        Split(f"tess-test{t}", {f"tess:{o}" for o in TESS_SPEAKERS if o != t}, (), {f"tess:{t}"})
        for t in TESS_SPEAKERS
    )


def pooled_folds() -> tuple[Split, ...]:
    """RAVDESS + TESS folds: RAVDESS fold *k* plus TESS OAF (k even, 0-based) or YAF (k odd)."""
    out = []
    for k, r in enumerate(ravdess_folds()):
        t = TESS_SPEAKERS[k % 2]
        other = TESS_SPEAKERS[(k + 1) % 2]
        out.append(Split(f"pooled-f{k + 1}", r.train | {f"tess:{other}"}, r.validation, r.test | {f"tess:{t}"}))
    return tuple(out)


def loco_folds() -> tuple[Split, ...]:
    """Leave-one-corpus-out folds: test RAVDESS, then TESS, then nEMO (all their speakers).

    Returns:
        3 splits. Validation: nEMO actors :data:`LOCO_NEMO_VALIDATION` when nEMO trains, else
        RAVDESS actors 17-20; training: every other speaker of the two training corpora.
    """
    speakers = {
        "ravdess": {ravdess_speaker(a) for a in range(1, N_RAVDESS_ACTORS + 1)},
        "tess": {f"tess:{t}" for t in TESS_SPEAKERS},
        "nemo": {f"nemo:{n}" for n in NEMO_SPEAKERS},
    }
    out = []
    for test in speakers:
        if test != "nemo":
            val = {f"nemo:{n}" for n in LOCO_NEMO_VALIDATION}
        else:
            val = {ravdess_speaker(a) for a in ravdess_fold_actors(4)}
        train = set().union(*(v for c, v in speakers.items() if c != test)) - val
        out.append(Split(f"loco-test-{test}", train, val, speakers[test]))
    return tuple(out)


def label_6(u: Utterance) -> str | None:
    """The label in the 6 classes the three corpora share (:data:`SHARED_6`); None for disgust."""
    return u.label if u.label in SHARED_6 else None


def label_7(u: Utterance) -> str | None:
    """The 7-class schema label (:data:`training.labels.EMOTIONS`)."""
    return u.label


def label_ravdess8(u: Utterance) -> str | None:
    """RAVDESS's own 8-class label (``Utterance.source_label``); None for other corpora."""
    return u.source_label if u.corpus == "ravdess" else None


@dataclass(frozen=True)
class Protocol:
    """A speaker-independent evaluation protocol.

    Attributes:
        name: Registry key (``ravdess8``, ``ravdess7``, ``tess7``, ``pooled7``, ``loco6``).
        description: One line for reports.
        corpora: Corpora whose utterances take part.
        labels: Class names in model output order.
        label_of: Maps an utterance to its class name (None: not used).
        folds: The folds, in order.
    """

    name: str
    description: str
    corpora: tuple[str, ...]
    labels: tuple[str, ...]
    label_of: Callable[[Utterance], str | None]
    folds: tuple[Split, ...]

    def utterances(self, utts: Sequence[Utterance]) -> list[Utterance]:
        """The utterances of this protocol's corpora that have a label in its scheme."""
        return [u for u in utts if u.corpus in self.corpora and self.label_of(u) in self.labels]

    def fold(self, index: int) -> Split:
        """Fold by 1-based index (as printed in reports)."""
        return self.folds[index - 1]


PROTOCOLS: dict[str, Protocol] = {
    "ravdess8": Protocol(
        "ravdess8", "RAVDESS, 8 classes, 6 folds of 4 consecutive actors", ("ravdess",), RAVDESS_8,
        label_ravdess8, ravdess_folds(),
    ),
    "ravdess7": Protocol(
        "ravdess7", "RAVDESS, 7 classes (calm -> neutral), 6 folds of 4 consecutive actors", ("ravdess",),
        EMOTIONS, label_7, ravdess_folds(),
    ),
    "tess7": Protocol("tess7", "TESS, 7 classes, leave one speaker out", ("tess",), EMOTIONS, label_7, tess_folds()),
    "pooled7": Protocol(
        "pooled7", "RAVDESS + TESS, 7 classes, 6 folds (RAVDESS fold k + one TESS talker)", ("ravdess", "tess"),
        EMOTIONS, label_7, pooled_folds(),
    ),
    "loco6": Protocol(
        "loco6", "leave one corpus out over RAVDESS, TESS and nEMO, the 6 shared classes", ("ravdess", "tess", "nemo"),
        SHARED_6, label_6, loco_folds(),
    ),
}
"""Protocol name -> :class:`Protocol`."""

#: 1-based index of the fixed comparison fold in ``ravdess*`` and ``pooled7`` (actors 21-24).
FIXED_FOLD = 6


def fixed_fold() -> Split:
    """The one fixed comparison fold: test actors 21-24 + TESS YAF, validation 17-20 (= si_v1)."""
    return PROTOCOLS["pooled7"].fold(FIXED_FOLD)
