"""The deployed model: the user's own class (or a registered one) and the weights file they saved.

``spec`` is a registered model name (``mlp``, ``cnn``, ...), ``package.module:Class``, or
``path/to/file.py:Class``; keyword arguments go to the class. Weights are a ``.safetensors`` file or a
``.pt``/``.pth`` state_dict, read with ``torch.load(weights_only=True)`` so no pickled code runs.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from miunlearn.data import DatasetInfo
from miunlearn.errors import MiunlearnError
from miunlearn.models import mismatch


def model_factory(spec: str, kwargs: Mapping[str, Any], info: DatasetInfo) -> Callable[[], nn.Module]:
    """A function that builds a fresh, freshly initialised model from ``spec`` (checked now, once)."""
    from miunlearn.models import MODELS, build_model

    if ":" not in spec:
        if spec not in MODELS:
            raise MiunlearnError(MODELS.unknown_message(spec) + "; or give your own class as package.module:Class "
                                 "or path/to/file.py:Class")
        unknown = set(kwargs) - {"width"}
        if unknown:
            raise MiunlearnError(f"registered model {spec!r} takes only the argument 'width', got {sorted(unknown)}")
        return lambda: build_model(spec, info, kwargs.get("width"))
    cls = _import_class(spec)

    def build() -> nn.Module:
        try:
            model = cls(**kwargs)
        except TypeError as exc:
            raise MiunlearnError(f"{spec}({_call_args(kwargs)}) failed: {exc}") from None
        if not isinstance(model, nn.Module):
            raise MiunlearnError(f"{spec} built a {type(model).__name__}, not a torch.nn.Module")
        return model

    build()  # fail here, before any work, if the class or its arguments are wrong
    return build


def _call_args(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _import_class(spec: str) -> type:
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise MiunlearnError(f"model {spec!r}: write package.module:Class or path/to/file.py:Class")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise MiunlearnError(f"model {spec!r}: file {where!r} does not exist")
        module_name = f"miunlearn_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:  # the user's file: any error it raises is theirs to see, on one line
                del sys.modules[module_name]
                raise MiunlearnError(f"importing {where} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise MiunlearnError(f"model {spec!r}: cannot import {where!r} ({exc}); is its folder on PYTHONPATH "
                                 "(or give path/to/file.py:Class)?") from None
    cls = getattr(module, name, None)
    if cls is None:
        classes = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                         and v.__module__ == module.__name__)
        raise MiunlearnError(f"model {spec!r}: {where} has no {name!r}; its nn.Module classes: "
                             f"{', '.join(classes) or 'none'}")
    return cls


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture as ``model`` with new weights, for a module handed in through the API."""
    from miunlearn.unlearning.retrain import reinitialise

    return reinitialise(copy.deepcopy(model), seed)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pt``/``.pth`` state_dict (also inside a ``state_dict`` key)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MiunlearnError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise MiunlearnError(f"{path} is not a readable .safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle and zip errors of every kind: the file is not a state_dict)
        raise MiunlearnError(f"{path} is not a state_dict torch.load(weights_only=True) can read "
                             f"({str(exc).splitlines()[0][:200]}); save it with torch.save(model.state_dict(), "
                             "path)") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MiunlearnError(f"{path} does not hold a state_dict (a mapping of names to tensors); save it with "
                             "torch.save(model.state_dict(), path)")
    return dict(state)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    problem = mismatch(model, state)
    if problem:
        raise MiunlearnError(f"{source} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state)
    return model
