"""The leaderboard: requests and calibration kept apart, the floor from independent retrains, Holm, the JSON
schema, the quick mode end to end, resumption, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import leaderboard  # noqa: E402

from miunlearn.config import load_config  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402

QUICK = ["--quick", "--settings", "digits_mlp", "--methods", "remi,finetune,ssd", "--seeds", "2"]
TIMING = ("seconds", "retrain_seconds", "speedup", "work_ratio", "peak_mib")
"""Row keys a rerun may change: what it measured of its own time."""


@pytest.mark.parametrize("scenario", ["random10", "small1", "class"])
def test_calibration_requests_never_overlap_evaluated_ones(scenario: str) -> None:
    labels = np.arange(2000) % 10
    kind = leaderboard.SCENARIOS.get(scenario)
    calibration = leaderboard.request_positions(kind, labels, 10, None)
    for seed in range(5):
        evaluated = leaderboard.request_positions(kind, labels, 10, seed)
        assert np.intersect1d(calibration, evaluated).size == 0
        assert abs(len(evaluated) - len(calibration)) <= len(calibration) * 0.05  # same kind and size
    if kind.fraction is not None:
        assert len(calibration) == round(kind.fraction * 2000)
        assert not np.array_equal(leaderboard.request_positions(kind, labels, 10, 0),
                                  leaderboard.request_positions(kind, labels, 10, 1))  # seeds draw other requests


@pytest.mark.parametrize("scenario", ["random10", "small1", "class"])
def test_several_calibration_requests_overlap_neither_each_other_nor_an_evaluated_one(scenario: str) -> None:
    labels = np.arange(2000) % 10
    kind = leaderboard.SCENARIOS.get(scenario)
    calibration = [leaderboard.request_positions(kind, labels, 10, None, 3, k) for k in range(3)]
    # the first is the one-request protocol's, so its tuning journals stay valid
    assert np.array_equal(calibration[0], leaderboard.request_positions(kind, labels, 10, None))
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert np.intersect1d(calibration[i], calibration[j]).size == 0
    for seed in range(8):
        evaluated = leaderboard.request_positions(kind, labels, 10, seed, 3)
        assert all(np.intersect1d(c, evaluated).size == 0 for c in calibration)
        # with one calibration request the evaluated requests are the ones the leaderboard always drew
        assert np.array_equal(leaderboard.request_positions(kind, labels, 10, seed, 1),
                              leaderboard.request_positions(kind, labels, 10, seed))
    with pytest.raises(MiunlearnError, match="does not exist"):
        leaderboard.request_positions(kind, labels, 10, None, 3, 3)
    with pytest.raises(MiunlearnError, match="leave"):
        leaderboard.request_positions(kind, labels, 10, 0, 10 if kind.fraction is None else 200)


def test_a_cell_folder_refuses_models_made_for_another_request(tmp_path: Path) -> None:
    def request(forget: list[int]) -> leaderboard.Request:
        return leaderboard.Request(np.asarray(forget), None, None, np.asarray(forget))

    leaderboard.check_request(tmp_path / "seed-0", request([3, 5, 8]))
    leaderboard.check_request(tmp_path / "seed-0", request([3, 5, 8]))  # the same request: reused
    with pytest.raises(MiunlearnError, match="another request"):
        leaderboard.check_request(tmp_path / "seed-0", request([3, 5, 9]))


def test_the_protocol_names_the_calibration_requests_only_when_there_are_several() -> None:
    # as before, so a run merges with older ones
    assert "calibration_requests" not in leaderboard.protocol(leaderboard.parse_args([]))
    assert leaderboard.protocol(leaderboard.parse_args(["--calibration-requests", "3"]))["calibration_requests"] == 3
    assert leaderboard.main(["--calibration-requests", "0"]) == 2


def test_a_run_refuses_an_out_folder_tuned_on_another_number_of_calibration_requests(quick_run: dict) -> None:
    opts = leaderboard.parse_args([*QUICK, "--out", str(quick_run["out"]), "--calibration-requests", "2"])
    with pytest.raises(MiunlearnError, match="1 calibration request"):
        leaderboard.check_protocol(opts)
    leaderboard.check_protocol(leaderboard.parse_args([*QUICK, "--out", str(quick_run["out"])]))


def test_a_work_limited_run_keeps_every_method_within_it_and_apart_from_unlimited_rows(
        quick_run: dict, tmp_path: Path) -> None:
    """``--max-cost``: every method, in tuning, rows and U-LiRA alike, is stopped at that fraction of a retrain's
    work; retrains are not. Its rows, presets and cached models never mix with an unlimited run's."""
    import hashlib

    cell = next((quick_run["cache"] / "leaderboard").glob("digits_mlp-*")) / "random10" / "seed-0"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cell.glob("*.safetensors")}
    out = tmp_path / "capped"
    limits: list[tuple[str, float | None]] = []
    real_unlearn, real_tune = leaderboard.unlearn, leaderboard.tune

    def recording_unlearn(model, forget, retain, method, *args, **kwargs):
        limits.append((method, kwargs.get("max_cost")))
        return real_unlearn(model, forget, retain, method, *args, **kwargs)

    def recording_tune(method, tasks, *args, **kwargs):
        limits.extend((method, task.max_cost) for task in tasks)
        return real_tune(method, tasks, *args, **kwargs)

    leaderboard.unlearn, leaderboard.tune = recording_unlearn, recording_tune
    try:
        assert leaderboard.main([*QUICK, "--scenarios", "random10", "--seeds", "1", "--max-cost", "0.05",
                                 "--out", str(out), "--cache", str(quick_run["cache"])]) == 0
    finally:
        leaderboard.unlearn, leaderboard.tune = real_unlearn, real_tune
    assert {m for m, _ in limits} >= {"remi", "finetune", "ssd", "retrain"}
    assert all((limit is None) == (m == "retrain") and limit in (None, 0.05) for m, limit in limits)
    rows = [r for r in json.loads((out / "leaderboard.json").read_text()) if r["method"] != "original"]
    assert {r["method"] for r in rows} == {"remi", "finetune", "ssd"}
    assert all(r["work_ratio"] >= 1 / 0.05 for r in rows)
    assert all(r["ulira_auc"] is not None for r in rows)
    assert json.loads((out / "leaderboard_meta.json").read_text())["protocol"]["max_cost"] == 0.05
    tuning = yaml.safe_load((out / "presets" / "digits_mlp-random10.yaml").read_text())["tuning"]
    assert tuning["max_cost"] == 0.05 and tuning["command"].endswith("--max-cost 0.05")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cell.glob("*.safetensors")}
    assert {k: after[k] for k in before} == before  # the unlimited run's models are untouched
    assert {"remi-max-cost0.05.safetensors", "ssd-max-cost0.05.safetensors"} <= set(after)
    with pytest.raises(MiunlearnError, match="max_cost 0.05, this run asks for None"):
        leaderboard.check_protocol(leaderboard.parse_args([*QUICK, "--out", str(out)]))
    with pytest.raises(MiunlearnError, match="max_cost None, this run asks for 0.05"):
        leaderboard.check_protocol(leaderboard.parse_args([*QUICK, "--out", str(quick_run["out"]), "--max-cost",
                                                           "0.05"]))
    out_default = leaderboard.HERE / "results" / "max-cost-0.05"
    assert leaderboard.parse_args(["--max-cost", "0.05"]).out == out_default
    assert leaderboard.parse_args(["--max-cost", "0.05"]).presets == out_default / "presets"
    assert leaderboard.main(["--max-cost", "0"]) == 2


