"""Executors of shadow/reference model jobs: artefacts skipped, config errors, concurrent groups and Ray equal
to one model at a time in this process."""

import io
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from rich.console import Console

from miunlearn import load_config, load_dataset
from miunlearn.audit.reference_models import prepare_reference_models
from miunlearn.audit.strong import audit_config
from miunlearn.config import ExecutorConfig, TrainConfig
from miunlearn.data import prepare_splits
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.shadows import shadow_store, train_shadows
from miunlearn.models import load_weights
from miunlearn.pipeline import validate
from miunlearn.training import executors
from miunlearn.training.executors import LocalExecutor, ModelJob, ModelSpec, build_executor, group_jobs

RECIPE = TrainConfig(epochs=3, batch_size=64, lr=0.05, progress=False, device="cpu")
TINY = ["data.subset=600", "model.width=32", "train.epochs=3", "train.progress=false", "train.device=cpu",
        "approximator.num_shadows=2"]


@pytest.fixture(scope="module")
def digits():
    config = load_config(None, TINY)
    dataset = load_dataset(config.data)
    return config, dataset, prepare_splits(dataset, config.data, config.forget)


def _spec(config, dataset):
    return ModelSpec(config.model.name, dataset.info, config.model.width)


def _jobs(config, dataset, folder, count=3):
    return [ModelJob(_spec(config, dataset), np.arange(k, 200 + k), replace(RECIPE, seed=k),
                     folder / f"m{k}.safetensors", f"model {k}") for k in range(count)]


def _weights(model):
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _same(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_jobs_with_artefacts_are_loaded_not_trained(digits, tmp_path):
    config, dataset, _ = digits
    jobs = _jobs(config, dataset, tmp_path)
    first = LocalExecutor().run(jobs, dataset.pool)
    assert (first.trained, first.loaded) == (3, 0)
    assert all(job.path.is_file() for job in jobs)
    assert not _same(first.models[0], first.models[1])  # seeds differ, so do the models

    (tmp_path / "m1.safetensors").unlink()
    again = LocalExecutor().run(jobs, dataset.pool)
    assert (again.trained, again.loaded) == (1, 2)
    assert all(_same(a, b) for a, b in zip(first.models, again.models))  # retrained m1 from its seed: the same


def test_jobs_are_grouped_by_training_set_size():
    sizes = [10, 12, 10, 10, 12]
    jobs = [ModelJob(None, np.arange(n), RECIPE, None, "") for n in sizes]
    assert group_jobs(jobs, 2) == [[0, 2], [3], [1, 4]]
    assert group_jobs(jobs, 1) == [[0], [2], [3], [1], [4]]


def _close(a, b):
    """Equal up to float numerics: concurrent training runs batched kernels that round differently."""
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.allclose(wa[k].float(), wb[k].float(), rtol=1e-4, atol=1e-5)
                                          for k in wa)


@pytest.fixture
def group_sizes(monkeypatch):
    """Records the size of every group the executors hand to the concurrent trainer."""
    sizes = []

    def spy(models, *args, **kwargs):
        sizes.append(len(models))
        return train_models_concurrently(models, *args, **kwargs)

    train_models_concurrently = executors.train_models_concurrently
    monkeypatch.setattr(executors, "train_models_concurrently", spy)
    return sizes


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_concurrent_shadow_models_equal_one_at_a_time(digits, group_sizes, model):
    config, dataset, splits = digits
    spec = ModelSpec(model, dataset.info, 8)
    shadow = dataset.pool.subset(splits.shadow)
    one = train_shadows(spec, shadow, config.train, 3, 0, build_executor(ExecutorConfig(concurrent=1)))
    assert group_sizes == []
    two = train_shadows(spec, shadow, config.train, 3, 0, build_executor(ExecutorConfig(concurrent=2)))
    assert group_sizes == [2]  # three equal-sized shadows: a pair, then one alone
    assert torch.equal(one.member, two.member) and torch.equal(one.labels, two.labels)
    assert torch.allclose(one.logits, two.logits, rtol=1e-4, atol=1e-4)


