"""Work counters: every unlearning record states the samples it processed, matching what the method must do."""

import copy
from dataclasses import replace

import torch
from torch.func import vmap

from miunlearn import unlearn
from miunlearn.unlearning.work import batch_size, count_work
from test_baselines import parts  # noqa: F401  (the shared tiny memorised-set fixture, as a copyable dict)
from test_unlearning import request_parts  # noqa: F401


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