def test_holm_rejects_step_down_and_stops_at_the_first_failure() -> None:
    assert leaderboard.holm({"a": 0.001, "b": 0.02, "c": 0.04}) == {"a": True, "b": True, "c": True}
    assert leaderboard.holm({"a": 0.001, "b": 0.03, "c": 0.04}) == {"a": True, "b": False, "c": False}
    assert leaderboard.holm({"a": 0.2, "b": 0.01}) == {"b": True, "a": False}


def test_vectorised_auc_and_tpr_match_the_definitions() -> None:
    rng = np.random.default_rng(0)
    members, non = rng.normal(0.5, 1, (3, 50)), rng.normal(0, 1, (3, 400))
    for i in range(3):
        expected = roc_auc_score(np.r_[np.ones(50), np.zeros(400)], np.r_[members[i], non[i]])
        assert leaderboard.auc_many(members, non)[i] == pytest.approx(expected)
        threshold = np.sort(non[i])[-4]  # at most 1% of 400 non-members above it
        assert leaderboard.tpr_many(members, non)[i] == pytest.approx((members[i] > threshold).mean())


def test_a_model_equal_to_the_retrain_is_not_told_apart_and_a_leaking_one_is() -> None:
    rng = np.random.default_rng(1)
    retrained = {a: (rng.normal(0, 1, 200), rng.normal(0, 1, 400)) for a in ("x", "y")}
    same = leaderboard.verdict(retrained, retrained, seed=0)
    assert not same["distinguishable"] and len(same["pvalues"]) == 4
    leaking = {a: (m + 1.5, n) for a, (m, n) in retrained.items()}
    assert leaderboard.verdict(leaking, retrained, seed=0)["distinguishable"]


def _audited(gap_shift: float, s_shift: float, auc: float) -> leaderboard.Audited:
    metrics = {"forget_acc": 0.9 + gap_shift, "retain_acc": 0.95, "test_acc": 0.8, "mia_efficacy": 20.0}
    strong = {a: {"auc": auc, "tpr_1pct": 0.01} for a in leaderboard.STRONG_ATTACKS}
    return leaderboard.Audited(metrics, strong, {}, np.full(5, s_shift), np.zeros(7))


def test_the_floor_is_the_spread_between_independent_retrains() -> None:
    a, b = _audited(0.0, 0.0, 0.60), _audited(0.04, 1.0, 0.64)
    floor = leaderboard.floor_of([a, b])
    assert floor["avg_gap"] == pytest.approx(100 * 0.04 / 4)  # forget accuracy differs by 4 points of 4 metrics
    assert floor["strong_auc"] == pytest.approx(0.04)
    assert floor["delta_s_forget"] == pytest.approx(1.0) and floor["delta_s_audit"] == 0.0
    assert leaderboard.floor_of([a, _audited(0.0, 0.0, 0.60)])["avg_gap"] == 0.0  # identical retrains: no floor


