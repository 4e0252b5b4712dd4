"""Install-beside checks: `pip install` of this package into an environment that already holds a supported torch
(+ torchvision + nerfstudio) must leave them in place.

Run from anywhere (any Python >= 3.10 with pip; needs the package registries)::

    python tests/install_check.py                      # the repository this file lives in
    python tests/install_check.py --project /some/clone --mode metadata
    python tests/install_check.py --check all          # also: constraints.txt pins all a fresh install gets (CI)
    python tests/install_check.py --check guide --guide-env .venv-guide   # nerfstudio's install guide, real wheels

``--check guide`` builds (or reuses) the environment nerfstudio 1.1.5's installation guide makes, with the real
wheels: ``pip install --upgrade pip``, ``pip install torch==2.1.2 torchvision==0.16.2`` (the guide's recommended
pair; the registry serves their CUDA 12.1 builds, which run on the CPU too), ``pip install nerfstudio==1.1.5``
(which resolves tyro 1.0.x and numpy 1.26.x). It then installs this project into it editable with ``[dev]``, as a
user's pip would (the machine's pip configuration, e.g. a cap on torch, is not applied to that step), and fails
when any package already there would change version or disappear: the install may only add packages. Last,
``ns-train norm-mipnerf --help`` must work there. CI then runs the quick test suite in that environment
(``.ci/run``). About 2.5 minutes and 7.5 GB the first time; a later run reuses the environment when it still holds
the guide's versions and reinstalls only the project.

``--check beside`` (the default):

1. creates a fresh virtual environment in a temporary folder;
2. puts the "user's nerfstudio environment" into it: torch 2.13.0, torchvision 0.28.0 (the release that requires
   torch==2.13.0) and nerfstudio 1.1.5 — older than the pins in constraints.txt, inside pyproject's ranges.
   ``--mode real`` installs those wheels (``--no-deps``); ``--mode metadata`` writes only their ``*.dist-info``,
   with the metadata the registry serves for them (which is all pip's resolver reads of an installed package), so no
   ~1 GB CUDA torch wheel is downloaded. ``auto`` (default): ``real`` when the torch wheel is a local file (a
   find-links folder), else ``metadata``;
3. resolves ``pip install --dry-run --report`` of the project into that environment and fails (exit 1) when
   torch, torchvision or nerfstudio are in the install list, i.e. would be replaced.

``--check lock`` resolves ``pip install -c constraints.txt ".[dev]"`` into an empty environment,
as bin/_env.sh does on a fresh machine, and fails when that would install a version constraints.txt does not pin
(e.g. a new dependency's dependencies), so the two README commands stay reproducible.

``--check all`` runs beside, lock and, with ``--guide-env``, guide. Beside and lock take about a minute each (a
resolve fetches metadata for nerfstudio's ~150 dependencies). Exit 0: passed; 1: failed; 2: a check itself could not
run (e.g. no registry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXISTING = {"torch": "2.13.0", "torchvision": "0.28.0", "nerfstudio": "1.1.5"}
"""The user's environment: a supported torch older than constraints.txt's, its torchvision, nerfstudio 1.1.x."""
KEPT = ("torch", "torchvision", "nerfstudio")
METADATA_FIELDS = ("metadata_version", "name", "version", "summary", "requires_python", "requires_dist",
                   "provides_extra")  # fmt: skip


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pip(python: Path, *args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(python), "-m", "pip", *args]
    if quiet:
        cmd.insert(3, "--quiet")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{tail}")
    return result


def resolve_existing(python: Path, workdir: Path) -> list[dict]:
    """The registry's candidates for EXISTING (metadata only: a dry run, no wheels downloaded where PEP 658 applies)."""
    report = workdir / "existing.json"
    reqs = [f"{name}=={version}" for name, version in EXISTING.items()]
    pip(python, "install", "--dry-run", "--no-deps", "--ignore-installed", "--report", str(report), *reqs)
    return json.loads(report.read_text())["install"]


def metadata_text(meta: dict) -> str:
    """Core metadata (email header form) from the JSON form of pip's installation report."""
    lines = []
    for key in METADATA_FIELDS:
        if key not in meta:
            continue
        field = "-".join(part.capitalize() for part in key.split("_"))
        for value in meta[key] if isinstance(meta[key], list) else [meta[key]]:
            lines.append(f"{field}: {value}")
    return "\n".join(lines) + "\n\n"


