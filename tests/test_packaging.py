"""Packaging: subpackage mapping, light core import, every package listed in pyproject."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_scripts_and_method_configs_live_under_norm_nerf() -> None:
    import norm_nerf.method_configs
    import norm_nerf.scripts

    assert Path(norm_nerf.scripts.__file__).parent == REPO / "scripts"
    assert Path(norm_nerf.method_configs.__file__).parent == REPO / "method_configs"


def test_core_does_not_import_nerfstudio() -> None:
    code = "import sys, norm_nerf.core; print([m for m in ('nerfstudio', 'open3d', 'tinycudann') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_package_is_listed_in_pyproject() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    missing = found - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
