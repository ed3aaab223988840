"""Model selection on the validation speakers (``python -m training.select``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_ser.metadata import METADATA_KEY
from training.select import Candidate, CandidateError, check_provenance, main, rank
from training.split import load_split

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "stream-ser.onnx"


def _cand(arch: str, seed: int, uar: float, eligible: bool = True) -> Candidate:
    return Candidate(f"{arch}-s{seed}.onnx", arch, seed, uar, uar, uar, uar, 1.0, eligible)


def test_rank_picks_the_architecture_by_its_mean_then_its_best_seed() -> None:
    # a: one lucky seed (0.55) but a mean of 0.45; b: steadier, mean 0.48
    cands = [_cand("a", 0, 0.55), _cand("a", 1, 0.35), _cand("b", 0, 0.47), _cand("b", 1, 0.49), _cand("b", 2, 0.48)]
    r = rank(cands)
    assert [x["architecture"] for x in r["architectures"]] == ["b", "a"]
    assert r["chosen_architecture"] == "b" and r["chosen"] == "b-s1.onnx"
    b = r["architectures"][0]
    assert b["seeds"] == 3 and b["uar_mean"] == pytest.approx(0.48) and b["uar_sd"] == pytest.approx(0.01)
    assert (b["uar_min"], b["uar_max"]) == (0.47, 0.49)
    assert rank([_cand("c", 0, 0.3)])["architectures"][0]["uar_sd"] == 0.0
    with pytest.raises(ValueError):
        rank([])


def test_a_better_architecture_over_the_cost_budget_is_listed_not_chosen() -> None:
    cands = [_cand("big", 0, 0.60, eligible=False), _cand("small", 0, 0.50), _cand("small", 1, 0.52)]
    r = rank(cands)
    assert r["architectures"][0]["architecture"] == "big" and not r["architectures"][0]["eligible"]
    assert r["chosen_architecture"] == "small" and r["chosen"] == "small-s1.onnx"
    with pytest.raises(ValueError, match="budget"):
        rank([_cand("big", 0, 0.60, eligible=False)])


def test_models_that_saw_the_validation_speakers_are_refused() -> None:
    split = load_split()
    good = {"architecture": "x", "train_speakers": sorted(split.train), "validation_speakers": sorted(split.validation)}
    check_provenance(good, split, "m.onnx")
    leaked = {**good, "train_speakers": sorted(split.train | {"ravdess:17"})}
    with pytest.raises(CandidateError, match="ravdess:17"):
        check_provenance(leaked, split, "m.onnx")
    with pytest.raises(CandidateError, match="validated on"):
        check_provenance({**good, "validation_speakers": ["ravdess:01"]}, split, "m.onnx")
    with pytest.raises(CandidateError, match="no architecture"):
        check_provenance({}, split, "m.onnx")


def _with_provenance(src: Path, dst: Path, **changes) -> Path:
    import onnx

    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            meta["provenance"].update(changes)
            prop.value = json.dumps(meta)
    onnx.save(proto, str(dst))
    return dst


def test_select_on_real_validation_clips(data_dir, tmp_path, capsys) -> None:
    """The shipped model and a renamed copy of it score the same on actors 17-20, the tie is
    broken by name, the table is written; a copy trained on actor 17 is refused (exit 2)."""
    copy = _with_provenance(SHIPPED, tmp_path / "copy.onnx", architecture="zz_copy", seed=7)
    out = tmp_path / "selection.json"
    main(["--data", str(data_dir), "--models", str(SHIPPED), str(copy), "--out", str(out)])
    rec = json.loads(out.read_text())
    assert rec["partition"] == "validation" and rec["clips"] == 240
    assert rec["validation_speakers"] == ["ravdess:17", "ravdess:18", "ravdess:19", "ravdess:20"]
    a, b = rec["candidates"]
    assert a["uar"] == b["uar"] and 1 / 7 < a["uar"] <= 1 and b["seed"] == 7
    assert rec["chosen_architecture"] == a["architecture"] != "zz_copy"
    assert 0 < a["ms_per_window"] < 100 and a["eligible"] and rec["max_ms"] is None
    assert "chosen:" in capsys.readouterr().out
    # a budget below any real model's cost leaves nothing to choose: a usage error
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data_dir), "--models", str(SHIPPED), "--max-ms", "0.0001"])
    assert e.value.code == 2 and "within the cost budget" in capsys.readouterr().err
    leaked = _with_provenance(SHIPPED, tmp_path / "leaked.onnx",
                              train_speakers=sorted(load_split().train | {"ravdess:17"}))
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data_dir), "--models", str(leaked)])
    assert e.value.code == 2
    assert "trained on validation speakers" in capsys.readouterr().err