def write_dist_info(site: Path, meta: dict) -> Path:
    """An installed-package record pip's resolver reads: ``<name>-<version>.dist-info/{METADATA,INSTALLER,RECORD}``."""
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(metadata_text(meta))
    (info / "INSTALLER").write_text("norm-nerf install_check (metadata only)\n")
    (info / "RECORD").write_text("")
    return info


def read_pins(constraints: Path) -> dict[str, str]:
    pins = {}
    for raw in constraints.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name.strip())] = version.strip()
    return pins


def fresh_env(workdir: Path, name: str) -> Path:
    """A new virtual environment under ``workdir``; returns its python."""
    env = workdir / name
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    return env / "bin" / "python"


def check_lock(project: Path, workdir: Path) -> int:
    """A fresh resolve of ``-c constraints.txt ".[dev]"`` installs only pinned versions."""
    start = time.perf_counter()
    python = fresh_env(workdir, "lock-env")
    constraints = project / "constraints.txt"
    report = workdir / "lock.json"
    pip(python, "install", "--dry-run", "--report", str(report), "-c", str(constraints), f"{project}[dev]")
    install = {canonical(c["metadata"]["name"]): c["metadata"]["version"]
               for c in json.loads(report.read_text())["install"]}  # fmt: skip
    pins = read_pins(constraints)
    unpinned = sorted(n for n in install if n not in pins and n != "norm-nerf")
    print(f"lock: a fresh `pip install -c constraints.txt '.[dev]'` would install {len(install)} packages "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    if unpinned:
        print("FAIL: not pinned in constraints.txt (regenerate it, see its header): "
              + ", ".join(f"{n}=={install[n]}" for n in unpinned))  # fmt: skip
        return 1
    print("OK: every package it installs is pinned in constraints.txt")
    return 0


def check_beside(project: Path, mode: str, workdir: Path) -> int:
    """Installing ``project`` into an environment with torch/torchvision/nerfstudio keeps them."""
    start = time.perf_counter()
    python = fresh_env(workdir, "env")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    candidates = resolve_existing(python, workdir)
    urls = {canonical(c["metadata"]["name"]): c["download_info"]["url"] for c in candidates}
    if mode == "auto":
        mode = "real" if urls.get("torch", "").startswith("file:") else "metadata"
    if mode == "real":
        pip(python, "install", "--no-deps", *urls.values())
    else:
        for cand in candidates:
            write_dist_info(site, cand["metadata"])
    listed = json.loads(pip(python, "list", "--format", "json", quiet=False).stdout)
    before = {canonical(p["name"]): p["version"] for p in listed}
    print(f"environment ({mode}): " + ", ".join(f"{n} {before.get(n, 'MISSING')}" for n in KEPT))
    if any(n not in before for n in KEPT):
        print("the check could not set up its environment", file=sys.stderr)
        return 2

    report = workdir / "install.json"
    t0 = time.perf_counter()
    pip(python, "install", "--dry-run", "--report", str(report), str(project.resolve()))
    resolve_s = time.perf_counter() - t0
    install = {canonical(c["metadata"]["name"]): c["metadata"]["version"]
               for c in json.loads(report.read_text())["install"]}  # fmt: skip
    replaced = {n: install[n] for n in KEPT if n in install}
    print(f"`pip install {project}` would install {len(install)} packages "
          f"(norm-nerf {install.get('norm-nerf', 'NOT LISTED')}; resolve {resolve_s:.0f} s)")  # fmt: skip
    if "norm-nerf" not in install:
        print("norm-nerf is not in the install list: the check did not resolve the project", file=sys.stderr)
        return 2
    if replaced:
        print("FAIL: would replace " + ", ".join(f"{n} {before[n]} -> {v}" for n, v in replaced.items()))
        return 1
    print("OK: keeps " + ", ".join(f"{n} {before[n]}" for n in KEPT) + f" ({time.perf_counter() - start:.0f} s)")
    return 0


GUIDE_STEPS = (("torch==2.1.2", "torchvision==0.16.2"), ("nerfstudio==1.1.5",))
"""nerfstudio 1.1.5's installation guide, after ``pip install --upgrade pip``: its recommended torch pair, then
nerfstudio (tinycudann, built against that torch, needs CUDA and is left out)."""
GUIDE_EXPECT = {"torch": "2.1.2", "torchvision": "0.16.2", "triton": "2.1.0", "nerfstudio": "1.1.5", "tyro": "1.0."}
"""What the guide's environment must hold (a version prefix), so that the check tests what users have."""


def freeze(python: Path) -> dict[str, str]:
    """name -> version of every package in the environment of ``python`` (editable installs included)."""
    listed = json.loads(pip(python, "list", "--format", "json", quiet=False).stdout)
    return {canonical(p["name"]): p["version"] for p in listed}


def guide_env(path: Path) -> Path:
    """The guide's environment at ``path``, built anew unless every package the build gave (recorded in
    ``guide-freeze.json`` there) still has its version; returns its python."""
    python, record = path / "bin" / "python", path / "guide-freeze.json"
    if python.exists() and record.exists():
        now = freeze(python)
        if all(now.get(n) == v for n, v in json.loads(record.read_text()).items()):
            print(f"guide environment: reusing {path}")
            return python
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip(python, "install", "--upgrade", "pip")
    for step in GUIDE_STEPS:
        pip(python, "install", *step)
    record.write_text(json.dumps(freeze(python), indent=1))
    print(f"guide environment: built {path} in {time.perf_counter() - start:.0f} s")
    return python


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def check_guide(project: Path, path: Path) -> int:
    """Installing ``project`` into nerfstudio's guide environment only adds packages; ``ns-train`` then lists ours."""
    python = guide_env(path)
    before, mb_before = freeze(python), folder_mb(path)
    wrong = {n: before.get(n, "MISSING") for n, v in GUIDE_EXPECT.items() if not before.get(n, "").startswith(v)}
    if wrong:
        print(f"the guide's install did not give the expected versions: {wrong}", file=sys.stderr)
        return 2
    print("guide environment: " + ", ".join(f"{n} {before[n]}" for n in (*GUIDE_EXPECT, "numpy", "matplotlib")))
    # As a user's pip: none of this machine's pip configuration (a cap on torch, say) takes part in the resolve.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    start = time.perf_counter()
    cmd = [str(python), "-m", "pip", "install", "--quiet", "-e", f"{project}[dev]"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        print(f"`{' '.join(cmd)}` failed:\n{result.stderr[-3000:]}", file=sys.stderr)
        return 2
    seconds, after = time.perf_counter() - start, freeze(python)
    changed = {n: f"{v} -> {after.get(n, 'removed')}" for n, v in before.items() if after.get(n) != v}
    added = sorted(f"{n}=={after[n]}" for n in after if n not in before)
    print(f"`pip install -e '{project}[dev]'`: {seconds:.0f} s, {folder_mb(path) - mb_before:+.0f} MB, "
          f"added {len(added)}: {', '.join(added)}")  # fmt: skip
    if changed:
        print("FAIL: the install changed " + ", ".join(f"{n} {c}" for n, c in sorted(changed.items())))
        return 1
    help_run = subprocess.run(
        [str(path / "bin" / "ns-train"), "norm-mipnerf", "--help"], capture_output=True, text=True
    )
    if help_run.returncode != 0 or "norm-mipnerf" not in help_run.stdout:
        print(f"FAIL: ns-train norm-mipnerf --help in {path}:\n{(help_run.stderr or help_run.stdout)[-2000:]}")
        return 1
    print(f"OK: changed no package already there ({len(before)}); ns-train norm-mipnerf --help works")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=REPO, help="the project to install (default: this repository)")
    parser.add_argument("--mode", choices=("auto", "real", "metadata"), default="auto")
    parser.add_argument("--check", choices=("beside", "lock", "guide", "all"), default="beside")
    parser.add_argument("--guide-env", type=Path, help="where the guide's environment lives (built when missing)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary environments and reports")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="norm-nerf-install-check-"))
    try:
        results = []
        if args.check in ("beside", "all"):
            results.append(check_beside(args.project.resolve(), args.mode, workdir))
        if args.check in ("lock", "all"):
            results.append(check_lock(args.project.resolve(), workdir))
        if args.check == "guide" or (args.check == "all" and args.guide_env):
            results.append(check_guide(args.project.resolve(), (args.guide_env or workdir / "guide").resolve()))
        return max(results)
    except RuntimeError as err:
        print(f"the check could not run: {err}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