def test_concurrent_reference_models_of_unequal_sizes(digits, group_sizes, tmp_path):
    config, dataset, splits = digits
    # The vmap-ed trainer keeps the default (contiguous) memory format: compare like with like.
    config = replace(config, model=replace(config.model, name="cnn", width=8),
                     train=replace(config.train, channels_last=False))
    concurrent = LocalExecutor(ExecutorConfig(concurrent=2))
    refs = prepare_reference_models(config, dataset, splits, 4, 0, tmp_path / "two", executor=concurrent)
    # 4 references, two of them of one size (163, 187, 185, 185 samples): only those two train together.
    assert len({int(row.sum()) for row in refs.member}) == 3
    assert group_sizes == [2] and refs.trained_now == 4
    one = prepare_reference_models(config, dataset, splits, 4, 0, tmp_path / "one", executor=LocalExecutor())
    assert all(_close(a, b) for a, b in zip(one.models, refs.models))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_shadow_store_is_reused_by_a_second_run(digits, tmp_path, model):
    """Loaded shadows give the trained ones' outputs to the bit (the cnn: same channels-last placement), so a
    run's approximator does not depend on whether its shadow models came from the store."""
    config, dataset, splits = digits
    config = replace(config, model=replace(config.model, name=model, width=8),
                     executor=ExecutorConfig(cache_dir=str(tmp_path)))
    shadow = dataset.pool.subset(splits.shadow)
    store = shadow_store(config, dataset.info.num_classes, splits.shadow, shadow)
    first = train_shadows(_spec(config, dataset), shadow, config.train, 2, 0, store=store)
    second = train_shadows(_spec(config, dataset), shadow, config.train, 2, 0, store=store)
    assert (first.trained_now, second.trained_now) == (2, 0)
    assert sorted(p.name for p in store.glob("*.safetensors")) == ["shadow-00.safetensors", "shadow-01.safetensors"]
    assert torch.equal(first.logits, second.logits) and torch.equal(first.member, second.member)
    assert shadow_store(config, dataset.info.num_classes, splits.shadow, shadow) == store
    with pytest.raises(MiunlearnError, match="another pool of samples"):  # same content, other indices
        shadow_store(config, dataset.info.num_classes, splits.shadow[::-1], shadow)
    other = replace(config, train=replace(config.train, lr=0.1))
    assert shadow_store(other, dataset.info.num_classes, splits.shadow, shadow) != store


@pytest.mark.parametrize(("override", "message"), [
    ("executor.name=dask", "unknown executor 'dask'; valid: local, ray"),
    ("executor.concurrent=0", "executor.concurrent must be at least 1"),
    ("executor.gpus_per_task=-1", "must not be negative"),
    ("executor.address=auto", "only apply to executor.name=ray"),
])
def test_invalid_executor_settings_are_one_clear_error(override, message):
    with pytest.raises(MiunlearnError, match=message):
        validate(load_config(None, [override]))


def test_audit_takes_an_executor_section():
    assert audit_config(["executor.name=local", "executor.cpus_per_task=2"]).executor.cpus_per_task == 2
    with pytest.raises(MiunlearnError, match="unknown executor 'spark'"):
        audit_config(["executor.name=spark"])


def test_missing_ray_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(MiunlearnError, match=r"pip install 'miunlearn\[ray\]'"):
        build_executor(ExecutorConfig(name="ray"))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_gives_the_local_executors_models(local_ray, digits, tmp_path):
    config, dataset, splits = digits
    ray_executor = build_executor(ExecutorConfig(name="ray"))
    shadow = dataset.pool.subset(splits.shadow)
    spec = _spec(config, dataset)
    local = train_shadows(spec, shadow, config.train, 2, 0, store=tmp_path / "local")
    remote = train_shadows(spec, shadow, config.train, 2, 0, ray_executor, tmp_path / "ray")
    assert remote.trained_now == 2
    assert torch.equal(local.logits, remote.logits) and torch.equal(local.member, remote.member)

    # Reference models through the same executor: equal weights, and a second call trains nothing.
    refs = prepare_reference_models(config, dataset, splits, 2, 0, tmp_path / "refs", executor=ray_executor)
    again = prepare_reference_models(config, dataset, splits, 2, 0, tmp_path / "refs", executor=ray_executor)
    assert (refs.trained_now, again.trained_now) == (2, 0)
    local_refs = prepare_reference_models(config, dataset, splits, 2, 0, tmp_path / "local-refs",
                                          executor=LocalExecutor())
    for a, b in zip(local_refs.models, refs.models):
        assert _same(a, b)
    assert _same(load_weights(spec(), tmp_path / "ray" / "shadow-01.safetensors"),
                 load_weights(spec(), tmp_path / "local" / "shadow-01.safetensors"))

    # A concurrent group is one Ray task: both shadows in it, equal to the local ones up to float numerics.
    log = Console(record=True, file=io.StringIO())
    paired = train_shadows(spec, shadow, config.train, 2, 0, build_executor(ExecutorConfig(name="ray", concurrent=2)),
                           tmp_path / "ray-pairs", log)
    assert paired.trained_now == 2 and "submitted 1 Ray task(s) for 2 model(s)" in log.export_text()
    assert torch.allclose(local.logits, paired.logits, rtol=1e-4, atol=1e-4)

    # A user error inside a task reaches the driver as the same one-line error.
    bad = ModelJob(spec, np.arange(10), replace(RECIPE, epochs=0), tmp_path / "bad.safetensors", "bad")
    with pytest.raises(MiunlearnError, match="^train.epochs must be at least 1, got 0$"):
        ray_executor.run([bad], dataset.pool)


def test_ray_refuses_a_device_its_tasks_cannot_see(tmp_path):
    jobs = [ModelJob(None, np.arange(4), replace(RECIPE, device="cuda:1"), tmp_path / "m.safetensors", "m")]
    with pytest.raises(MiunlearnError, match="use train.device=auto or cuda"):
        build_executor(ExecutorConfig(name="ray", gpus_per_task=0.5)).train([jobs], None, None)
