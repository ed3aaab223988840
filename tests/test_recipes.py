"""Training recipes (training/recipe.py, training/recipes/*.toml) against the models and results they describe."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from stream_ser.model import EmotionModel
from training.recipe import RECIPES_DIR, Recipe, available_recipes, load_recipe, recipe_record

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FP32 = ROOT / "models" / "stream-ser-fp32.onnx"
ROOM_CANDIDATE = ROOT / "models" / "candidates" / "cnn_gap_small-room1-s0.onnx"
RUNS = sorted((ROOT / "training" / "results" / "runs").glob("*.json"))


def cli_recipe(which: str, argv: list[str], monkeypatch) -> tuple[Recipe, dict]:
    """The recipe and record that ``training.train`` (``which="train"``) or ``training.experiments
    train`` builds from ``argv``, caught where the command would start training."""
    from training import experiments, train

    got = {}
    if which == "train":
        monkeypatch.setattr(train, "train", lambda recipe, *a, record, **kw: got.update(recipe=recipe, record=record))
        train.main(argv)
    else:
        monkeypatch.setattr(experiments, "run_train", lambda args, recipe, record: got.update(recipe=recipe, record=record))
        experiments.main(["train", *argv])
    return got["recipe"], got["record"]


def recorded_argv(command: str) -> list[str]:
    """The arguments of a recorded ``python -m training.train ...`` or ``... training.experiments train ...``."""
    words = shlex.split(command)
    return words[4:] if words[3] == "train" else words[3:]


def test_every_recipe_file_loads_and_the_dataclass_round_trips() -> None:
    assert {"shipped", "cosine-4k", "plateau-8k", "plateau-8k-p5"} <= set(available_recipes())
    for name in available_recipes():
        recipe = load_recipe(name)
        assert load_recipe(RECIPES_DIR / f"{name}.toml") == recipe
        assert Recipe.from_dict(recipe.to_dict()) == recipe
        assert recipe.resolved().lr is not None and recipe.resolved().optimizer is not None


def test_shipped_recipe_is_what_the_shipped_model_records(monkeypatch) -> None:
    """shipped.toml against models/stream-ser-fp32.onnx: its provenance (architecture, schedule,
    epochs, seed, room copies), its whole feature recipe (band edge, speech gate), and its recorded
    command, which today, with the default recipe, builds exactly shipped.toml."""
    model = EmotionModel(SHIPPED_FP32)
    prov = model.metadata.provenance
    shipped = load_recipe("shipped")
    assert shipped.arch == prov["architecture"] and shipped.schedule == prov["schedule"]
    assert shipped.seed == prov["seed"] and shipped.room_copies == prov["room_copies"]
    assert shipped.epochs == prov["epochs_run"]  # the cosine schedule runs every epoch
    assert shipped.vtlp == float(prov.get("vtlp", 0.0))
    assert shipped.feature_config() == model.feature_config  # fmax_hz 4000, speech_gate vad, the rest
    recipe, record = cli_recipe("train", recorded_argv(prov["command"]), monkeypatch)
    assert recipe == shipped.resolved() and record["name"] == "shipped"


def test_room_candidate_is_rebuilt_by_the_cosine_4k_recipe(monkeypatch) -> None:
    """The kept candidate (level-gated, trained before recipes) is what ``--recipe cosine-4k`` plus
    its recorded flags builds: same architecture, schedule, seed, room copies, feature recipe."""
    model = EmotionModel(ROOM_CANDIDATE)
    prov = model.metadata.provenance
    recipe, _ = cli_recipe("train", ["--recipe", "cosine-4k", *recorded_argv(prov["command"])], monkeypatch)
    assert (recipe.arch, recipe.schedule, recipe.seed, recipe.room_copies) == (
        prov["architecture"], prov["schedule"], prov["seed"], prov["room_copies"])
    assert recipe.feature_config() == model.feature_config
    # with the default recipe the same command trains another recipe (the VAD gate): it must name its recipe
    default, _ = cli_recipe("train", recorded_argv(prov["command"]), monkeypatch)
    assert default.feature_config() != model.feature_config


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_recorded_harness_runs_are_rebuilt_by_their_recipe(path: Path, monkeypatch) -> None:
    """Every committed harness run: its recorded command builds the recipe the run records (schedule,
    band edge, gate, seed, warm-up, speaker normalisation, VTLP, mixup, room copies, epochs, and the
    patience its plateau runs stopped with, epochs run minus the best epoch), with ``--recipe
    plateau-8k-p5`` (the harness's old defaults) for a run made before recipes existed, and with
    the recipe it names for a run that stores one, which it then equals."""
    from training.experiments import run_file_name

    run = json.loads(path.read_text())
    base = run["recipe"]["name"] if "recipe" in run else "plateau-8k-p5"
    recipe, record = cli_recipe("experiments", ["--recipe", base, *recorded_argv(run["command"])], monkeypatch)
    if "recipe" in run:
        assert recipe.resolved() == load_recipe(path).resolved()
        # a field added after the run was stored reads as its default
        assert {k: record[k] for k in ("name", "overrides")} == {k: run["recipe"][k] for k in ("name", "overrides")}
        assert Recipe.from_dict(record["fields"]) == Recipe.from_dict(run["recipe"]["fields"])
    assert run_file_name(run, recipe) == path.name
    assert record["name"] == base and recipe.arch == run["arch"] and recipe.seed == run["seed"]
    assert recipe.schedule == run.get("schedule", "plateau")
    assert recipe.fmax_hz == run.get("fmax_hz", 8000.0) and recipe.speech_gate == run.get("speech_gate", "level")
    assert recipe.warmup == run.get("warmup_epochs", 0) and recipe.speaker_norm == run.get("speaker_norm", "none")
    assert (recipe.vtlp, recipe.mixup, recipe.room_copies) == (run.get("vtlp", 0.0), run.get("mixup", 0.0),
                                                               run.get("room_copies", 0))
    assert recipe.augment_copies == (1 if "waveform-augmented" in run.get("augmentation", "") else 0)
    if run.get("validation_windows") and run.get("best_epoch"):  # a Keras run watched by validation speakers
        assert recipe.epochs == run.get("epochs_cap", recipe.epochs) >= run["epochs_run"]
    if recipe.schedule == "plateau" and run.get("best_epoch") and run["epochs_run"] < recipe.epochs:
        assert run["epochs_run"] - run["best_epoch"] == recipe.patience


def test_a_flag_overrides_its_field_and_the_record_says_so(monkeypatch) -> None:
    recipe, record = cli_recipe("train", ["--data", "d", "--seed", "0", "--fmax", "3000"], monkeypatch)
    assert recipe == dataclasses.replace(load_recipe("shipped"), seed=0, fmax_hz=3000.0)
    assert record == {"name": "shipped", "overrides": {"seed": 0, "fmax_hz": 3000.0}, "fields": recipe.to_dict()}
    assert record["fields"]["seed"] == 0 and record["fields"]["room_copies"] == 1  # the rest from the recipe
    # the architecture's rate and optimiser fill what a recipe leaves unset, and the record has them
    recipe, record = cli_recipe("experiments", ["--data", "d", "--recipe", "cosine-4k", "--arch", "conv1d_mfcc13"],
                                monkeypatch)
    assert (recipe.lr, recipe.optimizer) == (1e-4, "rmsprop") == (record["fields"]["lr"], record["fields"]["optimizer"])


def test_both_commands_build_the_same_recipe_from_the_same_arguments(monkeypatch) -> None:
    for argv in (["--data", "d"],
                 ["--data", "d", "--recipe", "plateau-8k", "--seed", "3", "--vtlp", "0.1", "--warmup", "2"],
                 ["--data", "d", "--recipe", "cosine-4k", "--arch", "mn04_ft", "--lr", "3e-4", "--epochs", "12",
                  "--speech-gate", "vad", "--mixup", "0.2", "--batch-size", "32", "--augment", "1"]):
        assert cli_recipe("train", argv, monkeypatch) == cli_recipe("experiments", argv, monkeypatch)


def test_a_stored_recipe_rebuilds_the_run(tmp_path, monkeypatch) -> None:
    """``--recipe RUN.json`` reads back the recipe a run stored; a result made before recipes were
    stored (the shipped model) says so."""
    recipe, record = cli_recipe("experiments", ["--data", "d", "--recipe", "plateau-8k", "--seed", "4"], monkeypatch)
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"arch": recipe.arch, "recipe": record}))
    again, again_record = cli_recipe("experiments", ["--data", "d", "--recipe", str(run)], monkeypatch)
    assert again == recipe and again_record["overrides"] == {}
    with pytest.raises(ValueError, match="holds no stored recipe"):
        load_recipe(SHIPPED_FP32)
    old_run = tmp_path / "old.json"
    old_run.write_text(RUNS[0].read_text())
    with pytest.raises(ValueError, match="holds no stored recipe"):
        load_recipe(old_run)


@pytest.mark.parametrize("text, error", [
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\nlearning_rate = 0.001\n', "unknown key learning_rate"),
    ('arch = "cnn_gap_small"\nepochs = "30"\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\n', "epochs = '30': must be an integer"),
    ('arch = "cnn_gap_small"\nepochs = 30.0\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\n', "epochs = 30.0: must be an integer"),
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = "step"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\n', "schedule = 'step': must be 'plateau' or 'cosine'"),
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 9000.0\n'
     'speech_gate = "vad"\nseed = 1\n', "fmax_hz = 9000.0: is above the Nyquist frequency (8000 Hz)"),
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\nvtlp = 0.6\n', "the VTLP warp must be in [0, 0.5), got 0.6"),
    ('arch = "resnet50"\nepochs = 30\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\n', "arch = 'resnet50': must be one of"),
    ('arch = "mlp_time_avg"\nepochs = 30\nschedule = "cosine"\nbatch_size = 64\npatience = 6\nfmax_hz = 4000.0\n'
     'speech_gate = "vad"\nseed = 1\nroom_copies = 1\n', "mlp_time_avg does not take them"),
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = "cosine"\n', "missing keys batch_size, patience, fmax_hz, "
     "speech_gate, seed"),
    ('arch = "cnn_gap_small"\nepochs = 30\nschedule = cosine\n', "not valid TOML"),
], ids=["unknown-key", "string-for-int", "float-for-int", "bad-schedule", "fmax-above-nyquist", "vtlp-range",
        "unknown-arch", "room-copies-of-frames", "missing-keys", "bad-toml"])
def test_a_bad_recipe_file_is_a_clear_error(tmp_path, capsys, text: str, error: str) -> None:
    from training import train

    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        load_recipe(path)
    assert str(path) in str(exc.value) and error in str(exc.value)
    with pytest.raises(SystemExit) as stop:
        train.main(["--data", "d", "--recipe", str(path)])
    assert stop.value.code == 2 and error in capsys.readouterr().err


def test_unknown_recipe_names_and_files() -> None:
    with pytest.raises(ValueError, match="no recipe named 'shiped'; one of cosine-4k, mn04-native, plateau-8k, plateau-8k-p5"):
        load_recipe("shiped")
    with pytest.raises(ValueError, match="not found"):
        load_recipe("nowhere/mine.toml")


def test_training_train_refuses_what_it_cannot_export(capsys) -> None:
    from training import train

    for argv, error in ((["--arch", "mlp_time_avg", "--room-copies", "0"], "train it with python -m training.experiments"),
                        (["--speaker-norm", "speaker"], "training.train exports none or causal")):
        with pytest.raises(SystemExit):
            train.main(["--data", "d", *argv])
        assert error in capsys.readouterr().err


def test_record_of_a_recipe_made_in_code() -> None:
    recipe = dataclasses.replace(load_recipe("cosine-4k"), seed=2)
    record = recipe_record(recipe, "api")
    assert Recipe.from_dict(record["fields"]) == recipe and "lr" not in record["fields"]  # unset: the architecture's


def test_vad_gated_and_room_runs_are_kept_apart_from_the_older_runs(tmp_path) -> None:
    """A run of the shipped recipe (VAD-gated windows, one room copy) gets its own file name and its
    own report row, so it neither overwrites nor joins the level-gated runs of the same flags."""
    from training.evaluate import score, scores_to_dict
    from training.experiments import run_file_name
    from training.folds import PROTOCOLS
    from training.report import write_report

    labels = PROTOCOLS["ravdess8"].labels
    sc = scores_to_dict(score(list(labels), list(labels), labels))
    old = {"arch": "cnn_gap_small", "protocol": "ravdess8", "fold": 1, "seed": 0, "speaker_norm": "none",
           "epochs_run": 30, "best_epoch": 30, "wall_s": 1.0, "clip": {"ravdess": sc}, "window": {"ravdess": sc},
           "schedule": "cosine", "fmax_hz": 4000.0}
    new = {**old, "speech_gate": "vad", "room_copies": 1}
    shipped0 = dataclasses.replace(load_recipe("shipped"), seed=0)
    names = {run_file_name(old, load_recipe("cosine-4k")), run_file_name(new, shipped0)}
    assert names == {"cnn_gap_small__ravdess8__f1__s0__cosine__fmax4000.json",
                     "cnn_gap_small__ravdess8__f1__s0__cosine__fmax4000__room1__vad.json"}
    (tmp_path / "runs").mkdir()
    for name, run in zip(sorted(names), (old, new)):
        (tmp_path / "runs" / name).write_text(json.dumps(run))
    text = write_report(tmp_path / "RESULTS.md", tmp_path, "python -m training.experiments report")
    assert "| `cnn_gap_small`, cosine LR, mel fmax 4000 Hz | none | ravdess8 | 0 | ravdess | 1 of 6 |" in text
    assert ("| `cnn_gap_small`, cosine LR, mel fmax 4000 Hz, 1 room copy, VAD-gated windows | none | ravdess8 | 0 | "
            "ravdess | 1 of 6 |") in text
