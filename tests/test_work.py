"""Work counters: every unlearning record states the samples it processed, matching what the method must do."""

import copy
from dataclasses import replace

import pytest
import torch
from torch.func import vmap

from miunlearn import unlearn
from miunlearn.errors import MiunlearnError
from miunlearn.unlearning import METHODS
from miunlearn.unlearning.work import WorkLimitReached, batch_size, count_work, retrain_work, weighted_work
from test_baselines import parts  # noqa: F401  (the shared tiny memorised-set fixture, as a copyable dict)
from test_unlearning import FIXTURE_PARAMS, request_parts  # noqa: F401


def _unlearn(parts, method, config=None, **recipe):  # noqa: F811
    args = dict(parts)
    model = args.pop("model")
    args["recipe"] = replace(args["recipe"], **recipe)
    return unlearn(model, method=method, config=config, seed=0, **args).record


def test_retrain_trains_epochs_times_retain(parts):  # noqa: F811
    record = _unlearn(parts, "retrain", epochs=3)
    assert record.samples_trained == 3 * len(parts["retain"])
    assert record.samples_inferred == 0


def test_gradient_ascent_trains_epochs_times_forget(parts):  # noqa: F811
    record = _unlearn(parts, "gradient-ascent", {"epochs": 4})
    assert (record.samples_trained, record.samples_inferred) == (4 * len(parts["forget"]), 0)


def test_teachers_copied_inside_the_method_count_as_inference(parts):  # noqa: F811
    """Bad-teacher's two teachers are deep copies of the model: each labels every batch the student trains on."""
    record = _unlearn(parts, "bad-teacher", {"epochs": 2})
    student = 2 * (len(parts["forget"]) + round(0.3 * len(parts["retain"])))
    assert record.samples_trained == student
    assert record.samples_inferred == 2 * student


def test_vmapped_per_sample_passes_count_every_sample(parts):  # noqa: F811
    """Fisher's Jacobians run one sample at a time under vmap; the counter sees the whole batch."""
    record = _unlearn(parts, "fisher")
    assert record.samples_trained == len(parts["retain"])
    assert record.samples_inferred == len(parts["retain"]) + 1  # + the one-sample probe of the class count


def test_remi_does_at_least_its_floor_and_states_it(parts):  # noqa: F811
    """At least one forward/backward pass over D_f with its retain and reference companions; and inference: the
    original's outputs on D_ref (the anchor) and on the calibration samples (the z-scores' spread), and D_f at every
    check of the stopping rule."""
    record = _unlearn(parts, "remi", {"epochs": 2, "min_epochs": 2})
    c = record.config
    steps = -(-len(parts["forget"]) // c["forget_batch"])
    assert record.samples_trained >= 2 * (len(parts["forget"]) + steps * (c["retain_batch"] + c["ref_batch"]))
    checks = c["epochs"] * c["checks_per_epoch"]
    assert record.samples_inferred >= (len(parts["reference"]) + len(parts["approximator"].calibration)
                                       + checks * len(parts["forget"]))


def test_counter_splits_by_autograd_and_stops_at_the_block():
    model = torch.nn.Linear(3, 2)
    with count_work(model) as work:
        model(torch.zeros(5, 3))
        with torch.no_grad():
            model(torch.zeros(7, 3))
        copy.deepcopy(model)(torch.zeros(2, 3))
    model(torch.zeros(11, 3))
    assert (work.samples_trained, work.samples_inferred) == (7, 7)


def test_batch_size_sees_through_vmap():
    seen = []
    vmap(lambda x: seen.append(batch_size(x)) or x)(torch.zeros(6, 2, 3))
    assert seen == [12]  # six calls' worth of two-sample batches


def test_a_limit_refuses_the_pass_that_would_exceed_it():
    model = torch.nn.Linear(3, 2)
    with count_work(model, limit=10) as work:
        model(torch.zeros(6, 3))
        with torch.no_grad():
            model(torch.zeros(12, 3))  # 6 + 12 / 3 = 10: still within
        with pytest.raises(WorkLimitReached):
            model(torch.zeros(1, 3))
    assert (work.samples_trained, work.samples_inferred) == (6, 12)


def _cost(record, given):
    return weighted_work(record.samples_trained, record.samples_inferred) / retrain_work(given["recipe"].epochs,
                                                                                          len(given["retain"]))


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_stops_within_max_cost_and_is_unchanged_below_it(method, request_parts):  # noqa: F811
    args = dict(request_parts)
    model = args.pop("model")
    flags = [p.requires_grad for p in model.parameters()]
    config = FIXTURE_PARAMS.get(method)
    full = unlearn(model, method=method, config=config, seed=1, **args)
    cost = _cost(full.record, args)

    capped = unlearn(model, method=method, config=config, seed=1, max_cost=cost / 2, **args)
    assert _cost(capped.record, args) <= cost / 2
    assert capped.record.stop_reason.startswith("work limit reached")
    assert [p.requires_grad for p in capped.model.parameters()] == flags, "a stopped method left flags changed"
    assert not capped.model._forward_pre_hooks and not model._forward_pre_hooks
    assert all(torch.isfinite(p).all() for p in capped.model.parameters())

    kept = _timeless(capped.record.history)
    assert kept == _timeless(full.record.history)[:len(kept)], "the rows logged before the stop are the full run's"

    roomy = unlearn(model, method=method, config=config, seed=1, max_cost=cost * 1.001, **args)
    assert roomy.record.stop_reason == full.record.stop_reason
    assert _timeless(roomy.record.history) == _timeless(full.record.history)
    assert all(torch.equal(v, roomy.model.state_dict()[k]) for k, v in full.model.state_dict().items())


def _timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("method", ["finetune", "remi"])
def test_a_stopped_run_keeps_the_log_of_what_it_finished(method, request_parts):  # noqa: F811
    """What a limited run got through is in its record: ``finetune``'s finished epochs, ReMI's checks (the
    stopping rule's statistics a user reads to see how near the test was to passing)."""
    args = dict(request_parts)
    model = args.pop("model")
    config = {"epochs": 4} if method == "finetune" else {"epochs": 4, "tolerance": 1e-9, "patience": 100}
    full = unlearn(model, method=method, config=config, seed=1, **args)
    assert full.record.stop_reason.startswith("epoch budget (4) reached")
    capped = unlearn(model, method=method, config=config, seed=1, max_cost=_cost(full.record, args) * 0.6, **args)
    assert capped.record.stop_reason.startswith("work limit reached")
    rows = _timeless(capped.record.history)
    assert 0 < len(rows) < len(full.record.history) and rows == _timeless(full.record.history)[:len(rows)]
    if method == "finetune":
        assert [row["epoch"] for row in rows] == [1, 2]  # the third epoch's pass was refused midway


@pytest.mark.parametrize("max_cost", [0, -0.1, float("nan"), True])
def test_max_cost_must_be_a_positive_fraction_before_anything_runs(request_parts, max_cost):  # noqa: F811
    args = dict(request_parts)
    with pytest.raises(MiunlearnError, match="max_cost must be a positive fraction"):
        unlearn(args.pop("model"), method="remi", max_cost=max_cost, **args)


def test_max_cost_needs_the_retain_set_it_is_priced_on(request_parts):  # noqa: F811
    args = dict(request_parts)
    args.pop("retain")
    with pytest.raises(MiunlearnError, match="pass retain"):
        unlearn(args.pop("model"), method="gradient-ascent", max_cost=0.1, **args)
