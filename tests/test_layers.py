"""Imports point down the layers: utils -> core -> data -> eval -> tasks -> analysis -> ns -> scripts.

An AST walk over every module of the package, including imports inside functions (lazy imports of our own modules
hid cycles before). A module may import its own sub-package and any lower layer; the top layer (CLIs, method
configs) may import anything. ``analysis`` sits above ``tasks`` because it trains with the task trainer
(docs/design.md section 4).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {
    "norm_nerf": ROOT / "norm_nerf",
    "norm_nerf.scripts": ROOT / "scripts",
    "norm_nerf.method_configs": ROOT / "method_configs",
}
LAYERS: dict[str, int] = {
    "norm_nerf": 0,  # the package root: __init__ and utilities
    "norm_nerf.utils": 0,
    "norm_nerf.core": 1,
    "norm_nerf.data": 2,
    "norm_nerf.eval": 3,
    "norm_nerf.tasks": 4,
    "norm_nerf.analysis": 5,
    "norm_nerf.ns": 6,
    "norm_nerf.scripts": 7,
    "norm_nerf.method_configs": 7,
}
TOP = max(LAYERS.values())


def layer_of(module: str) -> tuple[str, int]:
    """The layer package of ``module`` (longest matching prefix) and its rank."""
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)
    return best, LAYERS[best]


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of our own package in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names if f"{name}.{a.name}" in MODULES]
    return [(line, name) for line, name in out if name == "norm_nerf" or name.startswith("norm_nerf.")]


def violations() -> list[str]:
    """Every import that points up or sideways, as ``file:line: a -> b``."""
    bad = []
    for module, path in sorted(modules().items()):
        own, rank = layer_of(module)
        if rank == TOP:
            continue
        for line, target in imported(module, path):
            other, other_rank = layer_of(target)
            if other == own or other_rank < rank:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {own} -> {target}")
    return bad


def test_every_module_has_a_layer() -> None:
    mods = modules()
    assert "norm_nerf.core.norms" in mods and "norm_nerf.scripts.inr" in mods
    for module in mods:
        layer_of(module)  # raises on a package without a layer


def test_no_import_points_up_or_sideways() -> None:
    bad = violations()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        ("norm_nerf.core.norms", "norm_nerf.ns.fields", False),
        ("norm_nerf.tasks.table", "norm_nerf.analysis.ntk", False),
        ("norm_nerf.analysis.freq", "norm_nerf.tasks.trainer", True),
        ("norm_nerf.utils.cli", "norm_nerf.core.norms", False),
        ("norm_nerf.eval.dtu", "norm_nerf.data.cameras", True),
        ("norm_nerf.ns.mesh", "norm_nerf.ns.runs", True),
    ],
)
def test_the_rule_itself(source: str, target: str, ok: bool) -> None:
    own, rank = layer_of(source)
    other, other_rank = layer_of(target)
    assert (other == own or other_rank < rank) is ok


def test_every_package_is_installed() -> None:
    """A sub-package missing from pyproject's ``packages`` works in the editable checkout and breaks installs."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
