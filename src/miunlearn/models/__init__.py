"""Model architectures (a registry) and weight files that know which architecture they belong to."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from miunlearn.data import DatasetInfo
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry

#: A model factory takes the dataset's description and an optional width and returns a fresh model.
MODELS: Registry[Callable[[DatasetInfo, int | None], nn.Module]] = Registry("model")


@MODELS.register("mlp")
def mlp(info: DatasetInfo, width: int | None = None) -> nn.Module:
    """Two hidden layers: the tabular/digits workhorse of the membership-inference literature."""
    width = width or 256
    in_features = int(torch.tensor(info.input_shape).prod())
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, info.num_classes))


@MODELS.register("cnn")
def cnn(info: DatasetInfo, width: int | None = None) -> nn.Module:
    """Three conv blocks (conv-BN-ReLU-pool) and a linear head: fast enough to train on CPU."""
    _require_image(info, "cnn")
    w = width or 32
    channels = [info.input_shape[0], w, 2 * w, 4 * w]
    blocks: list[nn.Module] = []
    for c_in, c_out in zip(channels, channels[1:]):
        blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, ceil_mode=True)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], info.num_classes))


@MODELS.register("resnet18")
def resnet18(info: DatasetInfo, width: int | None = None) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool."""
    _require_image(info, "resnet18")
    model = torchvision.models.resnet18(num_classes=info.num_classes)
    model.conv1 = nn.Conv2d(info.input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@MODELS.register("vgg11_bn")
def vgg11_bn(info: DatasetInfo, width: int | None = None) -> nn.Module:
    """torchvision's VGG-11-BN features with the CIFAR head: global pool and one linear layer.

    Pooling rounds up so 28-px inputs (Fashion-MNIST) survive the five halvings as well as 32-px ones.
    """
    _require_image(info, "vgg11_bn")
    model = torchvision.models.vgg11_bn(num_classes=info.num_classes)
    first = model.features[0]
    model.features[0] = nn.Conv2d(info.input_shape[0], first.out_channels, 3, padding=1)
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, info.num_classes)
    return model


def _require_image(info: DatasetInfo, name: str) -> None:
    if not info.is_image:
        raise MiunlearnError(f"model {name!r} needs image data; dataset {info.name!r} is tabular (use model.name=mlp)")


def build_model(name: str, info: DatasetInfo, width: int | None = None) -> nn.Module:
    """A fresh model; the architecture's identity is kept on it for weight files."""
    if width is not None and width < 1:
        raise MiunlearnError(f"model.width must be at least 1 (or unset for the model's default), got {width}")
    model = MODELS.get(name)(info, width)
    model.miunlearn_spec = {"model": name, "width": width, "input_shape": list(info.input_shape),
                            "num_classes": info.num_classes}
    return model


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s weights as safetensors, atomically, with its architecture in the metadata."""
    from miunlearn.io import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"miunlearn": json.dumps(getattr(model, "miunlearn_spec", {}))}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights into ``model``, refusing a file made for another architecture or class count."""
    path = Path(path)
    if not path.is_file():
        raise MiunlearnError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            saved_spec = json.loads((fh.metadata() or {}).get("miunlearn", "{}"))
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MiunlearnError(f"{path} is not a readable .safetensors weights file ({exc})") from None
    spec = getattr(model, "miunlearn_spec", {})
    if not isinstance(saved_spec, dict):
        raise MiunlearnError(f"{path} is not a readable .safetensors weights file (bad miunlearn metadata)")
    differing = [key for key in ("model", "num_classes", "input_shape", "width")
                 if saved_spec and spec and saved_spec.get(key) != spec.get(key)]
    if differing:
        what = ", ".join(f"{key}: {saved_spec.get(key)!r} there, {spec.get(key)!r} here" for key in differing)
        raise MiunlearnError(f"{path} holds weights for {_describe(saved_spec)}, but this run builds "
                             f"{_describe(spec)}; they differ in {what}")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:
        raise MiunlearnError(f"{path} holds NaN or infinite weights (in {', '.join(not_finite[:3])})")
    problem = mismatch(model, state)
    if problem:
        name = spec.get("model", type(model).__name__)
        raise MiunlearnError(f"{path} does not fit model {name!r}: {problem}")
    model.load_state_dict(state)
    return model


SHOWN = 5
"""How many missing, unexpected or mis-shaped keys a mismatch error lists."""


def mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``model``: missing and unexpected keys and differing shapes,
    the first :data:`SHOWN` of each with their shapes; ``None`` if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    for label, keys, describe in (
            ("missing from the file", missing, lambda k: f"{k} {tuple(own[k].shape)}"),
            ("unexpected in the file", unexpected, lambda k: f"{k} {tuple(state[k].shape)}"),
            ("different shapes", shapes, lambda k: f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}")):
        if keys:
            more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
            parts.append(f"{len(keys)} {label}: " + ", ".join(describe(k) for k in keys[:SHOWN]) + more)
    return "; ".join(parts) or None


def _describe(spec: dict) -> str:
    shape = tuple(spec.get("input_shape", ()))
    return f"model {spec.get('model')!r} with {spec.get('num_classes')} classes and input {shape}"
