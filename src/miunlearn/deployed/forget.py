"""A deletion request against a deployed model: unlearn, audit, certify, record, all or nothing.

The first request against a model creates its state folder (:mod:`miunlearn.deployed.state`) and pays
once for what every later request reuses: the held-out split, the approximator fitted on models of its own
(by default ReMI v2's per-example OUT models), and the deployed model's OUT statistics (its behaviour on
held-out rows). Each request then starts from the current weights, removes the named rows with the chosen
method, audits the result on the user's held-out audit rows, and commits new weights, a certificate and a
ledger line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console
from safetensors.torch import save_file
from scipy.stats import norm
from torch import nn

from miunlearn.audit import EvaluationSets, ModelOutputs, compare_to_retrain, evaluate_outputs
from miunlearn.audit.metrics import Metric
from miunlearn.audit.usefulness import Finding, assess
from miunlearn.config import from_dict, merge, parse_overrides, to_dict
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.deployed.config import DeploymentConfig
from miunlearn.deployed.inputs import (
    Table,
    can_read,
    check_classes,
    check_ids,
    ids_json,
    load_ids,
    load_table,
    sha256_file,
    table_from_arrays,
)
from miunlearn.deployed.model import fresh_copy, load_state, model_factory, read_state_dict
from miunlearn.deployed.state import APPROXIMATOR, CURRENT, ORIGINAL, SPLIT, StateFolder
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_write, write_json

if TYPE_CHECKING:
    from miunlearn.unlearning import UnlearningMethod

ATTACKS = ("loss", "entropy", "m-entropy")
"""Threshold attacks whose AUC (D_f vs D_audit) the certificate tests against the null of no membership."""
LEVEL = 0.05
MIN_ROLE = 10
"""Fewest held-out rows a role may get."""
SWITCHES = ("device", "progress", "channels_last", "compile")
"""``train.*`` settings that change speed or display, not results: a later request may set them."""

DataSource = str | Path | tuple | Table


@dataclass
class ForgetResult:
    """One applied request: its number, the new model, where its files are, its certificate."""

    request: int
    model: nn.Module
    weights: Path
    certificate: dict[str, Any]
    certificate_path: Path
    html_path: Path


def forget(state: str | Path, request: Any, *, model: nn.Module | str | None = None,
           model_args: dict[str, Any] | None = None, weights: str | Path | None = None,
           train: DataSource | None = None, held_out: DataSource | None = None,
           reference: DataSource | None = None, shadow: DataSource | None = None, audit: DataSource | None = None,
           method: str = "remi", settings: DeploymentConfig | dict | list[str] | None = None, retrain: bool = False,
           label_column: str | None = None, console: Console | None = None) -> ForgetResult:
    """Apply one deletion request to a deployed model kept in the state folder ``state``.

    ``request``: the user's row IDs (a list/array, or a file of them). The first request creates ``state``
    and needs ``model`` (an ``nn.Module``, a registered name, or ``package.module:Class`` /
    ``path/file.py:Class`` with ``model_args``), ``weights`` (``.safetensors``/``.pt``/``.pth``; optional
    for an ``nn.Module`` that already holds them), ``train`` (the rows the model was trained on: an ``.npz``/
    ``.csv`` file, an image folder, ``torchvision:NAME:ROOT[:train|test]`` (see :mod:`miunlearn.deployed.inputs`)
    or ``(x, y)``/``(x, y, ids)`` arrays) and held-out rows: one ``held_out`` source divided
    by ``settings.held_out``, or ``reference``, ``shadow`` and ``audit`` separately. Later requests read all
    of that from ``state`` (an ``nn.Module`` must be passed again). ``settings``: a
    :class:`DeploymentConfig`, its dict, or ``key=value`` strings. ``retrain``: also retrain from scratch on
    what remains and compare. Nothing in ``state`` changes unless the request completes.
    """
    console = console or Console(stderr=True, quiet=True)
    config, given = _settings(settings)
    from miunlearn.unlearning import build_method
    from miunlearn.unlearning.work import max_cost_problem

    problem = max_cost_problem(config.max_cost)
    if problem:
        raise MiunlearnError(problem)
    algorithm = build_method(method, config.unlearn.get(method))
    for name in config.unlearn:
        build_method(name, config.unlearn[name])
    ids = load_ids(request) if isinstance(request, (str, Path)) else check_ids(request)
    if not StateFolder.exists(state):
        _create(Path(state), ids, model, model_args or {}, weights, train, held_out, reference, shadow, audit,
                config, algorithm, label_column, console)
    elif weights is not None or model_args:
        raise MiunlearnError(f"{state} already holds a deployed model and its weights; later requests start from its "
                             "current weights (give only --request, and data files only if they moved)")
    sources = {"reference": reference, "shadow": shadow, "audit": audit} if held_out is None else dict.fromkeys(
        ("reference", "shadow", "audit"), held_out)
    with StateFolder.open(state) as folder:
        return _apply(folder, ids, model, train, sources, algorithm, config, given, retrain, label_column, console)


def _settings(settings: DeploymentConfig | dict | list[str] | None) -> tuple[DeploymentConfig, dict]:
    if isinstance(settings, DeploymentConfig):
        return settings, to_dict(settings)
    given = parse_overrides(settings) if isinstance(settings, list) else (settings or {})
    return from_dict(DeploymentConfig, given), given


# ---------------------------------------------------------------- first request: the state folder

def _table(source: DataSource, label_column: str | None, what: str) -> Table:
    if isinstance(source, Table):
        return source
    if isinstance(source, tuple):
        if len(source) not in (2, 3):
            raise MiunlearnError(f"{what}: give (x, y) or (x, y, ids) arrays, or a file")
        return table_from_arrays(*(np.asarray(a) if hasattr(a, "__len__") else a for a in source), source=what)
    return load_table(source, label_column)


def _held_out_roles(held_out: DataSource | None, reference: DataSource | None, shadow: DataSource | None,
                    audit: DataSource | None, config: DeploymentConfig,
                    label_column: str | None) -> tuple[dict[str, Table], dict[str, np.ndarray]]:
    """Held-out tables per role and, per role, the rows of its table it uses."""
    explicit = {"reference": reference, "shadow": shadow, "audit": audit}
    if held_out is None:
        missing = [role for role, source in explicit.items() if source is None]
        if missing:
            raise MiunlearnError("the first request needs held-out rows the model never saw: --held-out FILE (divided "
                                 f"by held_out.*), or --reference, --shadow and --audit files (missing: "
                                 f"{', '.join(missing)})")
        tables = {role: _table(source, label_column, f"--{role}") for role, source in explicit.items()}
        return tables, {role: np.arange(len(t)) for role, t in tables.items()}
    if any(source is not None for source in explicit.values()):
        raise MiunlearnError("give either --held-out (divided by held_out.*) or --reference/--shadow/--audit, not both")
    table = _table(held_out, label_column, "--held-out")
    shares = {"reference": 0.3, "shadow": 0.4, "audit": 0.3}
    sizes = {role: getattr(config.held_out, role) for role in shares}
    fixed = sum(v for v in sizes.values() if v is not None)
    free = sum(shares[r] for r, v in sizes.items() if v is None)
    for role, size in sizes.items():
        if size is None:
            sizes[role] = max(int((len(table) - fixed) * shares[role] / free), 0) if free else 0
    if sum(sizes.values()) > len(table):
        raise MiunlearnError(f"held_out.* ask for {sum(sizes.values())} rows but {table.source} has {len(table)}")
    order = np.random.default_rng(config.held_out.seed).permutation(len(table))
    rows, start = {}, 0
    for role in shares:
        rows[role] = np.sort(order[start:start + sizes[role]])
        start += sizes[role]
    return dict.fromkeys(shares, table), rows


def _create(path: Path, ids: np.ndarray, model: nn.Module | str | None, model_args: dict, weights: str | Path | None,
            train: DataSource | None, held_out: DataSource | None, reference: DataSource | None,
            shadow: DataSource | None, audit: DataSource | None, config: DeploymentConfig,
            algorithm: UnlearningMethod, label_column: str | None, console: Console) -> None:
    """Validate everything, fit the approximator and write the state folder (all or nothing)."""
    from miunlearn.guidance import APPROXIMATORS, approximator_problems
    from miunlearn.models import save_weights
    from miunlearn.training.loop import validate_train_config

    if model is None or train is None:
        raise MiunlearnError(f"{path} is not a state folder yet: the first request needs --model and --train "
                             "(and --weights, and held-out data)")
    validate_train_config(config.train)
    if config.approximator.num_shadows < 1:
        raise MiunlearnError("approximator.num_shadows must be at least 1")
    approximator_class = APPROXIMATORS.get(config.approximator.name)
    problems = approximator_problems(config.approximator)
    if problems:
        raise MiunlearnError(problems[0])
    train_table = _table(train, label_column, "--train")
    if len(train_table) - len(train_table.positions(ids, "request")) < 2:  # before any training: the IDs exist
        raise MiunlearnError("this request would leave fewer than 2 training rows: that is retraining from nothing")
    tables, rows = _held_out_roles(held_out, reference, shadow, audit, config, label_column)
    if train_table.classes is not None:
        for role, table in tables.items():
            check_classes(table, train_table.classes, "--held-out" if held_out is not None else f"--{role}")
    for role, idx in rows.items():
        if len(idx) < MIN_ROLE:
            raise MiunlearnError(f"the {role} role gets {len(idx)} held-out rows; it needs at least {MIN_ROLE}")
    num_classes = int(max(train_table.y.max(), *(t.y.max() for t in tables.values()))) + 1
    info = DatasetInfo("deployed", tuple(train_table.x.shape[1:]), num_classes, train_table.x.ndim == 4)
    for role, table in tables.items():
        if table.x.shape[1:] != train_table.x.shape[1:]:
            raise MiunlearnError(f"{role} rows have shape {table.x.shape[1:]}, training rows {train_table.x.shape[1:]}")
    spec, deployed, factory = _deployed_model(model, model_args, weights, info, config.seed)
    _check_outputs(deployed, train_table, tables, spec)
    problem = algorithm.model_problem(deployed)
    if problem:
        raise MiunlearnError(problem)

    console.log(f"new state folder {path}: fitting the {config.approximator.name} approximator once "
                f"({config.approximator.num_shadows} model(s) on {len(rows['shadow'])} held-out rows, "
                f"{config.train.epochs} epochs each)")
    approximator = approximator_class.fit_held_out(
        config.approximator, factory, tables["shadow"].tensors(rows["shadow"]), num_classes, len(train_table),
        config.train, config.approximator.seed_or(config.seed), console)
    console.log("measuring the deployed model on held-out rows (its OUT statistics)")
    out_stats = _out_statistics(deployed, tables["audit"].tensors(rows["audit"]), config)
    with StateFolder.create(path) as staging:
        save_weights(deployed, staging / ORIGINAL)
        save_weights(deployed, staging / CURRENT)
        approximator.save(staging / APPROXIMATOR)
        with atomic_write(staging / SPLIT, "wb") as fh:  # positions per role, and the user's IDs of those rows
            np.savez(fh, **rows, **{f"{role}_ids": tables[role].ids[idx] for role, idx in rows.items()})
        write_json(staging / "deployment.json", {
            "format": "miunlearn-state/1",
            "created": _now(),
            "model": spec,
            "num_classes": num_classes,
            "input_shape": list(info.input_shape),
            "classes": list(train_table.classes) if train_table.classes is not None else None,
            "original_weights_sha256": sha256_file(staging / ORIGINAL),
            "weights_source": {"path": str(Path(weights).resolve()) if weights else None,
                               "sha256": sha256_file(weights) if weights else None},
            "train": {"source": _source(train_table), "sha256": train_table.sha256, "rows": len(train_table),
                      "own_ids": train_table.has_own_ids},
            "held_out": {role: {"source": _source(tables[role]), "sha256": tables[role].sha256,
                                "rows": int(len(rows[role]))} for role in rows},
            "settings": {key: to_dict(getattr(config, key)) if dataclasses.is_dataclass(getattr(config, key))
                         else getattr(config, key) for key in DeploymentConfig.FIXED},
            "out_statistics": out_stats,
        })


def _source(table: Table) -> str:
    path = Path(table.source)
    return str(path.resolve()) if path.exists() else table.source


def _deployed_model(model: nn.Module | str, model_args: dict, weights: str | Path | None, info: DatasetInfo,
                    seed: int) -> tuple[dict, nn.Module, Any]:
    """The model spec to save, the deployed model with its weights, and a factory of fresh copies."""
    if isinstance(model, nn.Module):
        deployed = model
        spec = {"kind": "module", "class": f"{type(model).__module__}.{type(model).__qualname__}"}
        counter = iter(range(10**9))

        def factory() -> nn.Module:
            return fresh_copy(deployed, seed * 1000 + next(counter))
    else:
        model = _normalise_spec(model)
        factory = model_factory(model, model_args, info)
        deployed = factory()
        spec = {"kind": "spec", "spec": model, "args": model_args}
    if weights is not None:
        load_state(deployed, read_state_dict(weights), str(weights))
    elif not isinstance(model, nn.Module):
        raise MiunlearnError("the first request needs --weights FILE (.safetensors, .pt or .pth): the deployed "
                             "model's trained weights")
    deployed.eval()
    return spec, deployed, factory


def _normalise_spec(spec: str) -> str:
    """``path/file.py:Class`` with an absolute path, so later requests find the file from any folder."""
    where, _, name = spec.rpartition(":")
    return f"{Path(where).expanduser().resolve()}:{name}" if where.endswith(".py") else spec


def _check_outputs(model: nn.Module, train: Table, held_out: dict[str, Table], spec: dict) -> None:
    """One forward pass on two rows: the model takes these inputs and has an output per class."""
    try:
        with torch.no_grad():
            out = model(train.tensors(np.arange(min(2, len(train)))).x)
    except Exception as exc:  # noqa: BLE001  (the user's forward(): say what failed, in one line)
        raise MiunlearnError(f"the model cannot take the training rows (x of shape {train.x.shape[1:]}): "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if out.ndim != 2:
        raise MiunlearnError(f"the model must return (batch, classes) logits, got shape {tuple(out.shape)}")
    labels = max(int(train.y.max()), *(int(t.y.max()) for t in held_out.values())) + 1
    if out.shape[1] < labels:
        raise MiunlearnError(f"the model has {out.shape[1]} outputs but the labels go up to {labels - 1}")


def _out_statistics(model: nn.Module, audit: TensorData, config: DeploymentConfig) -> dict[str, float]:
    """The deployed model on held-out audit rows: accuracy and the moments of ``s`` (paid once)."""
    from miunlearn.statistics import logit_confidence
    from miunlearn.training import predict_logits, resolve_device

    device = resolve_device(config.train.device)
    logits = predict_logits(model.to(device), audit, device, precision=config.train.precision)
    s = logit_confidence(logits, audit.y)
    return {"heldout_acc": float((logits.argmax(1) == audit.y).double().mean()), "s_mean": float(s.mean()),
            "s_std": float(s.std()), "rows": len(audit)}


# ---------------------------------------------------------------- every request

def _apply(folder: StateFolder, ids: np.ndarray, model: nn.Module | str | None, train: DataSource | None,
           sources: dict[str, DataSource | None], algorithm: UnlearningMethod,
           config: DeploymentConfig, given: dict, retrain: bool, label_column: str | None,
           console: Console) -> ForgetResult:
    from miunlearn.guidance import load_approximator

    deployment = folder.deployment
    _check_fixed_settings(deployment, given)
    switches = {k: v for k, v in (given.get("train") or {}).items() if k in SWITCHES}
    config = from_dict(DeploymentConfig, merge(deployment["settings"], {"unlearn": config.unlearn,
                                                                        "max_cost": config.max_cost,
                                                                        "train": switches}))
    if train is None and not can_read(deployment["train"]["source"]):
        raise MiunlearnError(f"the training rows ({deployment['train']['source']}) are not a file or folder this "
                             "request can read; give them again (--train / train=)")
    train_table = _table(train if train is not None else deployment["train"]["source"], label_column, "--train")
    if deployment.get("classes") is not None:
        check_classes(train_table, deployment["classes"], "training")
    if train_table.sha256 != deployment["train"]["sha256"]:
        raise MiunlearnError(f"the training data {train_table.source} differs from the rows the state folder was made "
                             f"for (sha256 {train_table.sha256[:12]} vs {deployment['train']['sha256'][:12]})")
    positions = train_table.positions(ids, "request")
    forgotten = folder.forgotten()
    again = [i for i in ids_json(ids) if i in forgotten]
    if again:
        raise MiunlearnError(f"{len(again)} ID(s) of this request were already forgotten (ID {again[0]!r} by request "
                             f"{forgotten[again[0]]}; {folder.path / 'ledger.jsonl'}); remove them and resend")
    gone = train_table.positions(np.array(list(forgotten)), "ledger") if forgotten else np.empty(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(train_table)), np.union1d(gone, positions))
    if len(keep) < 2:
        raise MiunlearnError("this request would leave fewer than 2 training rows: that is retraining from nothing")
    roles = _load_roles(folder, deployment, sources, label_column)
    info = DatasetInfo("deployed", tuple(deployment["input_shape"]), deployment["num_classes"],
                       len(deployment["input_shape"]) == 3)
    current = _current_model(folder, model, deployment, info)
    approximator = load_approximator(folder.path / APPROXIMATOR, lambda: fresh_copy(current, 0))
    number = len(folder.ledger()) + 1
    forget_set, retain_set = train_table.tensors(positions), train_table.tensors(keep)

    from miunlearn.unlearning import unlearn

    console.log(f"request {number}: forgetting {len(ids)} row(s) with {algorithm.name} "
                f"({len(keep)} training rows remain)")
    input_hash = sha256_file(folder.path / CURRENT)
    result = unlearn(current, forget_set, retain_set, algorithm.name, algorithm.config, reference=roles["reference"],
                     approximator=approximator, recipe=config.train, seed=config.seed + number,
                     max_cost=config.max_cost)
    models = {"before": current, algorithm.name: result.model}
    seconds = {algorithm.name: result.record.seconds}
    if retrain:
        console.log(f"retraining from scratch on the {len(keep)} remaining rows (--retrain comparator)")
        comparator = unlearn(current, forget_set, retain_set, "retrain", recipe=config.train, seed=config.seed + number)
        models["retrain"], seconds["retrain"] = comparator.model, comparator.record.seconds
    console.log(f"auditing: {len(ids)} forgotten row(s) against {len(roles['audit'])} held-out audit rows")
    audit = _audit(models, algorithm.name, retain_set, forget_set, roles["audit"], config, seconds)

    with folder.stage_request() as staging:
        out = staging / "request"
        out.mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        # the same metadata as save_weights: `miunlearn run model.weights=...` reads these files too
        save_file(state, str(out / "weights.safetensors"),
                  metadata={"miunlearn": json.dumps(getattr(result.model, "miunlearn_spec", {}))})
        output_hash = sha256_file(out / "weights.safetensors")
        certificate = _certificate(number, ids, len(forgotten), result.record, audit, deployment, train_table,
                                   input_hash, output_hash, retrain)
        write_json(out / "certificate.json", certificate)
        from miunlearn.reporting.certificate import certificate_html

        with atomic_write(out / "certificate.html") as fh:
            fh.write(certificate_html(certificate))
        entry = {"request": number, "time": certificate["time"], "ids": ids_json(ids), "method": algorithm.name,
                 "settings": dataclasses.asdict(algorithm.config), "seed": config.seed + number,
                 "input_weights_sha256": input_hash, "output_weights_sha256": output_hash,
                 "verdict": certificate["verdict"]["status"], "folder": f"requests/{number:04d}"}
        folder.commit(staging, entry)
    final = folder.request_folder(number)
    console.log(f"request {number} applied: {folder.path / CURRENT}")
    return ForgetResult(number, result.model, final / "weights.safetensors",
                        certificate, final / "certificate.json", final / "certificate.html")


def _check_fixed_settings(deployment: dict, given: dict) -> None:
    """Refuse a setting the state folder fixed at creation with another value (speed switches excepted)."""
    saved = deployment["settings"]
    for section in DeploymentConfig.FIXED:
        if section not in given:
            continue
        value = given[section]
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        for key, new in pairs:
            old = saved[section] if key is None else saved[section].get(key)
            if old != new and not (section == "train" and key in SWITCHES):
                name = section if key is None else f"{section}.{key}"
                raise MiunlearnError(f"{name}={new!r} differs from the state folder's {name}={old!r}, fixed when it "
                                     f"was created; a request may change unlearn.* and train.{'/'.join(SWITCHES)}")


def _load_roles(folder: StateFolder, deployment: dict, sources: dict[str, DataSource | None],
                label_column: str | None) -> dict[str, TensorData]:
    """The held-out rows of each role (from ``sources`` where given, else the saved file), checked against the
    hashes the state folder saved."""
    roles = {}
    with np.load(folder.path / SPLIT) as split:
        for role, info in deployment["held_out"].items():
            source = sources.get(role)
            if source is None and not can_read(info["source"]):
                raise MiunlearnError(f"the {role} rows ({info['source']}) are not a file or folder this request can "
                                     "read; give them again")
            table = _table(source if source is not None else info["source"], label_column, role)
            if deployment.get("classes") is not None:
                check_classes(table, deployment["classes"], role)
            if table.sha256 != info["sha256"]:
                raise MiunlearnError(f"the {role} rows ({table.source}) differ from those the state folder was made "
                                     "with; give the original ones")
            roles[role] = table.tensors(split[role])
    return roles


def _current_model(folder: StateFolder, model: nn.Module | str | None, deployment: dict,
                   info: DatasetInfo) -> nn.Module:
    spec = deployment["model"]
    if spec["kind"] == "module":
        if not isinstance(model, nn.Module):
            raise MiunlearnError(f"this state folder was made from a {spec['class']} object through the Python API; "
                                 "pass model=<an instance of it> again")
        current = model
    else:
        if isinstance(model, str) and _normalise_spec(model) != spec["spec"]:
            raise MiunlearnError(f"--model {model!r} differs from the state folder's {spec['spec']!r}")
        current = model_factory(spec["spec"], spec["args"], info)()
    from safetensors.torch import load_file

    load_state(current, load_file(str(folder.path / CURRENT)), str(folder.path / CURRENT))
    return current.eval()


def _audit(models: dict[str, nn.Module], method: str, retain: TensorData, forget: TensorData, audit: TensorData,
           config: DeploymentConfig, seconds: dict[str, float], max_retain: int = 5000) -> dict[str, Any]:
    """Metrics of the model before and after (and retrained), attack AUCs against their thresholds, and the
    usefulness checks."""
    if len(retain) > max_retain:
        retain = retain.subset(np.sort(np.random.default_rng(0).choice(len(retain), max_retain, replace=False)))
    sets = EvaluationSets(retain, forget, audit, audit)
    outputs = {name: ModelOutputs.of(m, sets, config.train.device, config.train.precision)
               for name, m in models.items()}
    results = {name: evaluate_outputs(out, sets, [*ATTACKS, "mia-efficacy"]) for name, out in outputs.items()}
    compare_to_retrain(results, outputs, seconds)
    metrics = {name: r["metrics"] for name, r in results.items()}
    threshold = auc_threshold(len(forget), len(audit), len(ATTACKS))
    attacks = {a: {"auc_before": metrics["before"][Metric.of_attack(a, "auc")],
                   "auc": metrics[method][Metric.of_attack(a, "auc")], "threshold": threshold} for a in ATTACKS}
    for a, r in attacks.items():
        r["passed"] = r["auc"] <= threshold
        if "retrain" in metrics:
            r["auc_retrain"] = metrics["retrain"][Metric.of_attack(a, "auc")]
    judged = assess(models["before"], {method: models[method]}, retain, forget, audit, config.train.device,
                    config.train.precision)
    return {"metrics": metrics, "attacks": attacks, "power": judged["power"], "findings": judged["methods"][method],
            "n_forget": len(forget), "n_audit": len(audit), "n_retain_scored": len(retain)}


def auc_threshold(n_members: int, n_non_members: int, tests: int, level: float = LEVEL) -> float:
    """The AUC above which a threshold attack tells members from non-members (one-sided, Bonferroni over
    ``tests`` attacks), from the AUC's null variance (n1 + n2 + 1) / (12 n1 n2) (Hanley & McNeil 1982)."""
    se = math.sqrt((n_members + n_non_members + 1) / (12 * n_members * n_non_members))
    return min(1.0, 0.5 + float(norm.ppf(1 - level / tests)) * se)


