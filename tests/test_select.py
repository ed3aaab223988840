"""Model selection on the validation speakers (``python -m training.select``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_ser.metadata import METADATA_KEY
from training.select import (Candidate, CandidateError, check_provenance, main, merge_previous, previous_candidates,
                             rank)
from training.split import load_split

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "stream-ser.onnx"


def _cand(arch: str, seed: int, uar: float, eligible: bool = True, schedule: str = "plateau") -> Candidate:
    return Candidate(f"{arch}-{schedule}-s{seed}.onnx", arch, seed, uar, uar, uar, uar, 1.0, eligible, schedule)


def test_rank_picks_the_architecture_by_its_mean_then_its_best_seed() -> None:
    # a: one lucky seed (0.55) but a mean of 0.45; b: steadier, mean 0.48
    cands = [_cand("a", 0, 0.55), _cand("a", 1, 0.35), _cand("b", 0, 0.47), _cand("b", 1, 0.49), _cand("b", 2, 0.48)]
    r = rank(cands)
    assert [x["architecture"] for x in r["architectures"]] == ["b", "a"]
    assert r["chosen_architecture"] == "b" and r["chosen"] == "b-plateau-s1.onnx"
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
    assert r["chosen_architecture"] == "small" and r["chosen"] == "small-plateau-s1.onnx"
    with pytest.raises(ValueError, match="budget"):
        rank([_cand("big", 0, 0.60, eligible=False)])


def test_one_architecture_with_two_schedules_is_two_recipes() -> None:
    # the cosine seeds are better on average, though the best single seed is a plateau one
    cands = [_cand("a", 0, 0.50), _cand("a", 1, 0.58), _cand("a", 2, 0.49),
             _cand("a", 0, 0.55, schedule="cosine"), _cand("a", 1, 0.56, schedule="cosine")]
    r = rank(cands)
    assert [(x["recipe"], x["seeds"]) for x in r["architectures"]] == [("a+cosine", 2), ("a", 3)]
    assert r["architectures"][0]["schedule"] == "cosine" and r["architectures"][0]["architecture"] == "a"
    assert r["chosen_recipe"] == "a+cosine" and r["chosen_architecture"] == "a" and r["chosen"] == "a-cosine-s1.onnx"


def test_a_lower_mel_fmax_is_its_own_recipe_and_the_default_edge_is_the_old_recipe() -> None:
    """Models trained with ``--fmax 4000`` rank apart; a model whose metadata says 8000 Hz (the runtime
    recipe) is the same recipe as an earlier record that did not keep the edge, so it replaces it."""
    import dataclasses

    old = _cand("a", 0, 0.50, schedule="cosine")  # fmax_hz None: recorded before the edge was kept
    rescored = dataclasses.replace(old, uar=0.51, fmax_hz=8000.0)
    narrow = [dataclasses.replace(_cand("a", s, u, schedule="cosine"), path=f"a-4k-s{s}.onnx", fmax_hz=4000.0)
              for s, u in ((0, 0.55), (1, 0.57))]
    merged = merge_previous([rescored, *narrow], [old])
    assert len(merged) == 3 and old not in merged
    r = rank(merged)
    assert [(x["recipe"], x["seeds"], x["fmax_hz"]) for x in r["architectures"]] == [
        ("a+cosine+fmax4000", 2, 4000.0), ("a+cosine", 1, 8000.0)]
    assert r["chosen"] == "a-4k-s1.onnx"


def test_vtlp_is_its_own_recipe_and_records_without_it_had_none() -> None:
    """Models trained with ``training.train --vtlp 0.1`` rank apart from the same recipe without it;
    an earlier record with no ``vtlp`` field (written before the option) counts as no VTLP."""
    import dataclasses

    split = load_split()
    plain = dataclasses.replace(_cand("a", 0, 0.54, schedule="cosine"), fmax_hz=4000.0)
    record = {"created": "2026-11-28T12:00:00Z", "validation_speakers": sorted(split.validation), "clips": 240,
              "candidates": [{**plain.__dict__, "path": "gone/a-s1.onnx", "seed": 1, "uar": 0.52}]}
    del record["candidates"][0]["vtlp"]
    earlier = previous_candidates(record, split, 240)
    assert earlier[0].vtlp == 0.0 and earlier[0].recipe == "a+cosine+fmax4000"
    warped = [dataclasses.replace(plain, path=f"a-vtlp-s{s}.onnx", seed=s, uar=u, vtlp=0.1)
              for s, u in ((0, 0.56), (1, 0.55))]
    r = rank(merge_previous([plain, *warped], earlier))
    assert [(x["recipe"], x["seeds"], x["vtlp"]) for x in r["architectures"]] == [
        ("a+cosine+fmax4000+vtlp0.1", 2, 0.1), ("a+cosine+fmax4000", 2, 0.0)]
    assert r["chosen"] == "a-vtlp-s0.onnx"


def test_earlier_records_join_the_ranking_and_rescored_models_replace_them() -> None:
    split = load_split()
    record = {"created": "2026-11-22T07:53:55Z", "validation_speakers": sorted(split.validation), "clips": 240,
              "candidates": [  # written before schedules were recorded: plateau
                  {"path": "gone/a-s0.onnx", "architecture": "a", "seed": 0, "uar": 0.50, "wa": 0.5, "macro_f1": 0.5,
                   "window_uar": 0.5, "ms_per_window": 0.5, "eligible": True},
                  {"path": "gone/a-s1.onnx", "architecture": "a", "seed": 1, "uar": 0.58, "wa": 0.5, "macro_f1": 0.5,
                   "window_uar": 0.5, "ms_per_window": 1.5, "eligible": True}]}
    earlier = previous_candidates(record, split, 240, max_ms=1.0)
    assert [(c.recipe, c.seed, c.scored, c.eligible) for c in earlier] == [
        ("a", 0, "2026-11-22T07:53:55Z", True), ("a", 1, "2026-11-22T07:53:55Z", False)]
    fresh = [_cand("a", 1, 0.57), _cand("a", 0, 0.6, schedule="cosine")]
    merged = merge_previous(fresh, earlier)
    assert [(c.recipe, c.seed, c.scored is None) for c in merged] == [("a", 1, True), ("a+cosine", 0, True),
                                                                      ("a", 0, False)]
    with pytest.raises(CandidateError, match="120 clips"):
        previous_candidates(record, split, 120)
    with pytest.raises(CandidateError, match="ravdess:01"):
        previous_candidates({**record, "validation_speakers": ["ravdess:01"]}, split, 240)


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
    # a better recipe recorded by an earlier selection (its file gone) wins the ranking, but
    # cannot be shipped without its file
    old = {**rec, "created": "2026-11-22T00:00:00Z",
           "candidates": [{**a, "path": "gone/other.onnx", "architecture": "zz_better", "seed": 0, "uar": 0.99}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data_dir), "--models", str(SHIPPED), "--previous", str(tmp_path / "old.json")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "gone/other.onnx" in err and "no longer on disk" in err
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