def test_unknown_names_and_missing_data_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert leaderboard.main(["--settings", "location_mpl"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did you mean 'location_mlp'" in err and "fashion_mnist_cnn" in err
    assert leaderboard.main(["--methods", "remi,nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown unlearning method 'nope'" in err and "finetune" in err
    empty = tmp_path / "datasets"
    empty.mkdir()
    assert leaderboard.main(["--settings", "location_mlp", "--data-dir", str(empty), "--out", str(tmp_path / "o"),
                             "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: setting location_mlp:") and "\n" not in err and "shared/datasets/location" in err
    assert not (tmp_path / "o" / "leaderboard.json").exists()  # nothing trained, nothing written


@contextmanager
def unlearn_calls() -> Iterator[list[str]]:
    """The methods the leaderboard asks :func:`miunlearn.unlearn` for while inside, in order."""
    calls: list[str] = []
    real_unlearn = leaderboard.unlearn

    def counting_unlearn(model, forget, retain, method, *args, **kwargs):
        calls.append(method)
        return real_unlearn(model, forget, retain, method, *args, **kwargs)

    leaderboard.unlearn = counting_unlearn
    try:
        yield calls
    finally:
        leaderboard.unlearn = real_unlearn


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The quick mode on the embedded digits data, with the tuning calls recorded."""
    tmp = tmp_path_factory.mktemp("leaderboard")
    out, cache = tmp / "out", tmp / "cache"
    seen: list[dict] = []
    real_tune = leaderboard.tune

    def recording_tune(method, tasks, trials, storage, key, **kwargs):
        seen.append({"method": method, "tasks": tasks, "key": key, "trials": trials})
        return real_tune(method, tasks, trials, storage, key, **kwargs)

    leaderboard.tune = recording_tune
    try:
        assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 0
    finally:
        leaderboard.tune = real_tune
    return {"out": out, "cache": cache, "tuned": seen}


def test_quick_mode_writes_one_row_of_exactly_the_issue_keys_per_cell_and_method(quick_run: dict) -> None:
    rows = json.loads((quick_run["out"] / "leaderboard.json").read_text())
    methods = ["original", "remi", "finetune", "ssd"]
    assert len(rows) == len(methods) * 3 * 2  # methods x scenarios x seeds
    for row in rows:
        assert tuple(row) == leaderboard.ROW_KEYS
        for key in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "strong_auc", "strong_tpr_1pct"):
            assert 0 <= row[key] <= 1, (key, row)
        assert row["avg_gap"] >= 0 and row["floor_avg_gap"] >= 0 and row["floor_strong_auc"] >= 0
        assert isinstance(row["params"], dict) and row["retrain_seconds"] > 0
        if row["method"] != "original":
            assert row["speedup"] == pytest.approx(row["retrain_seconds"] / row["seconds"])
            assert row["work_ratio"] > 0 and row["params"]  # the tuned settings it ran with
        assert row["ulira_auc"] is None or (row["seed"] == 0 and row["method"] != "original")
    # U-LiRA ran for ReMI and the (here two) other methods on seed 0 of the random requests; a class request has
    # no reference model that never saw the class.
    assert {(r["scenario"], r["method"]) for r in rows if r["ulira_auc"] is not None} == {
        (s, m) for s in ("random10", "small1") for m in ("remi", "finetune", "ssd")}
    cells = json.loads((quick_run["out"] / "leaderboard_cells.json").read_text())
    cell = cells["digits_mlp/random10/0"]
    assert set(cell["methods"]) == {"original", "remi", "finetune", "ssd"} and "original_strongest_auc" in cell
    assert cell["methods"]["remi"]["verdict"]["correction"] == "holm"
    assert len(cell["methods"]["remi"]["verdict"]["pvalues"]) == 2 * len(leaderboard.STRONG_ATTACKS)
    md = (quick_run["out"] / "leaderboard.md").read_text()
    assert "*floor (retrain vs retrain)*" in md and (quick_run["out"] / "leaderboard.png").is_file()


def test_tuning_sees_only_the_calibration_request(quick_run: dict) -> None:
    ctx_config = leaderboard.setting_config("digits_mlp", leaderboard.parse_args(QUICK))
    from miunlearn.data import load_dataset, prepare_splits

    dataset = load_dataset(ctx_config.data)
    splits = prepare_splits(dataset, ctx_config.data, ctx_config.forget)
    labels = dataset.pool.y[torch.as_tensor(splits.train)].numpy()
    assert quick_run["tuned"], "nothing was tuned"
    assert {t["method"] for t in quick_run["tuned"]} == {"remi", "finetune", "ssd"}  # never retrain
    assert len({t["trials"] for t in quick_run["tuned"]}) == 1  # the same budget for every method
    for call in quick_run["tuned"]:
        calibration = np.asarray(call["key"]["calibration"])
        scenario = call["key"]["scenario"]
        kind = leaderboard.SCENARIOS.get(scenario)
        for seed in range(2):
            evaluated = splits.train[leaderboard.request_positions(kind, labels, 10, seed)]
            assert np.intersect1d(calibration, evaluated).size == 0
        [task] = call["tasks"]  # one calibration request, the default
        sets = task.sets
        # What the trials unlearn is exactly the calibration request; D_r is the rest of D_train.
        assert torch.equal(sets.forget.x, dataset.pool.subset(calibration).x)
        assert torch.equal(sets.retain.x, dataset.pool.subset(np.setdiff1d(splits.train, calibration)).x)
        # The objective's non-members come from D_test, never D_audit.
        audit_rows = {tuple(r) for r in dataset.pool.subset(splits.audit).x.flatten(1).tolist()}
        assert not audit_rows & {tuple(r) for r in sets.audit.x.flatten(1).tolist()}
        assert len(sets.audit) < len(dataset.test)


def test_retrains_of_a_cell_are_independent_trainings(quick_run: dict) -> None:
    from safetensors.torch import load_file

    folder = next((quick_run["cache"] / "leaderboard").glob("digits_mlp-*")) / "random10" / "seed-0"
    first, second = load_file(folder / "retrain-0.safetensors"), load_file(folder / "retrain-1.safetensors")
    target = load_file(folder.parents[1] / "target-0.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], target[k]) for k in first)


def test_presets_are_reusable_run_configs(quick_run: dict) -> None:
    preset = quick_run["out"] / "presets" / "digits_mlp-random10.yaml"
    rows = json.loads((quick_run["out"] / "leaderboard.json").read_text())
    config = load_config(None, [f"unlearn.preset={preset}"])
    remi_row = next(r for r in rows if (r["scenario"], r["method"]) == ("random10", "remi"))
    assert config.unlearn.params["remi"] == remi_row["params"]


def test_a_killed_run_resumes_with_only_the_missing_and_changed_rows(quick_run: dict, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(quick_run["out"], out)
    rows = json.loads((out / "leaderboard.json").read_text())
    dropped = [r for r in rows if r["scenario"] == "small1" and r["seed"] == 1 and r["method"] in ("remi", "ssd")]
    kept = [r for r in rows if r not in dropped]
    (out / "leaderboard.json").write_text(json.dumps(kept))  # as a run killed before those rows were stored
    cells = json.loads((out / "leaderboard_cells.json").read_text())
    cells["digits_mlp/random10/1"]["methods"]["finetune"]["fingerprint"] = "code since changed"
    (out / "leaderboard_cells.json").write_text(json.dumps(cells))
    for row in kept:  # as if tuned with other settings than those the preset now holds
        if (row["scenario"], row["seed"], row["method"]) == ("random10", 0, "remi"):
            row["params"] = row["params"] | {"lr": 1.0}
    (out / "leaderboard.json").write_text(json.dumps(kept))
    with unlearn_calls() as calls:
        assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(quick_run["cache"])]) == 0
    # Cached targets, retrains and tuning trials; finished rows kept; a method whose code or tuned settings
    # changed is rerun, and a rerun seed-0 row gets its U-LiRA again (one unlearning per reference model, 4 here).
    assert calls.count("finetune") == 1 and calls.count("ssd") == 1 and 2 < calls.count("remi") <= 2 + 4
    assert calls.count("retrain") == 3  # timed once in each of the three cells that ran a method
    assert set(calls) == {"finetune", "remi", "ssd", "retrain"}
    resumed = json.loads((out / "leaderboard.json").read_text())
    assert len(resumed) == len(rows)
    for row in kept:
        if (row["scenario"], row["seed"], row["method"]) not in (("random10", 1, "finetune"), ("random10", 0, "remi")):
            assert row in resumed


def test_speedups_divide_a_retrain_timed_in_the_same_run(quick_run: dict, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(quick_run["out"], out)
    cells = json.loads((out / "leaderboard_cells.json").read_text())
    first = cells["digits_mlp/random10/0"]
    assert first["timing"]["reproduces"]  # the retrain timed now is bit-identical to the cached one
    assert all(m["timed_in"] == first["timing"]["run"] for name, m in first["methods"].items() if name != "original")
    del cells["digits_mlp/random10/0"]["methods"]["remi"]["timed_in"]  # as rows made before timings were paired
    del cells["digits_mlp/class/1"]["methods"]["ssd"]["timed_in"]
    cells["digits_mlp/random10/0"]["retrain_seconds"] = 99.0  # what such cells kept: a cached retrain's seconds
    (out / "leaderboard_cells.json").write_text(json.dumps(cells))
    before = json.loads((out / "leaderboard.json").read_text())
    with unlearn_calls() as calls:
        assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(quick_run["cache"])]) == 0
        assert calls == []  # without --retime, nothing to do
        assert leaderboard.main([*QUICK, "--retime", "--out", str(out), "--cache", str(quick_run["cache"])]) == 0
    # Each untimed row is rerun once beside one retrain of its cell, and nothing else (U-LiRA is kept: same model).
    assert sorted(calls) == ["remi", "retrain", "retrain", "ssd"]
    after = {(r["scenario"], r["method"], r["seed"]): r for r in json.loads((out / "leaderboard.json").read_text())}
    for row in before:
        new = after[(row["scenario"], row["method"], row["seed"])]
        assert {k: v for k, v in new.items() if k not in TIMING} == {k: v for k, v in row.items() if k not in TIMING}
    retimed = json.loads((out / "leaderboard_cells.json").read_text())["digits_mlp/random10/0"]
    assert retimed["methods"]["remi"]["timed_in"] == retimed["timing"]["run"] != first["timing"]["run"]
    assert "retrain_seconds" not in retimed
    assert after[("random10", "remi", 0)]["retrain_seconds"] == pytest.approx(retimed["timing"]["seconds"])
    assert after[("random10", "ssd", 0)]["retrain_seconds"] == pytest.approx(first["timing"]["seconds"])


def test_rows_are_only_added_to_a_cell_computed_on_the_same_models(quick_run: dict, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from miunlearn.artefacts import record_digest

    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(quick_run["out"], out)
    shutil.copytree(quick_run["cache"], cache)
    rows_path, cells_path = out / "leaderboard.json", out / "leaderboard_cells.json"
    stored = json.loads(rows_path.read_text())

    def drop_remi_row() -> None:
        rows_path.write_text(json.dumps([r for r in stored if (r["scenario"], r["method"], r["seed"])
                                         != ("random10", "remi", 0)]))

    # The same cache: the row is computed again beside the kept ones, and comes out the same.
    drop_remi_row()
    assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 0
    again = {(r["scenario"], r["method"], r["seed"]): r for r in json.loads(rows_path.read_text())}
    old = next(r for r in stored if (r["scenario"], r["method"], r["seed"]) == ("random10", "remi", 0))
    assert {k: v for k, v in again[("random10", "remi", 0)].items() if k not in TIMING} == {
        k: v for k, v in old.items() if k not in TIMING}

    def perturb(name: str) -> None:
        (path,) = [p for p in cache.rglob(name) if "calibration" not in str(p)
                   and (name.startswith("target") or p.parent.parts[-2:] == ("random10", "seed-0"))]
        weights = load_file(path)
        key = next(k for k, v in weights.items() if v.is_floating_point())
        weights[key] = weights[key] + 1e-3
        save_file(weights, path)
        record_digest(path)  # a sound file of another build, not a damaged one (that would be retrained)

    # Another build of the target (as another CPU would train it): refused, nothing written.
    perturb("target-0.safetensors")
    drop_remi_row()
    cells_before = cells_path.read_text()
    assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"digits_mlp/\w+/0: the cache's target, retrains or reference models are not the ones the "
                     r"cell's stored rows \(original, .*\) were computed against", err), err
    assert cells_path.read_text() == cells_before
    # A cell stored before the digest is told by its retrains' reference-attack AUCs.
    cells = json.loads(cells_before)
    for cell in cells.values():
        del cell["models"]
    cells_path.write_text(json.dumps(cells))
    shutil.rmtree(cache)
    shutil.copytree(quick_run["cache"], cache)
    assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 0  # same models: accepted
    cells_path.write_text(json.dumps(cells))
    drop_remi_row()
    perturb("retrain-1.safetensors")
    assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 2


def test_a_cached_model_is_reused_only_while_its_sha256_checks_out(quick_run: dict, tmp_path: Path) -> None:
    import shutil

    from miunlearn.artefacts import digest_path

    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(quick_run["out"], out)
    shutil.copytree(quick_run["cache"], cache)
    rows_path = out / "leaderboard.json"
    stored = json.loads(rows_path.read_text())
    rows_path.write_text(json.dumps([r for r in stored if (r["scenario"], r["method"], r["seed"])
                                     != ("random10", "remi", 0)]))
    (retrain,) = cache.rglob("random10/seed-0/retrain-1.safetensors")
    (target,) = cache.rglob("target-0.safetensors")
    sound = {p: p.read_bytes() for p in (retrain, target)}
    damaged = bytearray(sound[retrain])
    damaged[-1] ^= 1  # one flipped bit in the last weight
    retrain.write_bytes(bytes(damaged))
    digest_path(target).unlink()  # as a cache written before digests were recorded
    with unlearn_calls() as calls:
        assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(cache)]) == 0
    # The damaged retrain is trained again (beside the one timed for the cell), the unverifiable target too; both
    # come out bit-identical, so the cell's models digest accepts them and the recomputed row is the stored one.
    assert calls.count("retrain") == 2
    assert all(p.read_bytes() == sound[p] and digest_path(p).is_file() for p in sound)
    again = next(r for r in json.loads(rows_path.read_text()) if (r["scenario"], r["method"], r["seed"])
                 == ("random10", "remi", 0))
    old = next(r for r in stored if (r["scenario"], r["method"], r["seed"]) == ("random10", "remi", 0))
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in old.items() if k not in TIMING}


@pytest.mark.slow
def test_gpu_script_runs_its_tiny_mode_on_the_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cache, out = tmp_path / "cache", tmp_path / "out"
    (cache / "cifar10").mkdir(parents=True)
    for name, n in (("train", 700), ("test", 300)):
        y = np.arange(n) % 10
        x = np.clip(rng.normal(60 + 15 * y[:, None, None, None], 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        np.savez(cache / "cifar10" / f"{name}.npz", x=x, y=y.astype(np.int64))
    env = {"TINY": "1", "OUT": str(out), "CACHE": str(cache), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([str(ROOT / "benchmarks" / "gpu_leaderboard.sh"), "data.subset=700", "data.test_subset=300"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(f.count("/") <= 1 for f in files)
    rows = json.loads((out / "leaderboard.json").read_text())
    assert {r["method"] for r in rows} == {"original", "remi", "finetune"}
    assert all(tuple(r) == leaderboard.ROW_KEYS for r in rows)
    assert "presets/cifar10_cnn-random10.yaml" in files and "log.txt" in files


def test_a_method_that_leaves_non_finite_weights_gets_a_row_without_metrics(tmp_path: Path) -> None:
    real_unlearn = leaderboard.unlearn

    def breaking_unlearn(model, forget, retain, method, *args, **kwargs):
        result = real_unlearn(model, forget, retain, method, *args, **kwargs)
        if method == "finetune" and len(forget) < 100:  # the evaluated request, not the tuning trials' ones
            with torch.no_grad():
                next(result.model.parameters()).fill_(float("nan"))
        return result

    leaderboard.unlearn = breaking_unlearn
    try:
        assert leaderboard.main(["--quick", "--settings", "digits_mlp", "--methods", "finetune,ssd", "--scenarios",
                                 "small1", "--seeds", "1", "--out", str(tmp_path / "o"),
                                 "--cache", str(tmp_path / "c")]) == 0
    finally:
        leaderboard.unlearn = real_unlearn
    rows = {r["method"]: r for r in json.loads((tmp_path / "o" / "leaderboard.json").read_text())}
    broken = rows["finetune"]
    assert tuple(broken) == leaderboard.ROW_KEYS and broken["avg_gap"] is None and broken["forget_acc"] is None
    assert broken["seconds"] > 0 and rows["ssd"]["avg_gap"] is not None
    assert rows["ssd"]["ulira_auc"] is not None and broken["ulira_auc"] is None


def test_remi_diagnosis_sets_out_models_and_remi_beside_the_retrains(quick_run: dict, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    import remi_diagnose

    args = ["digits_mlp", "random10", "--quick", "--seeds", "2", "--cache", str(quick_run["cache"]),
            "--presets", str(quick_run["out"] / "presets"), "--out", str(tmp_path)]
    assert remi_diagnose.main(args) == 0
    path = tmp_path / "remi_diagnose-digits_mlp-random10.json"
    stored = json.loads(path.read_text())
    assert [r["seed"] for r in stored["rows"]] == [0, 1]
    for row in stored["rows"]:
        assert len(row["retrain_forget_acc"]) == 2 and len(row["out_forget_acc"]) >= 1
        assert all(0 <= a <= 1 for a in [*row["retrain_forget_acc"], *row["out_forget_acc"], *row["remi"].values()])
        assert row["remi_avg_gap"] >= 0 and row["remi_stop_reason"]
        # the third retrain is another model than the cell's two, scored against their mean like ReMI
        assert row["third_retrain_avg_gap"] >= 0 and row["third_retrain"] != row["remi"]
        assert len(row["test_s"]["retrains"]) == 2 and all(spread > 0 for _, spread in row["test_s"]["retrains"])
    seed_dirs = list(quick_run["cache"].rglob("random10/seed-[01]"))
    assert len(seed_dirs) == 2
    for seed_dir in seed_dirs:
        assert (seed_dir / "retrain-third.safetensors").read_bytes() not in [
            (seed_dir / f"retrain-{r}.safetensors").read_bytes() for r in range(2)]
    printed = capsys.readouterr().out
    assert "retrain vs retrain" in printed and "s on D_test, mean ± spread: ReMI" in printed
    assert "A third independent retrain scored like ReMI" in printed and "too few seeds for a test" in printed
    assert remi_diagnose.main(args) == 0  # resumes: every seed already stored, nothing recomputed
    assert json.loads(path.read_text()) == stored
    assert remi_diagnose.main(["digits_mlp", "nosuch"]) == 2
    assert "unknown leaderboard scenario 'nosuch'" in capsys.readouterr().err


def test_remi_trajectory_audits_the_model_at_every_check_and_ends_on_the_leaderboards_row(
        quick_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import remi_trajectory

    args = ["digits_mlp", "random10", "--quick", "--seeds", "1", "--cache", str(quick_run["cache"]),
            "--presets", str(quick_run["out"] / "presets"), "--out", str(tmp_path)]
    assert remi_trajectory.main(args) == 0
    stored = json.loads((tmp_path / "remi_trajectory-digits_mlp-random10.json").read_text())
    (row,) = stored["rows"]
    checks = row["checks"]
    epochs = [c["epoch"] for c in checks]
    assert epochs[0] == 0 and epochs == sorted(epochs) and len(epochs) >= 2
    rows = json.loads((quick_run["out"] / "leaderboard.json").read_text())
    board = {r["method"]: r for r in rows if r["scenario"] == "random10" and r["seed"] == 0}
    # the first check is the untouched target, the last the model ReMI returned (what the leaderboard audits)
    for check, method in ((checks[0], "original"), (checks[-1], "remi")):
        for key in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap"):
            assert check[key] == pytest.approx(board[method][key], abs=1e-9), (method, key)
        assert check["strong"][0] == pytest.approx(board[method]["strong_auc"], abs=1e-9)
    assert "| passes | avg gap" in capsys.readouterr().out
    assert remi_trajectory.main(args) == 0  # resumes: nothing recomputed
    assert json.loads((tmp_path / "remi_trajectory-digits_mlp-random10.json").read_text()) == stored
    assert remi_trajectory.main([*args, "--cosine", "--set", "optimizer=sgd"]) == 2


def test_remi_trajectory_names_its_file_without_characters_a_shell_would_quote() -> None:
    import remi_trajectory

    suffix = remi_trajectory.file_suffix({"frozen": ["0.", "1."], "lr": 0.002, "targets": "random"})
    assert suffix == "-frozen=0.+1.-lr=0.002-targets=random"


def test_a_recorded_command_says_the_thread_count_it_ran_under(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert leaderboard.command_line("x.py", ["a", "--b"]) == "OMP_NUM_THREADS=2 python benchmarks/x.py a --b"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert leaderboard.command_line("x.py", ["a"]) == "python benchmarks/x.py a"


def test_remi_yardstick_scores_every_model_of_the_cell_on_remis_own_z_scale(
        quick_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import remi_yardstick

    args = ["digits_mlp", "random10", "--quick", "--seeds", "1", "--cache", str(quick_run["cache"]),
            "--presets", str(quick_run["out"] / "presets"), "--out", str(tmp_path)]
    assert remi_yardstick.main(args) == 0
    path = tmp_path / "remi_yardstick-digits_mlp-random10.json"
    stored = json.loads(path.read_text())
    (row,) = stored["rows"]
    assert set(row["models"]) == {"original", "retrain-0", "retrain-1", "remi"}
    # ReMI's σ is the spread of the original's calibration z-scores: the scale is the objective's own
    assert row["models"]["original"]["calibration_sd"] == pytest.approx(1.0, abs=1e-6)
    assert all(0 <= m["above_calibration_p"] <= 1 and 0 <= m["above_targets_p"] <= 1 for m in row["models"].values())
    rows = json.loads((quick_run["out"] / "leaderboard.json").read_text())
    board = {r["method"]: r for r in rows if r["scenario"] == "random10" and r["seed"] == 0}
    for name in ("original", "remi"):  # the same models the leaderboard audited
        assert row["models"][name]["strong"][0] == pytest.approx(board[name]["strong_auc"], abs=1e-9)
    assert "| seed | model |" in capsys.readouterr().out
    assert remi_yardstick.main(args) == 0  # resumes: nothing recomputed
    assert json.loads(path.read_text()) == stored


def test_the_trajectory_studys_schedule_warms_up_then_decays_to_zero() -> None:
    import remi_trajectory

    from miunlearn.unlearning.remi import RemiConfig

    remi_trajectory.SCHEDULE.update(warmup=4, total=10)
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = remi_trajectory.OPTIMIZERS.get("adam-scheduled")([weight], RemiConfig(lr=1.0))
    rates = []
    for _ in range(11):
        rates.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(1)
        optimizer.step()
    expected = [min(1, (k + 1) / 4) * 0.5 * (1 + np.cos(np.pi * k / 10)) for k in range(11)]
    assert rates == pytest.approx(expected) and rates[0] == pytest.approx(0.25) and rates[-1] == pytest.approx(0)


def test_u_lira_reference_models_unlearn_with_the_approximator_their_owner_would_fit(quick_run: dict) -> None:
    """Hayes et al. run the whole algorithm on each reference model: a ``folds`` approximator trained on that
    model's own training set, calibrated on samples no reference model saw; never the target's."""
    from rich.console import Console

    from miunlearn.guidance.folds import FoldOut, sample_hashes

    opts = leaderboard.parse_args([*QUICK, "--cache", str(quick_run["cache"])])
    ctx = leaderboard.prepare_setting("digits_mlp", opts, Console(quiet=True))
    own = leaderboard.reference_approximators(ctx)
    assert len(own) == len(ctx.refs.models) and leaderboard.reference_approximators(ctx) is own  # built once
    calibration_hashes = sample_hashes(ctx.approximator.calibration)
    pool = ctx.dataset.pool
    for k, approximator in enumerate(own):
        assert isinstance(approximator, FoldOut) and approximator is not ctx.approximator
        trained_on = pool.subset(ctx.refs.pool_indices[ctx.refs.member[k]])
        assert np.array_equal(approximator.train_hashes.numpy(), np.sort(sample_hashes(trained_on)))
        assert not np.isin(calibration_hashes, approximator.train_hashes.numpy()).any()
        assert torch.equal(approximator.calibration.x, ctx.approximator.calibration.x)
    # an approximator that never reads D_train is the one any owner would fit
    shared = leaderboard.SettingContext(**{**vars(ctx), "approximator": object(), "own_approximators": None})
    assert all(a is shared.approximator for a in leaderboard.reference_approximators(shared))


def test_tuning_noise_retunes_with_other_seeds_and_seed_zero_is_the_leaderboards(
        quick_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import tuning_noise
    import yaml

    args = ["digits_mlp", "random10", "--methods", "remi", "--tuning-seeds", "2", "--seeds", "1", "--quick",
            "--cache", str(quick_run["cache"]), "--out", str(tmp_path)]
    assert tuning_noise.main(args) == 0
    path = tmp_path / "tuning_noise-digits_mlp-random10.json"
    stored = json.loads(path.read_text())
    rows = {r["tuning_seed"]: r for r in stored["rows"]}
    assert set(rows) == {0, 1} and all(len(r["avg_gaps"]) == 1 and r["avg_gaps"][0] >= 0 for r in rows.values())
    preset = yaml.safe_load((quick_run["out"] / "presets" / "digits_mlp-random10.yaml").read_text())
    assert rows[0]["params"] == preset["unlearn"]["params"]["remi"]  # seed 0 reads the leaderboard's own study
    assert rows[1]["params"] != rows[0]["params"]  # another sampler seed draws other trials
    assert "remi, tuned on 1 calibration request(s): mean avg gap over 2 tuning seeds" in capsys.readouterr().out
    assert tuning_noise.main(args) == 0 and json.loads(path.read_text()) == stored  # resumes: nothing recomputed
    # tuned on one calibration request and on the mean of two, both evaluated on requests that overlap neither
    assert tuning_noise.main([*args, "--calibration-requests", "2", "--tune-on", "1,2"]) == 0
    both = json.loads((tmp_path / "tuning_noise-digits_mlp-random10-calibration2.json").read_text())["rows"]
    assert sorted((r["tuned_on"], r["tuning_seed"]) for r in both) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert next(r for r in both if (r["tuned_on"], r["tuning_seed"]) == (1, 0))["params"] == rows[0]["params"]
    assert next(r for r in both if (r["tuned_on"], r["tuning_seed"]) == (2, 0))["distance"] != rows[0]["distance"]
    cells = next((quick_run["cache"] / "leaderboard").glob("digits_mlp-*"))
    assert (cells / "random10-calibration2" / "seed-0" / "request.json").is_file()
    assert (cells / "random10" / "calibration-1" / "retrain.safetensors").is_file()
    shown = capsys.readouterr().out
    assert "tuned on 2 calibration request(s)" in shown and "noise floor per evaluated seed" in shown
    assert tuning_noise.main([*args, "--tune-on", "2"]) == 2  # more than the evaluated requests leave out
    assert tuning_noise.main(["digits_mlp", "random10", "--methods", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_trial_sweep_runs_every_tuned_trial_under_each_variant_on_dev_seeds_only(
        quick_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import trial_sweep
    import yaml

    kl, logits = "anchor=kl,min_epochs=1", "anchor=logits,min_epochs=1"  # at least a pass: digits starts out met
    args = ["digits_mlp", "random10", "--quick", "--seeds", "2", "--variant", kl, "--variant", logits,
            "--cache", str(quick_run["cache"]), "--out", str(tmp_path)]
    assert trial_sweep.main(args) == 0
    path = tmp_path / "trial_sweep-digits_mlp-random10-remi.json"
    stored = json.loads(path.read_text())
    rows = stored["rows"]
    assert len(rows) == 2 * 2 and {r["variant"] for r in rows} == {kl, logits}  # 2 quick trials
    assert all(r["seed"] == 2 and r["avg_gap"] >= 0 and 0 <= r["strong_auc"] <= 1 for r in rows)
    assert all(r["work_ratio"] > 0 and r["seconds"] > 0 for r in rows)  # the cost beside the closeness
    tuned = yaml.safe_load((quick_run["out"] / "presets" / "digits_mlp-random10.yaml").read_text())
    best = min(rows, key=lambda r: r["objective"])
    assert best["params"] == tuned["unlearn"]["params"]["remi"]  # the leaderboard's own study, all of its trials
    by_variant = {v: [r["avg_gap"] for r in rows if r["variant"] == v] for v in (kl, logits)}
    assert by_variant[kl] != by_variant[logits]  # the variant reached the method
    out = capsys.readouterr().out
    assert f"closer than {kl} on" in out and "retraining's work / the method's" in out
    assert trial_sweep.main(args) == 0 and json.loads(path.read_text()) == stored  # resumes: nothing recomputed
    assert trial_sweep.main([*args[:3], "--seeds", "0,2"]) == 2
    assert "are ones the leaderboard evaluates (0..1); dev seeds start at 2" in capsys.readouterr().err


def test_runs_of_other_settings_merge_into_one_leaderboard_and_clashes_are_refused(
        quick_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Settings run in parallel processes (one per core) each write their own --out; --merge folds them together."""
    rows = json.loads((quick_run["out"] / "leaderboard.json").read_text())
    cells = json.loads((quick_run["out"] / "leaderboard_cells.json").read_text())
    meta = json.loads((quick_run["out"] / "leaderboard_meta.json").read_text())
    parts = {"a": ("random10",), "b": ("class", "small1")}
    for name, scenarios in parts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "leaderboard.json").write_text(json.dumps([r for r in rows if r["scenario"] in scenarios]))
        (folder / "leaderboard_cells.json").write_text(json.dumps(
            {k: c for k, c in cells.items() if k.split("/")[1] in scenarios}))
        (folder / "leaderboard_meta.json").write_text(json.dumps(meta))
    # each part tuned some of the methods of one preset file; the merge unites them under --presets
    preset = next((quick_run["out"] / "presets").glob("*.yaml"))
    data = yaml.safe_load(preset.read_text())
    params, methods = data["unlearn"]["params"], data["tuning"]["methods"]
    halves = {"a": sorted(params)[:1], "b": sorted(params)[1:]}
    for name, tuned in halves.items():
        (tmp_path / name / "presets").mkdir()
        (tmp_path / name / "presets" / preset.name).write_text(yaml.safe_dump(
            data | {"unlearn": {"params": {m: params[m] for m in tuned}},
                    "tuning": data["tuning"] | {"methods": {m: methods[m] for m in tuned}}}))
    merge = ["--out", str(tmp_path / "a"), "--presets", str(tmp_path / "a" / "presets"), "--merge", str(tmp_path / "b")]
    assert leaderboard.main(merge) == 0
    merged = json.loads((tmp_path / "a" / "leaderboard.json").read_text())
    assert sorted(map(json.dumps, merged)) == sorted(map(json.dumps, rows))
    assert json.loads((tmp_path / "a" / "leaderboard_cells.json").read_text()) == cells
    runs = json.loads((tmp_path / "a" / "leaderboard_meta.json").read_text())["runs"]
    assert len(runs) == 2 and all("python benchmarks/leaderboard.py" in r["command"] for r in runs)
    assert (tmp_path / "a" / "leaderboard.md").is_file()
    text = (tmp_path / "a" / "presets" / preset.name).read_text()
    assert yaml.safe_load(text) == data  # both halves, and the study's record
    assert f"unlearn.preset={tmp_path / 'a' / 'presets' / preset.name} " in text.splitlines()[0]  # where it now lies

    clash = dict(rows[0]) | {"avg_gap": rows[0]["avg_gap"] + 1}
    (tmp_path / "b" / "leaderboard.json").write_text(json.dumps([clash]))
    before = {path: path.read_bytes() for path in (tmp_path / "a").rglob("*") if path.is_file()}
    assert leaderboard.main(merge) == 2
    (tmp_path / "b" / "leaderboard.json").write_text("[]")
    other_pick = {m: p | {"lr": 1.0} if "lr" in p else p for m, p in params.items()}
    (tmp_path / "b" / "presets" / preset.name).write_text(yaml.safe_dump(data | {"unlearn": {"params": other_pick}}))
    assert leaderboard.main(merge) == 2
    assert "disagree on" in capsys.readouterr().err
    (tmp_path / "b" / "presets" / preset.name).write_text("unlearn: [not, a, preset")
    assert leaderboard.main(merge) == 2
    assert "is not a leaderboard preset" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (tmp_path / "a").rglob("*") if path.is_file()} == before


def test_the_readme_summary_is_generated_between_its_markers(quick_run: dict, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- leaderboard-summary:begin -->\nOLD-TABLE\n<!-- leaderboard-summary:end -->\ntail\n")
    out = ["--out", str(quick_run["out"]), "--report"]
    assert leaderboard.main([*out, "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "OLD-TABLE" not in text and text.endswith("<!-- leaderboard-summary:end -->\ntail\n")
    table = [line for line in text.splitlines() if line.startswith("| digits_mlp")]
    assert len(table) == 3 and all(" of 3 | " in line for line in table)  # ReMI ranked among remi, finetune, ssd
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    assert leaderboard.main([*out, "--readme", str(bare)]) == 2
    assert bare.read_text() == "no markers\n"


def test_an_interrupted_run_keeps_its_rows_and_records_its_time(quick_run: dict, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(quick_run["out"], out)
    rows = json.loads((out / "leaderboard.json").read_text())
    kept = [r for r in rows if not (r["scenario"] == "small1" and r["method"] == "ssd")]
    (out / "leaderboard.json").write_text(json.dumps(kept))
    runs_before = json.loads((out / "leaderboard_meta.json").read_text())["runs"]
    real_unlearn = leaderboard.unlearn

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    leaderboard.unlearn = interrupted
    try:
        assert leaderboard.main([*QUICK, "--out", str(out), "--cache", str(quick_run["cache"])]) == 130
    finally:
        leaderboard.unlearn = real_unlearn
    assert json.loads((out / "leaderboard.json").read_text()) == kept
    runs = json.loads((out / "leaderboard_meta.json").read_text())["runs"]
    assert runs[:-1] == runs_before and runs[-1]["interrupted"] and runs[-1]["wall_seconds"] > 0


def test_kill_stops_a_background_run_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (and SIGINT, which a background job inherits ignored) keeps the finished rows and records the
    invocation as interrupted, instead of dying without a trace of its time."""
    import os
    import signal
    import time

    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "leaderboard.py"), "--quick", "--settings",
                              "digits_mlp", "--methods", "finetune", "--seeds", "2", "--out", str(out), "--cache",
                              str(tmp_path / "cache")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / "leaderboard.json").is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err.decode()
    assert "interrupted; every finished row is stored" in err.decode()
    assert json.loads((out / "leaderboard.json").read_text())  # the rows stored before the signal
    runs = json.loads((out / "leaderboard_meta.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["interrupted"]
