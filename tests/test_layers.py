"""The package's layers, checked on the import graph: the audit never sees what guided the unlearner."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str) -> set[str]:
    """miunlearn modules that ``module`` imports (at any depth of its own file, lazy imports included)."""
    path = _module_file(module)
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("miunlearn.") and _module_file(m)}


def _closure(root: str) -> set[str]:
    """Every miunlearn module reachable from ``root``'s package, skipping the top-level ``miunlearn`` facade."""
    seen, todo = set(), [root]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        parents = {".".join(parts[:i]) for i in range(2, len(parts))}  # importing a.b.c runs a.b's __init__
        todo.extend((_imports(module) | parents) - seen)
    return seen


def _package_modules(package: str) -> list[str]:
    folder = SRC / Path(*package.split("."))
    return [package] + [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


@pytest.mark.parametrize("module", _package_modules("miunlearn.audit"))
def test_audit_never_imports_guidance_or_unlearning(module):
    reached = _closure(module)
    bad = sorted(m for m in reached if m.startswith(("miunlearn.guidance", "miunlearn.unlearning")))
    assert not bad, f"{module} reaches {bad}"


def test_import_walk_sees_a_known_edge():
    """The walk itself works: ReMI's module does reach the guidance package."""
    assert any(m.startswith("miunlearn.guidance") for m in _closure("miunlearn.unlearning.base"))
