"""Search spaces (one per method, a contract), Optuna tuning with cached trials, presets in run configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from miunlearn.audit import EvaluationSets
from miunlearn.config import load_config
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.training import train_model
from miunlearn.tuning import CalibrationTask, calibration_metrics, distance_to_retrain, tune
from miunlearn.unlearning import METHODS, build_method
from miunlearn.unlearning.search_space import SEARCH_SPACES


def test_every_method_but_retrain_declares_a_search_space() -> None:
    assert set(SEARCH_SPACES.names()) == set(METHODS.names()) - {"retrain"}


@pytest.mark.parametrize("method", SEARCH_SPACES.names())
def test_a_search_space_suggests_valid_settings_of_its_own_config_fields(method: str) -> None:
    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(6):
        trial = study.ask()
        params = SEARCH_SPACES.get(method)(trial)
        assert params and set(params) <= fields, f"{method}: {set(params) - fields} are not config fields"
        assert params == trial.params  # what was suggested is all the trial holds: Ray Tune passes exactly that
        build_method(method, params)  # in range: the method's own validation accepts it
        seen.add(tuple(sorted(params.items())))
        study.tell(trial, 0.0)
    assert len(seen) > 1, f"{method}'s space does not vary"


def _task() -> tuple[CalibrationTask, torch.nn.Module]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x[:, 0] + 0.8 * torch.randn(240, generator=g) > 0).long()
    data = TensorData(x, y)
    train, test = data.subset(np.arange(160)), data.subset(np.arange(160, 240))
    forget, retain = train.subset(np.arange(16)), train.subset(np.arange(16, 160))
    from miunlearn.config import TrainConfig

    recipe = TrainConfig(epochs=15, batch_size=32, progress=False, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    train_model(model, train, recipe)
    torch.manual_seed(1)
    retrained = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    train_model(retrained, retain, dataclasses.replace(recipe, seed=1))
    sets = EvaluationSets(retain, forget, test, test.subset(np.arange(40)))
    task = CalibrationTask(model.eval(), sets, calibration_metrics(retrained.eval(), sets, recipe), recipe=recipe)
    return task, model


def test_the_objective_is_zero_for_the_retrain_itself() -> None:
    task, _ = _task()
    assert distance_to_retrain(task.retrained, task.retrained) == 0.0


def test_tuning_caches_trials_and_recomputes_only_a_changed_study(tmp_path: Path) -> None:
    task, _ = _task()
    storage = tmp_path / "finetune.journal"
    first = tune("finetune", task, 3, storage, {"request": [1, 2]})
    assert first.trials_run_now == 3 and set(first.params) == {"lr", "epochs"}
    again = tune("finetune", task, 3, storage, {"request": [1, 2]})
    assert again.trials_run_now == 0 and again.params == first.params and again.value == first.value
    more = tune("finetune", task, 4, storage, {"request": [1, 2]})
    assert more.trials_run_now == 1  # a larger budget adds only the missing trials
    other = tune("finetune", task, 2, storage, {"request": [3]})
    assert other.trials_run_now == 2  # another request is another study


def test_a_budget_picks_the_best_of_its_own_trials_even_from_a_journal_a_larger_budget_extended(
        tmp_path: Path) -> None:
    task, _ = _task()
    storage = tmp_path / "finetune.journal"
    from miunlearn.tuning import completed_trials

    tune("finetune", task, 6, storage, {"request": [1]})
    values = [t.value for t in completed_trials("finetune", storage, {"request": [1]})]
    assert len(values) == 6
    for budget in (1, 3, 6):
        result = tune("finetune", task, budget, storage, {"request": [1]})
        assert result.trials_run_now == 0 and result.value == min(values[:budget])


def test_several_calibration_requests_are_tuned_on_the_mean_of_their_distances(tmp_path: Path) -> None:
    """One request's distance is noisy enough to pick a trial by luck; averaging requests is what the leaderboard's
    ``--calibration-requests`` does."""
    from miunlearn.tuning import completed_trials, evaluate_params

    task, _ = _task()
    other = dataclasses.replace(task, retrained=task.retrained | {"forget_acc": task.retrained["forget_acc"] - 10},
                                seed=1)
    params = {"lr": 0.01, "epochs": 1}
    one, two = evaluate_params("finetune", params, task), evaluate_params("finetune", params, other)
    assert one != two
    assert evaluate_params("finetune", params, [task, other]) == pytest.approx((one + two) / 2)
    result = tune("finetune", [task, other], 3, tmp_path / "f.journal", {"request": [[1], [2]]})
    trials = completed_trials("finetune", tmp_path / "f.journal", {"request": [[1], [2]]})
    means = [(evaluate_params("finetune", t.params, task) + evaluate_params("finetune", t.params, other)) / 2
             for t in trials]
    assert [t.value for t in trials] == pytest.approx(means) and result.value == pytest.approx(min(means))
    with pytest.raises(MiunlearnError, match="at least one calibration request"):
        tune("finetune", [], 1, tmp_path / "g.journal", {})


def test_budgets_up_to_the_startup_trials_are_the_same_random_candidates_for_every_request(tmp_path: Path) -> None:
    """What the leaderboard's presets rest on (its docs say so): below TPE's start-up count, the seeded sampler
    proposes the same settings whatever the trials scored."""
    from miunlearn.tuning import STARTUP_TRIALS, completed_trials

    task, _ = _task()
    tune("finetune", task, 3, tmp_path / "a.journal", {"request": [1]})
    tune("gradient-ascent", task, 1, tmp_path / "b.journal", {"request": [1]})  # another study, another order
    tune("finetune", task, 3, tmp_path / "c.journal", {"request": [2]})
    assert STARTUP_TRIALS >= 3
    before = (tmp_path / "b.journal").read_bytes()
    assert completed_trials("finetune", tmp_path / "b.journal", {"request": [1]}) == []  # not that journal's study
    assert (tmp_path / "b.journal").read_bytes() == before
    proposed = [[t.params for t in completed_trials("finetune", tmp_path / f"{name}.journal", {"request": [r]})]
                for name, r in (("a", 1), ("c", 2))]
    assert proposed[0] == proposed[1]


def test_tuning_rejects_retrain_and_unknown_executors(tmp_path: Path) -> None:
    task, _ = _task()
    with pytest.raises(MiunlearnError, match="unknown search space 'retrain'"):
        tune("retrain", task, 2, tmp_path / "x.journal", {})
    with pytest.raises(MiunlearnError, match="valid: local, ray"):
        tune("finetune", task, 2, tmp_path / "x.journal", {}, executor="dask")


def test_a_preset_fills_in_method_settings_the_config_does_not_set(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"unlearn": {"params": {"finetune": {"lr": 0.02, "epochs": 4},
                                                             "remi": {"alpha": 3.0}}}, "tuning": {"trials": 16}}))
    config = load_config(None, [f"unlearn.preset={preset}", "unlearn.params.finetune.lr=0.5"])
    assert config.unlearn.params["finetune"] == {"lr": 0.5, "epochs": 4}  # the user's own value wins
    assert config.unlearn.params["remi"] == {"alpha": 3.0}
    assert config.unlearn.preset is None  # resolved: a saved config needs no preset file
    with pytest.raises(MiunlearnError, match="does not exist"):
        load_config(None, [f"unlearn.preset={tmp_path / 'missing.yaml'}"])
    preset.write_text("unlearn: {methods: [remi]}\n")
    with pytest.raises(MiunlearnError, match="no unlearn.params"):
        load_config(None, [f"unlearn.preset={preset}"])


def test_a_trial_that_breaks_the_model_scores_infinity_instead_of_stopping_the_study() -> None:
    from miunlearn.tuning import evaluate_params

    task, _ = _task()
    assert evaluate_params("gradient-ascent", {"lr": 1e30, "epochs": 3}, task) == float("inf")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # Ray's start-up and one trial actor: about a minute alone, far longer on a busy machine
def test_ray_tune_trials_land_in_the_same_cache_as_local_ones(tmp_path: Path) -> None:
    """``executor=ray``: Ray Tune runs the trials (OptunaSearch, TPE) and the study records them, so a local rerun
    with the same budget finds them all and a larger one adds only the missing trials."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    try:
        task, _ = _task()
        storage = tmp_path / "finetune.journal"
        remote = tune("finetune", task, 1, storage, {"request": [1, 2]}, executor="ray")
    finally:
        ray.shutdown()
    assert remote.trials_run_now == 1 and set(remote.params) == {"lr", "epochs"} and np.isfinite(remote.value)
    local = tune("finetune", task, 1, storage, {"request": [1, 2]})
    assert local.trials_run_now == 0 and local.params == remote.params and local.value == remote.value
    assert tune("finetune", task, 2, storage, {"request": [1, 2]}).trials_run_now == 1


