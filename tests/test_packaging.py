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


# --- dependency ranges (pyproject.toml) vs the known-good set (constraints.txt) -----------------------------------

NO_EXACT_PIN = ("torch", "torchvision", "nerfstudio")
"""Pinned exactly, `pip install` into a user's nerfstudio environment would replace its torch (issue 16)."""


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements(extras: tuple[str, ...] = ("dev",)) -> list:
    from packaging.requirements import Requirement

    project = _project()
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def _constraints() -> dict[str, str]:
    """name -> pinned version of every line in constraints.txt (each must be one exact `==` pin)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for number, raw in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt:{number}: not an exact pin: {raw!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt:{number}: {req.name} pinned twice"
        pins[name] = specs[0].version
    return pins


def test_no_exact_pin_on_torch_torchvision_nerfstudio() -> None:
    from packaging.utils import canonicalize_name

    for req in _requirements(tuple(_project()["optional-dependencies"])):
        if canonicalize_name(req.name) in NO_EXACT_PIN:
            exact = [str(s) for s in req.specifier if s.operator in ("==", "===")]
            assert not exact, f"pyproject.toml: {req} pins exactly; state a range (exact pins go to constraints.txt)"
            assert req.specifier, f"pyproject.toml: {req.name} has no range at all"


def test_constraints_pin_every_dependency_inside_its_range() -> None:
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = _constraints()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt has no pin for {req.name} (regenerate it: see its header)"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}"
        )


def test_env_sh_installs_with_the_constraints_and_stamps_both_files() -> None:
    env_sh = (REPO / "bin" / "_env.sh").read_text()
    want = next(line for line in env_sh.splitlines() if line.startswith("WANT="))
    assert "pyproject.toml" in want and "constraints.txt" in want, want
    installs = [line for line in env_sh.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all('-c "$ROOT/constraints.txt"' in line for line in installs), installs


def test_license_file_matches_pyproject() -> None:
    assert _project()["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text[:200] and "Version 2.0, January 2004" in text[:200]
    assert "END OF TERMS AND CONDITIONS" in text


# --- LPIPS weights: bin/_env.sh checks for the file torchvision loads -----------------------------------------------


def _env_sh_function(name: str) -> str:
    lines = (REPO / "bin" / "_env.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}()"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start : end + 1])


def test_env_sh_lpips_path_is_torchvisions(monkeypatch, tmp_path) -> None:
    import os
    from urllib.parse import urlparse

    import torch
    from torchvision.models import AlexNet_Weights

    # What torchvision loads for AlexNet(weights=IMAGENET1K_V1), i.e. torchmetrics' LPIPS.
    name = Path(urlparse(AlexNet_Weights.IMAGENET1K_V1.url).path).name
    script = _env_sh_function("norm_nerf_lpips_weights_path") + "\nnorm_nerf_lpips_weights_path"
    home = str(tmp_path / "home")
    cases = [
        {"TORCH_HOME": str(tmp_path / "th"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": home},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": home},
        {"HOME": home},
        {"TORCH_HOME": "~/th", "HOME": home},
        {"XDG_CACHE_HOME": "~/xdg", "HOME": home},
    ]
    for case in cases:
        for key in ("TORCH_HOME", "XDG_CACHE_HOME", "HOME"):
            if key in case:
                monkeypatch.setenv(key, case[key])
            else:
                monkeypatch.delenv(key, raising=False)
        out = subprocess.run(["bash", "-c", script], env=dict(os.environ), capture_output=True, text=True, check=True)
        assert Path(out.stdout.strip()) == Path(torch.hub.get_dir()) / "checkpoints" / name, case
