"""``miunlearn config show``: the default configuration as YAML, each setting's documentation as a comment.

The documentation is the attribute docstring under each dataclass field in :mod:`miunlearn.config` (and
:mod:`miunlearn.deployed.config` for ``miunlearn forget``), read from the source, so it cannot drift.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from functools import cache
from typing import Any

import yaml

from miunlearn.errors import MiunlearnError


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal right below it in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _sections() -> dict[str, Any]:
    from miunlearn.config import RunConfig
    from miunlearn.deployed.config import DeploymentConfig

    run = RunConfig()
    return {f.name: getattr(run, f.name) for f in dataclasses.fields(run)} | {"forget": DeploymentConfig()}


def _pick(section: str | None) -> dict[str, Any]:
    sections = _sections()
    if section is None:
        sections.pop("forget")
        return sections | {"miunlearn forget": None}
    if section not in sections:
        raise MiunlearnError(f"unknown config section {section!r}; valid: {', '.join(sections)}")
    return {section: sections[section]}


def config_defaults(section: str | None = None) -> dict[str, Any]:
    """The defaults as plain data (``--json``)."""
    return {name: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            for name, value in _pick(section).items() if value is not None}


def config_yaml(section: str | None = None, width: int = 100) -> str:
    from miunlearn.config import RunConfig

    top = field_docs(RunConfig)
    lines: list[str] = []
    for name, value in _pick(section).items():
        if value is None:  # the pointer to the forget settings in the full listing
            lines.append("# `miunlearn forget` has its own settings: miunlearn config show --section forget")
            continue
        lines += _render(name, value, 0, width, None if dataclasses.is_dataclass(value) else top.get(name))
    return "\n".join(lines) + "\n"


def _render(name: str, value: Any, depth: int, width: int, doc: str | None = None) -> list[str]:
    pad = "  " * depth
    out = [f"{pad}# {line}" for line in textwrap.wrap(doc, width - len(pad) - 2)] if doc else []
    if dataclasses.is_dataclass(value):
        cls_doc = inspect.getdoc(type(value))
        if cls_doc and depth == 0 and not cls_doc.startswith(type(value).__name__ + "("):
            out += [f"{pad}# {line}" for line in textwrap.wrap(" ".join(cls_doc.split()), width - len(pad) - 2)]
        out.append(f"{pad}{name}:")
        docs = field_docs(type(value))
        for f in dataclasses.fields(value):
            out += _render(f.name, getattr(value, f.name), depth + 1, width, docs.get(f.name))
        return out
    text = yaml.safe_dump({name: value}, default_flow_style=True, width=10_000).strip()
    out.append(f"{pad}{text[1:-1] if text.startswith('{') else text}")
    return out