def test_a_work_limited_study_is_its_own_and_every_trial_stays_within_the_limit(tmp_path: Path) -> None:
    """``--max-cost`` tuning: the closest result on a budget, kept apart from the unlimited study of the same key."""
    from miunlearn.tuning import completed_trials
    from miunlearn.unlearning import unlearn
    from miunlearn.unlearning.work import retrain_work, weighted_work

    task, _ = _task()
    capped = dataclasses.replace(task, max_cost=0.05)
    storage = tmp_path / "finetune.journal"
    tune("finetune", task, 2, storage, {"request": [1]})
    result = tune("finetune", capped, 2, storage, {"request": [1]})
    assert result.trials_run_now == 2  # not the unlimited study's trials
    trials = completed_trials("finetune", storage, {"request": [1]}, max_cost=0.05)
    assert [t.value for t in trials] != [t.value for t in completed_trials("finetune", storage, {"request": [1]})]
    limit = 0.05 * retrain_work(task.recipe.epochs, len(task.sets.retain))
    for trial in trials:
        record = unlearn(task.model, task.sets.forget, task.sets.retain, "finetune", trial.params, recipe=task.recipe,
                         max_cost=0.05).record
        assert weighted_work(record.samples_trained, record.samples_inferred) <= limit
    with pytest.raises(MiunlearnError, match="share max_cost"):
        tune("finetune", [task, capped], 1, storage, {"request": [[1], [1]]})