def _verdict(attacks: dict, power: Finding, findings: list[Finding], trained_samples: int) -> dict[str, Any]:
    """The certificate's one status. A method that chose to take no step (``trained_samples`` 0: its stopping
    test held before the first step) and whose result no attack tells from never-seen rows is not "did
    nothing": the rows already looked unseen. It is still flagged when an attack disagrees."""
    flagged = {f.check: f for f in findings if f.flagged}
    failed = [a for a, r in attacks.items() if not r["passed"]]
    if "did-nothing" in flagged and trained_samples == 0 and not failed:
        status = "inconclusive" if power.flagged else "nothing-to-forget"
        summary = ("the model was left unchanged: the method's stopping test found the requested rows already "
                   "like never-seen rows before any step, and no audit attack tells them apart"
                   + (f"; but {power.message}" if power.flagged else ""))
    elif "did-nothing" in flagged:
        status, summary = "did-nothing", flagged["did-nothing"].message
    elif "over-forgetting" in flagged:
        status, summary = "over-forgetting", flagged["over-forgetting"].message
    elif failed:
        r = attacks[failed[0]]
        status = "not-forgotten"
        summary = (f"the forgotten rows are still distinguishable from never-seen rows: {failed[0]} attack AUC "
                   f"{r['auc']:.3f} above the threshold {r['threshold']:.3f}")
    elif power.flagged:
        status, summary = "inconclusive", power.message
    else:
        status = "forgotten"
        summary = ("no audit attack tells the forgotten rows from never-seen held-out rows (every AUC within its "
                   "threshold), the audit had the power to see the original's leakage, and accuracy on them is "
                   "that of held-out rows")
    return {"status": status, "summary": summary, "findings": [power.to_dict()] + [f.to_dict() for f in findings]}


