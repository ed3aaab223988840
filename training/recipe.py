"""Training recipes as data: every choice that decides what a training run produces.

A :class:`Recipe` names the architecture, the epochs and learning-rate schedule, the optimiser,
the batch size, early stopping, the feature recipe's band edge and speech gate, the
augmentations, speaker normalisation and the seed. Recipes live in ``training/recipes/*.toml``
(one key per field, see :class:`Recipe`); ``shipped.toml`` is the recipe of the network shipped
in ``models/`` (read off its metadata), the other files are the recipes of the older runs that
the model card and ``models/RESULTS.md`` report.

Both training commands, ``python -m training.train`` and ``python -m training.experiments
train``, take ``--recipe NAME|PATH`` (default ``shipped``) and the same flags
(:func:`add_recipe_arguments`), each of which overrides one field of the recipe;
:func:`recipe_from_args` builds the :class:`Recipe` from them, so the same arguments give the
same recipe in both. The resolved recipe, with the name it came from and the flags that changed
it, is stored with every result (:func:`recipe_record`: the run JSON of the harness, the
provenance of an exported model), and ``--recipe`` also reads it back from such a JSON or ONNX
file, which is how a run is rebuilt.

Position in the pipeline: read by :mod:`training.train` and :mod:`training.experiments`, before
any data is touched; :func:`training.train.fit` trains a model with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_ser.features import SPEECH_GATES, FeatureConfig

from .adaptation import MODES as SPEAKER_NORMS
from .architectures import REGISTRY, ArchSpec
from .transfer import efficientat_feature_config, mn04_ft, mn04_native

try:  # Python 3.11+; the tomli backport (the `train` extra) before
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Folder of the named recipes (``--recipe NAME`` reads ``NAME.toml`` here).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: The recipe both training commands use unless ``--recipe`` names another.
DEFAULT_RECIPE = "shipped"
#: Learning-rate schedules (:func:`training.train.schedule_callbacks`).
SCHEDULES: tuple[str, ...] = ("plateau", "cosine")
#: Front ends: ``runtime`` = the runtime's default feature recipe with the recipe's ``fmax_hz``
#: (:class:`~stream_ser.features.FeatureConfig`); ``efficientat`` = EfficientAT's own band grid
#: at 16 kHz (:func:`training.transfer.efficientat_feature_config`).
FRONT_ENDS: tuple[str, ...] = ("runtime", "efficientat")
#: Standardisation of the pooled embedding in training: ``none``, or ``voice`` = per one-voice
#: chunk of each batch (:mod:`training.voice_norm`).
EMBEDDING_NORMS: tuple[str, ...] = ("none", "voice")
#: Optimisers (Keras's Adam and RMSprop with their default parameters besides the rate).
OPTIMIZERS: tuple[str, ...] = ("adam", "rmsprop")

#: Every architecture a recipe may name: the registry's (:mod:`training.architectures`) and the
#: pretrained encoder fine-tuned (:mod:`training.transfer`), its BatchNorm statistics frozen or
#: re-estimated.
SPECS: dict[str, ArchSpec] = {
    **REGISTRY,
    "mn04_ft": ArchSpec("mn04_ft", "EfficientAT mn04 (AudioSet) fine-tuned on the log-mel window", mn04_ft, lr=3e-4,
                        source="Schmid, Koutini & Widmer 2023 (EfficientAT mn04_as, MIT); training/transfer.py"),
    "mn04_ft_bn": ArchSpec("mn04_ft_bn", "mn04_ft with its BatchNorm statistics re-estimated", mn04_ft, lr=3e-4,
                           source="training/transfer.py", kwargs={"freeze_batchnorm": False, "name": "mn04_ft_bn"}),
    "mn04_native": ArchSpec("mn04_native", "EfficientAT mn04 fine-tuned on its own band grid and input scale",
                            mn04_native, lr=3e-4, source="Schmid, Koutini & Widmer 2023; training/transfer.py"),
}
#: Architectures that take only one front end.
NEEDS_FRONT_END: dict[str, str] = {"mn04_native": "efficientat"}


def check_vtlp(warp: float) -> float:
    """``warp`` if it is a usable VTLP range (0 = off).

    Raises:
        ValueError: If it is outside ``[0, 0.5)`` (VTLP's usual range is 0.9-1.1, ``warp`` = 0.1).
    """
    if not 0.0 <= warp < 0.5:
        raise ValueError(f"the VTLP warp must be in [0, 0.5), got {warp:g}")
    return warp


def check_mixup(alpha: float) -> float:
    """``alpha`` if it is a usable mixup parameter (0 = off).

    Raises:
        ValueError: If ``alpha`` is negative or above 1 (Zhang et al. found 0.1-0.4 best; above 1
            the mixes are mostly half-and-half).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the mixup alpha must be in [0, 1], got {alpha:g}")
    return alpha


def check_log_mel_options(arch: str, input_kind: str, vtlp: float, mixup: float, copies: int = 0) -> None:
    """Refuse VTLP, mixup and augmented copies for an architecture whose input is not the log-mel
    (all three make or transform log-mel windows).

    Raises:
        ValueError: Naming the option and the architecture.
    """
    for flag, does, on in (("vtlp", "warps", vtlp), ("mixup", "blends", mixup),
                           ("room-copies or --augment", "adds", copies)):
        if on and input_kind != "log_mel":
            raise ValueError(f"--{flag} {does} log-mel inputs; {arch} does not take them")


@dataclass(frozen=True)
class Recipe:
    """Every choice that decides what a training run produces (see the module docstring).

    The first eight fields have no default: a recipe file names them all. The others default to
    off (``lr`` and ``optimizer`` to the architecture's own).

    Attributes:
        arch: Architecture, a key of :data:`SPECS` (``cnn_gap_small`` is shipped).
        epochs: Most epochs trained (the cosine schedule runs them all). A harness fold without
            validation speakers trains at most :data:`training.train.EPOCHS_WITHOUT_VALIDATION`.
        schedule: Learning-rate schedule, one of :data:`SCHEDULES`: ``plateau`` halves the rate
            after 2 epochs without a lower validation loss and stops after ``patience``;
            ``cosine`` decays it to 1 % over ``epochs`` and keeps the best validation epoch.
        batch_size: Windows per batch.
        patience: Epochs without a lower validation loss before a ``plateau`` run stops (unused
            by ``cosine``). ``training.train`` defaulted to 6 and the harness to 5.
        fmax_hz: Highest mel band edge (Hz) of the feature recipe
            (:class:`stream_ser.features.FeatureConfig`; 8000 is the runtime's default, 4000 is
            shipped). The exported model carries it and the runtime uses it.
        speech_gate: Gate the training windows pass (``vad``: level gate and Silero VAD, the
            runtime's default; ``level``: the level gate alone, the recipe of every run before
            2026-12-06).
        seed: Seed of Keras, TensorFlow, NumPy and the batch order (``keras.utils.set_random_seed``).
        lr: Initial learning rate; None = the architecture's (``ArchSpec.lr``: 1e-3 for most,
            3e-4 for the pretrained encoder), as the harness always did.
        optimizer: One of :data:`OPTIMIZERS`; None = the architecture's (``ArchSpec.optimizer``).
        warmup: Epochs before early stopping starts watching the validation loss (the BatchNorm
            CNNs' first validation losses rise while the moving statistics settle).
        vtlp: Vocal tract length perturbation of the training log-mels: a frequency warp drawn
            from ``[1 - vtlp, 1 + vtlp]`` per window (Jaitly & Hinton 2013; 0 = off).
        mixup: mixup Beta parameter (Zhang et al. 2018; 0 = off).
        room_copies: Copies of the training clips heard through a simulated room, other talkers,
            white noise and a telephone band (:mod:`training.room`; 1 is shipped).
        augment_copies: Waveform-augmented copies of the training clips (time stretch, pitch,
            noise; :mod:`training.augment`; measured and not used).
        speaker_norm: Per-speaker log-mel band normalisation (:mod:`training.adaptation`), one
            of ``none``, ``speaker``, ``causal``.
        front_end: The feature recipe's band layout, one of :data:`FRONT_ENDS` (``runtime``, 40
            bands from 50 Hz to ``fmax_hz``, is shipped; ``efficientat``, EfficientAT's own bands
            up to ``fmax_hz`` at a 10 ms hop, is what ``mn04_native`` takes).
        embedding_norm: One of :data:`EMBEDDING_NORMS`: ``voice`` trains with each batch made of
            one-voice chunks and the pooled embedding standardised per chunk, as the runtime's
            embedding adaptation standardises it per voice (:mod:`training.voice_norm`; needs a
            ``batch_size`` that is a multiple of its chunk, 32, and no mixup).

    Raises:
        ValueError: For a field of the wrong type or outside its range, naming the field, its
            value and what it must be.
    """

    arch: str
    epochs: int
    schedule: str
    batch_size: int
    patience: int
    fmax_hz: float
    speech_gate: str
    seed: int
    lr: float | None = None
    optimizer: str | None = None
    warmup: int = 0
    vtlp: float = 0.0
    mixup: float = 0.0
    room_copies: int = 0
    augment_copies: int = 0
    speaker_norm: str = "none"
    front_end: str = "runtime"
    embedding_norm: str = "none"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.type.endswith("| None"):
                continue
            if f.type.startswith("int"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{f.name} = {value!r}: must be an integer")
            elif f.type.startswith("float"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{f.name} = {value!r}: must be a finite number")
                object.__setattr__(self, f.name, float(value))
            elif not isinstance(value, str):
                raise ValueError(f"{f.name} = {value!r}: must be a string")

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be {rule}")

        need(self.arch in SPECS, "arch", "one of " + ", ".join(sorted(SPECS)))
        need(self.epochs >= 1, "epochs", "at least 1")
        need(self.schedule in SCHEDULES, "schedule", " or ".join(map(repr, SCHEDULES)))
        need(self.batch_size >= 1, "batch_size", "at least 1")
        need(self.patience >= 0, "patience", "0 or more epochs")
        need(self.speech_gate in SPEECH_GATES, "speech_gate", " or ".join(map(repr, SPEECH_GATES)))
        need(self.seed >= 0, "seed", "0 or more")
        need(self.lr is None or self.lr > 0, "lr", "above 0")
        need(self.optimizer is None or self.optimizer in OPTIMIZERS, "optimizer", " or ".join(map(repr, OPTIMIZERS)))
        need(self.warmup >= 0, "warmup", "0 or more epochs")
        need(self.room_copies >= 0, "room_copies", "0 or more")
        need(self.augment_copies >= 0, "augment_copies", "0 or more")
        need(self.speaker_norm in SPEAKER_NORMS, "speaker_norm", " or ".join(map(repr, SPEAKER_NORMS)))
        need(self.front_end in FRONT_ENDS, "front_end", " or ".join(map(repr, FRONT_ENDS)))
        need(NEEDS_FRONT_END.get(self.arch, self.front_end) == self.front_end, "front_end",
             f"{NEEDS_FRONT_END.get(self.arch)!r} for arch {self.arch}")
        need(self.embedding_norm in EMBEDDING_NORMS, "embedding_norm", " or ".join(map(repr, EMBEDDING_NORMS)))
        if self.embedding_norm == "voice":
            from .voice_norm import CHUNK

            need(self.batch_size % CHUNK == 0, "batch_size", f"a multiple of {CHUNK} with embedding_norm 'voice'")
            need(self.mixup == 0, "mixup", "0 with embedding_norm 'voice' (mixup blends voices)")
        check_vtlp(self.vtlp)
        check_mixup(self.mixup)
        check_log_mel_options(self.arch, SPECS[self.arch].input_kind, self.vtlp, self.mixup,
                              self.room_copies + self.augment_copies)
        self.feature_config()  # the band edge against the rest of the feature recipe

    def feature_config(self) -> FeatureConfig:
        """The feature recipe of the run: the runtime's :class:`~stream_ser.features.FeatureConfig`
        with this recipe's ``fmax_hz`` and ``speech_gate`` (part of the feature cache key), or with
        the ``efficientat`` front end :func:`training.transfer.efficientat_feature_config` of them.

        Raises:
            ValueError: If ``fmax_hz`` is not above the lowest band edge or is above the Nyquist
                frequency (:class:`~stream_ser.features.FeatureConfig`'s message).
        """
        if self.front_end == "efficientat":
            return efficientat_feature_config(self.fmax_hz, self.speech_gate)
        return dataclasses.replace(FeatureConfig(), fmax_hz=self.fmax_hz, speech_gate=self.speech_gate)

    def resolved(self, spec: ArchSpec | None = None) -> "Recipe":
        """This recipe with ``lr`` and ``optimizer`` taken from the architecture where unset.

        Args:
            spec: The architecture (default: ``SPECS[self.arch]``).
        """
        spec = spec or SPECS[self.arch]
        return dataclasses.replace(self, lr=spec.lr if self.lr is None else self.lr,
                                   optimizer=spec.optimizer if self.optimizer is None else self.optimizer)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON- and TOML-ready dict (unset ``lr``/``optimizer`` left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> "Recipe":
        """Build a recipe from a TOML table or a stored record's ``fields``.

        Args:
            data: One key per field; ``lr``, ``optimizer`` and the augmentation fields may be
                left out.
            source: Where ``data`` comes from, for the error messages.

        Raises:
            ValueError: For an unknown key, a missing one or a bad value, naming ``source``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a table of recipe fields, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                             f"(a recipe has {', '.join(fields)})")
        missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in data]
        if missing:
            raise ValueError(f"{source}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


def available_recipes() -> list[str]:
    """Names of the recipes in :data:`RECIPES_DIR`, sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(ref: str | Path) -> Recipe:
    """The recipe named ``ref`` or stored in the file ``ref``.

    Args:
        ref: A name in :data:`RECIPES_DIR` (``shipped``, ``cosine-4k``, ...), a ``.toml`` recipe
            file, a run JSON of ``training.experiments train`` or an ONNX model exported by
            ``training.train`` (their stored ``recipe``, :func:`recipe_record`).

    Raises:
        ValueError: If there is no such recipe or file, the file is not valid TOML, or it holds
            no recipe or a bad one (:meth:`Recipe.from_dict`).
    """
    path = Path(ref)
    if path.suffix == "" and path.name == str(ref):
        if not (RECIPES_DIR / f"{ref}.toml").is_file():
            raise ValueError(f"no recipe named {ref!r}; one of {', '.join(available_recipes())} or a file path")
        path = RECIPES_DIR / f"{ref}.toml"
    if not path.is_file():
        raise ValueError(f"recipe file {str(ref)!r} not found")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        return Recipe.from_dict(data, str(path))
    if path.suffix == ".json":
        stored = json.loads(path.read_text()).get("recipe")
    elif path.suffix == ".onnx":
        from stream_ser.model import EmotionModel

        stored = (EmotionModel(path).metadata.provenance or {}).get("recipe")
    else:
        raise ValueError(f"{path}: a recipe is read from a .toml file, a run .json or an .onnx model")
    if not isinstance(stored, dict) or "fields" not in stored:
        raise ValueError(f"{path}: holds no stored recipe; rebuild it from the command it records, with the "
                         "recipe of its time in front (training/recipes/)")
    return Recipe.from_dict(stored["fields"], f"{path} (stored recipe)")


#: Each recipe field's flag, argparse options and help text (``--augment`` keeps the harness's older
#: name); :func:`add_recipe_arguments` adds them, the value type being the field's.
_FLAG_TABLE: tuple[tuple[str, str, dict, str], ...] = (
    ("arch", "--arch", {"choices": sorted(SPECS), "metavar": "ARCH"},
     "architecture: a training/architectures.py registry name or mn04_ft[_bn] (training/transfer.py)"),
    ("epochs", "--epochs", {}, "most epochs trained"),
    ("schedule", "--schedule", {"choices": SCHEDULES},
     "learning rate: plateau = halve it when the validation loss stalls for 2 epochs, stop after --patience "
     "epochs without improvement; cosine = decay to 1%% of it at the last of --epochs, every epoch run, the best "
     "validation epoch kept (Loshchilov & Hutter 2017, SGDR, without restarts)"),
    ("lr", "--lr", {}, "initial learning rate"),
    ("optimizer", "--optimizer", {"choices": OPTIMIZERS}, "optimiser"),
    ("batch_size", "--batch-size", {}, "windows per batch"),
    ("patience", "--patience", {}, "early-stopping patience in epochs (plateau schedule only)"),
    ("warmup", "--warmup", {"metavar": "N"},
     "epochs before early stopping starts watching the validation loss (the BatchNorm CNNs' first validation "
     "losses rise while the moving statistics settle)"),
    ("fmax_hz", "--fmax", {"metavar": "HZ"},
     "highest mel band edge in Hz; the exported model carries it, and the runtime computes its features with it"),
    ("speech_gate", "--speech-gate", {"choices": SPEECH_GATES},
     "gate the training windows pass: vad = the level gate and Silero VAD, as the runtime's default --gate; "
     "level = the level gate alone, the recipe of runs before 2026-12-06"),
    ("vtlp", "--vtlp", {"metavar": "W"},
     "vocal tract length perturbation of the training log-mels: each window's frequency axis scaled by a factor "
     "drawn from [1-W, 1+W] (Jaitly & Hinton 2013; 0.1 is the usual range; 0 = off)"),
    ("mixup", "--mixup", {"metavar": "ALPHA"},
     "mixup of the training log-mels within each batch: inputs, one-hot targets and class weights blended by a "
     "factor drawn from Beta(ALPHA, ALPHA) (Zhang et al. 2018; 0.2 is usual; 0 = off)"),
    ("room_copies", "--room-copies", {"metavar": "N"},
     "copies of the training clips heard through a random room, other talkers, white noise and a telephone band "
     "(training/room.py; cached)"),
    ("augment_copies", "--augment", {"metavar": "N"},
     "waveform-augmented copies of the training clips (time stretch, pitch, noise; training/augment.py; cached)"),
    ("speaker_norm", "--speaker-norm", {"choices": SPEAKER_NORMS},
     "per-speaker log-mel band normalisation (training/adaptation.py): training speakers with their own "
     "statistics, test speakers with running ones (causal; training.train writes its prior into the model and the "
     "runtime keeps running statistics per channel) or all of theirs at once (speaker, an upper bound)"),
    ("front_end", "--front-end", {"choices": FRONT_ENDS},
     "band layout of the log-mel: runtime = 40 bands from 50 Hz to --fmax at a 20 ms hop; efficientat = the "
     "pretrained encoder's own mel bands up to --fmax at a 10 ms hop (training/transfer.py; mn04_native needs it)"),
    ("embedding_norm", "--embedding-norm", {"choices": EMBEDDING_NORMS},
     "standardisation of the pooled embedding in training: voice = batches of one-voice chunks of 32 windows, "
     "each chunk's embeddings standardised with their own statistics, as the runtime's embedding adaptation does "
     "per voice (training/voice_norm.py); none = off"),
    ("seed", "--seed", {}, "seed of weights, augmentation and batches"),
)
#: The flag of each recipe field.
FLAGS: dict[str, str] = {field: flag for field, flag, _, _ in _FLAG_TABLE}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe`` and one overriding flag per :class:`Recipe` field to ``parser``.

    Every flag defaults to None, meaning "the recipe's value"; its help names the field it
    overrides and the shipped recipe's value. Both training commands call this, so the same
    arguments build the same recipe (:func:`recipe_from_args`).
    """
    shipped = load_recipe(DEFAULT_RECIPE).to_dict()
    types = {f.name: {"int": int, "float": float}.get(f.type.split(" ")[0], str) for f in dataclasses.fields(Recipe)}
    g = parser.add_argument_group("recipe", "what the run trains: --recipe, each flag below overriding one of its fields")
    g.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME|PATH",
                   help=f"training recipe: a name in training/recipes/ ({', '.join(available_recipes())}), a .toml "
                   "file, or a run .json / .onnx model whose stored recipe to rebuild (default: shipped, the recipe "
                   "of the shipped network)")
    for field, flag, options, text in _FLAG_TABLE:
        shown = shipped.get(field, "the architecture's")
        g.add_argument(flag, dest=field, type=types[field], default=None, **options,
                       help=f"{text} (overrides the recipe's {field}; shipped: {shown})")


def recipe_from_args(args: argparse.Namespace) -> tuple[Recipe, dict[str, Any]]:
    """The recipe of a command line (:func:`add_recipe_arguments`) and its record.

    Returns:
        ``(recipe, record)``: the recipe named by ``--recipe`` with every given flag applied and
        ``lr``/``optimizer`` resolved from the architecture (:meth:`Recipe.resolved`), and
        :func:`recipe_record` of it.

    Raises:
        ValueError: If the recipe cannot be read or an override makes it invalid.
    """
    options = vars(args)
    overrides = {f: options[f] for f in FLAGS if options.get(f) is not None}
    base = load_recipe(options["recipe"])
    try:
        recipe = dataclasses.replace(base, **overrides).resolved()
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0]
        flag = f" ({FLAGS[name]})" if name in overrides else ""
        raise ValueError(f"recipe {options['recipe']}{flag}: {exc}") from None
    return recipe, recipe_record(recipe, str(options["recipe"]), overrides)


def recipe_record(recipe: Recipe, name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a result stores of its recipe: ``{"name", "overrides", "fields"}``.

    ``name`` is the ``--recipe`` given, ``overrides`` the fields set by flags (field: value),
    ``fields`` every field as trained (:meth:`Recipe.to_dict`); ``--recipe`` reads ``fields``
    back from a run JSON or a model (:func:`load_recipe`).
    """
    return {"name": name, "overrides": dict(overrides or {}), "fields": recipe.to_dict()}
