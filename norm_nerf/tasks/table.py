"""``norm-inr table``: the papers' comparison grids (methods x nets x inputs), one plain command per cell.

Cells are independent and resumable: a cell whose folder holds ``metrics.json`` is not recomputed.
``commands.txt`` lists one shell command per cell, so a scheduler can spread them (see README: Slurm
job arrays). ``--jobs N`` runs cells as parallel local processes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from norm_nerf.core import PAPER_METHODS, parse_method

TaskName = Literal["image", "ct", "mri", "shape"]

_EXP_DECAY = ["--schedule", "exp", "--min-lr-ratio", "0.1"]
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "image": {
        # exponential decay to 0.1x over the run, as in WIRE's image-fitting script that the papers compare with
        "cpu": {"nets": ("10x28",), "steps": 2000, "flags": ["--resize", "128", *_EXP_DECAY]},
        "paper": {
            "nets": ("5x20", "5x30", "10x28", "10x40", "13x49"),
            "steps": 100000,
            "flags": ["--resize", "None", *_EXP_DECAY],
        },
    },
    "ct": {
        "cpu": {"nets": ("2x128", "4x128"), "steps": 500, "flags": ["--size", "128"]},
        "paper": {
            "nets": ("2x128", "2x256", "4x128", "4x256"),
            "steps": 20000,
            "flags": ["--size", "256", "--schedule", "cosine"],
        },
    },
    "mri": {
        "cpu": {"nets": ("2x256",), "steps": 300, "flags": ["--size", "32"]},
        "paper": {"nets": ("2x256", "4x256"), "steps": 1000, "flags": ["--size", "128"]},
    },
    "shape": {
        # 4 octaves: with 10, PE aliases between the training voxels (held-out IoU 0.09 at 64^3, see README)
        "cpu": {"nets": ("2x256",), "steps": 500, "flags": ["--grid", "64", "--num-frequencies", "4"]},
        "paper": {"nets": ("2x256",), "steps": 10000, "flags": ["--grid", "128", "--num-frequencies", "4"]},
    },
}
_INPUT_FLAG = {"image": "--image", "ct": "--image", "mri": "--volume", "shape": "--mesh"}
_METRIC = {"image": "psnr", "ct": "psnr", "mri": "psnr", "shape": "iou"}


@dataclass
class TableConfig:
    """Run a comparison grid and write results.json, a markdown table and plots."""

    task: tyro.conf.Positional[TaskName]
    """Which signal task: image, ct, mri or shape."""
    methods: tuple[str, ...] = PAPER_METHODS
    """Methods to compare (default: the papers' 13)."""
    nets: tuple[str, ...] | None = None
    """Networks as DEPTHxWIDTH (default: the preset's)."""
    inputs: tuple[Path, ...] = ()
    """Input files (images, volumes, meshes); default: the task's embedded default."""
    preset: Literal["cpu", "paper"] = "cpu"
    """cpu: reduced sizes that run in minutes; paper: the papers' settings (DESIGN.md section 3)."""
    steps: int | None = None
    """Training steps per cell (default: the preset's)."""
    seed: int = 0
    """Seed of every cell."""
    jobs: int = 1
    """Cells run in parallel as local processes (threads per process = cores / jobs)."""
    out: Path = Path("outputs/table")
    """Output folder; re-running with the same folder resumes (finished cells are kept)."""
    extra: tuple[str, ...] = ()
    """Extra flags passed to every cell, e.g. --extra --schedule cosine."""
    dry_run: bool = False
    """Only write commands.txt and print the commands."""


@dataclass
class Cell:
    input: str
    net: str
    method: str
    out: Path
    command: list[str]


def parse_net(net: str) -> tuple[int, int]:
    """``"10x28"`` -> ``(10, 28)``; raises a clear ValueError otherwise."""
    try:
        depth, width = (int(v) for v in net.lower().split("x"))
    except ValueError:
        raise ValueError(f"--nets entries must look like DEPTHxWIDTH (e.g. 10x28), got {net!r}") from None
    if depth < 1 or width < 1:
        raise ValueError(f"--nets {net!r}: depth and width must be >= 1")
    return depth, width


def build_cells(cfg: TableConfig) -> list[Cell]:
    """Every (input, net, method) cell with its folder and command."""
    preset = PRESETS[cfg.task][cfg.preset]
    nets = cfg.nets or preset["nets"]
    steps = cfg.steps if cfg.steps is not None else preset["steps"]
    for m in cfg.methods:
        parse_method(m)
    for n in nets:
        parse_net(n)
    for p in cfg.inputs:
        if not Path(p).exists():
            raise FileNotFoundError(f"{p}: input does not exist")
    inputs: list[Path | None] = list(cfg.inputs) or [None]
    cells = []
    for inp in inputs:
        name = "default" if inp is None else Path(inp).stem
        for net in nets:
            depth, width = parse_net(net)
            for method in cfg.methods:
                out = cfg.out / "cells" / name / net / method.replace("+", "_")
                cmd = [sys.executable, "-m", "norm_nerf.scripts.inr", cfg.task, "--method", method]
                cmd += ["--depth", str(depth), "--width", str(width), "--steps", str(steps), "--seed", str(cfg.seed)]
                cmd += list(preset["flags"]) + list(cfg.extra)
                if inp is not None:
                    cmd += [_INPUT_FLAG[cfg.task], str(inp)]
                cmd += ["--out", str(out), "--overwrite", "--no-progress"]
                cells.append(Cell(name, net, method, out, cmd))
    return cells


def _run_cell(cell: Cell, threads: int) -> tuple[Cell, str | None]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cell.out.mkdir(parents=True, exist_ok=True)
    with open(cell.out / "log.txt", "w") as log:
        proc = subprocess.run(cell.command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    return cell, None if proc.returncode == 0 else f"exit {proc.returncode}, see {cell.out / 'log.txt'}"


def run_table(cfg: TableConfig) -> dict[str, Any]:
    """Run (or resume) the grid; returns the collected results."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    if cfg.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {cfg.jobs}")
    _claim_folder(cfg)
    cells = build_cells(cfg)
    (cfg.out / "commands.txt").write_text("\n".join(shlex.join(c.command) for c in cells) + "\n")
    todo = [c for c in cells if not (c.out / "metrics.json").is_file()]
    console.print(f"{len(cells)} cells, {len(cells) - len(todo)} already done; commands in {cfg.out / 'commands.txt'}")
    if cfg.dry_run:
        for c in todo:
            console.print(shlex.join(c.command))
        return {}
    threads = max(1, (os.cpu_count() or 1) // cfg.jobs)
    failures = []
    with Progress(console=console) as progress, ThreadPoolExecutor(cfg.jobs) as pool:
        task = progress.add_task(f"table {cfg.task}", total=len(todo))
        for cell, err in pool.map(lambda c: _run_cell(c, threads), todo):
            progress.advance(task)
            if err:
                failures.append(f"{cell.input}/{cell.net}/{cell.method}: {err}")
    results = collect(cfg, cells)
    for f in failures:
        console.print(f"[red]failed[/red] {f}")
    console.print(f"results: {cfg.out / 'results.json'}, table: {cfg.out / 'table.md'}")
    return results


def _claim_folder(cfg: TableConfig) -> None:
    marker = cfg.out / "table.json"
    if marker.is_file():
        previous = json.loads(marker.read_text()).get("task")
        if previous != cfg.task:
            raise FileExistsError(f"{cfg.out}: holds a table for task {previous!r}; choose another --out")
    elif cfg.out.exists() and any(cfg.out.iterdir()):
        raise FileExistsError(
            f"{cfg.out}: folder exists, is not empty and is not a norm-inr table; choose another --out"
        )
    cfg.out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"task": cfg.task, "preset": cfg.preset}))


def collect(cfg: TableConfig, cells: list[Cell]) -> dict[str, Any]:
    """Gather finished cells into results.json, table.md and plots."""
    metric = _METRIC[cfg.task]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for c in cells:
        path = c.out / "metrics.json"
        if path.is_file():
            rows.setdefault(c.net, {}).setdefault(c.method, []).append(json.loads(path.read_text()))
    results: dict[str, Any] = {"task": cfg.task, "preset": cfg.preset, "metric": metric, "nets": {}}
    for net, by_method in rows.items():
        results["nets"][net] = {
            m: _mean_cell(runs, metric) for m, runs in sorted(by_method.items(), key=lambda kv: _order(cfg, kv[0]))
        }
    (cfg.out / "results.json").write_text(json.dumps(results, indent=2))
    (cfg.out / "table.md").write_text(markdown_table(results))
    _plots(cfg, rows, results)
    return results


def _order(cfg: TableConfig, method: str) -> int:
    return cfg.methods.index(method) if method in cfg.methods else len(cfg.methods)


def _mean_cell(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    keys = [metric, "ssim", f"{metric}_train_mode_final", f"{metric}_best_train_mode", "bpp", "seconds"]
    out = {k: float(np.mean([r[k] for r in runs])) for k in keys if all(k in r for r in runs)}
    out.update(params=runs[0].get("params"), inputs=len(runs))
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """The papers' layout: one row per method, one eval-mode column per net (+ train-mode best for contrast)."""
    metric = results["metric"]
    nets = list(results["nets"])
    methods: list[str] = []
    for net in nets:
        methods += [m for m in results["nets"][net] if m not in methods]
    head = ["method"] + [f"{n} {metric} (eval)" for n in nets] + [f"{n} best train-mode" for n in nets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        vals = []
        for key in (metric, f"{metric}_best_train_mode"):
            for n in nets:
                v = results["nets"][n].get(m, {}).get(key)
                vals.append("—" if v is None else (f"{v:.4f}" if metric == "iou" else f"{v:.2f}"))
        lines.append("| " + " | ".join([m, *vals]) + " |")
    note = f"\n{metric} (eval): final model, eval mode, running statistics recalibrated; mean over inputs.\n"
    return "\n".join(lines) + "\n" + note


def _plots(cfg: TableConfig, rows: dict[str, dict[str, list[dict[str, Any]]]], results: dict[str, Any]) -> None:
    from norm_nerf.eval.plots import save_curves, save_rate_distortion

    metric = results["metric"]
    label = f"train-mode {metric}"
    for net, by_method in rows.items():
        curves = {
            m: (runs[0]["curve"]["step"], runs[0]["curve"][f"train_mode_{metric}"]) for m, runs in by_method.items()
        }
        save_curves(curves, cfg.out / f"curves_{net}.png", ylabel=label)
    if cfg.task == "image":
        points: dict[str, list[tuple[float, float]]] = {}
        for by_method in results["nets"].values():
            for m, r in by_method.items():
                if "bpp" in r:
                    points.setdefault(m, []).append((r["bpp"], r[metric]))
        save_rate_distortion(points, cfg.out / "rate_distortion.png")