def _certificate(number: int, ids: np.ndarray, previously: int, record: Any, audit: dict, deployment: dict,
                 train: Table, input_hash: str, output_hash: str, retrain: bool) -> dict[str, Any]:
    import miunlearn

    metrics = audit["metrics"]
    return {
        "format": "miunlearn-certificate/1",
        "request": number,
        "time": _now(),
        "verdict": _verdict(audit["attacks"], audit["power"], audit["findings"], record.samples_trained),
        "forgotten_ids": ids_json(ids),
        "count": len(ids),
        "previously_forgotten": previously,
        "method": {"name": record.method, "settings": record.config, "stop_reason": record.stop_reason,
                   "seconds": record.seconds},
        "audit": {"attacks": audit["attacks"], "level": LEVEL,
                  "threshold_rule": "0.5 + z(1 - level/attacks) * sqrt((n_f + n_audit + 1) / (12 n_f n_audit)), "
                                    "at most 1: the AUC an attack exceeds with probability level/attacks when the "
                                    "forgotten rows are as unseen as the audit rows",
                  "n_forget": audit["n_forget"], "n_audit": audit["n_audit"],
                  "n_retain_scored": audit["n_retain_scored"], "models": metrics,
                  "deployed_model_on_audit_rows": deployment["out_statistics"]},
        "retrain_comparator": ({"avg_gap": metrics[record.method].get("avg_gap"),
                                "js_to_retrain": metrics[record.method].get("js_to_retrain"),
                                "speedup": metrics[record.method].get("speedup")} if retrain else None),
        "provenance": {
            "miunlearn": miunlearn.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": _git_commit(), "model": deployment["model"],
            "train_data": {"source": train.source, "sha256": train.sha256},
            "held_out_data": {role: {"source": v["source"], "sha256": v["sha256"]}
                              for role, v in deployment["held_out"].items()},
            "input_weights_sha256": input_hash, "output_weights_sha256": output_hash,
            "original_weights_sha256": deployment["original_weights_sha256"],
        },
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    """The commit of the miunlearn source when it runs from a git checkout; ``None`` otherwise."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
