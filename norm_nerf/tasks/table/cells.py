"""The cells of a table: one (input, net, method, seed) run each, with its folder and the plain command that fills
it (the tasks' own runner, ``python -m norm_nerf.tasks <task> <flags>``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from norm_nerf.core import parse_method
from norm_nerf.tasks.run import TASKS
from norm_nerf.tasks.table.config import TableConfig, parse_net, preset, table_steps

CELL_RUNNER = ("-m", "norm_nerf.tasks")
"""How a cell's command starts (after the Python executable): the tasks' runner, ``norm_nerf/tasks/__main__.py``."""
# Flags the table sets per cell; --extra may not set them (the table has its own option, or they are per cell).
_MANAGED = {
    "--method": "--methods", "--depth": "--nets", "--width": "--nets", "--steps": "--steps", "--seed": "--seeds",
    "--out": "--out", "--overwrite": "--overwrite", "--no-overwrite": "--overwrite", "--progress": None,
    "--no-progress": None, **{f"--{task.input_field}": "--inputs" for task in TASKS.values()},
}  # fmt: skip


@dataclass
class Cell:
    """One (input, net, method) run: its folder and the plain command that fills it."""

    input: str
    """Cell name of the input (its file stem, or "default")."""
    net: str
    """Network as DEPTHxWIDTH."""
    method: str
    """Method name."""
    out: Path
    """The cell's folder (OUT/cells/INPUT/NET/METHOD)."""
    command: list[str]
    """The command that runs the cell."""
    input_path: Path | None = None
    """Absolute path of the input (None: the task's default)."""
    seed: int = 0
    """Seed of the run."""
    seeded: bool = False
    """Whether the table runs several seeds (the seed is then part of the cell's name and folder)."""
    steps: int | None = None
    """Steps of this cell when they differ from the table's (the half-steps cells of --check-halving)."""

    @property
    def name(self) -> str:
        """``input/net/method`` (``/seedS`` with several seeds), as the cell is named in messages."""
        name = f"{self.input}/{self.net}/{self.method}"
        name = f"{name}/seed{self.seed}" if self.seeded else name
        return f"{name}/half" if self.steps is not None else name

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What a cell and its half-steps twin share."""
        return self.input, self.net, self.method, self.seed


def build_cells(cfg: TableConfig) -> list[Cell]:
    """Every (input, net, method) cell with its folder and command."""
    nets = cfg.nets or preset(cfg).nets
    if not cfg.methods:
        raise ValueError("--methods is empty; name at least one method, e.g. relu pe+cn")
    if not nets:
        raise ValueError("--nets is empty; name at least one DEPTHxWIDTH, e.g. 10x28")
    for m in cfg.methods:
        parse_method(m)
    for n in nets:
        parse_net(n)
    _refuse_repeats("--methods", cfg.methods, lambda m: m.replace("+", "_"))
    _refuse_repeats("--nets", nets, lambda n: n.lower())
    if not cfg.seeds:
        raise ValueError("--seeds is empty; name at least one seed, e.g. 0 1 2")
    _refuse_repeats("--seeds", cfg.seeds, lambda s: s)
    for p in cfg.inputs:
        if not Path(p).exists():
            raise FileNotFoundError(f"{p}: input does not exist")
    _refuse_repeats("--inputs", [str(p) for p in cfg.inputs], lambda p: Path(p).stem)
    check_extra(cfg.extra)
    inputs: list[Path | None] = [Path(p).resolve() for p in cfg.inputs] or [None]
    seeded = len(cfg.seeds) > 1
    cells = []
    for inp in inputs:
        name = "default" if inp is None else inp.stem
        for net in nets:
            depth, width = parse_net(net)
            for method in cfg.methods:
                for seed in cfg.seeds:
                    for half in (False, True) if cfg.check_halving else (False,):
                        folder = "cells_half" if half else "cells"
                        out = cfg.out / folder / name / net / method.replace("+", "_")
                        out = out / f"seed{seed}" if seeded else out
                        steps = max(1, table_steps(cfg) // 2) if half else None
                        args = cell_args(cfg, method, depth, width, inp, seed, steps)
                        cmd = [sys.executable, *CELL_RUNNER, *args, "--out", str(out), "--overwrite", "--no-progress"]
                        cells.append(Cell(name, net, method, out, cmd, inp, seed, seeded, steps))
    return cells


def cell_args(
    cfg: TableConfig,
    method: str | None,
    depth: int | None,
    width: int | None,
    inp: Path | None,
    seed: int | None,
    steps: int | None = None,
) -> list:
    """The task's arguments of one cell (without where it writes); None leaves a per-cell flag out (``steps``: the
    table's)."""
    steps = steps if steps is not None else table_steps(cfg)
    args = [cfg.task]
    if method is not None:
        args += ["--method", method, "--depth", str(depth), "--width", str(width)]
    args += [
        "--steps",
        str(steps),
        *(["--seed", str(seed)] if seed is not None else []),
        *preset(cfg).flags,
        *cfg.extra,
    ]
    if inp is not None:
        args += [f"--{TASKS[cfg.task].input_field}", str(inp)]
    return args


def _refuse_repeats(option: str, values: Any, key: Any) -> None:
    seen: dict[str, str] = {}
    for v in values:
        if key(v) in seen:
            same = "is listed twice" if seen[key(v)] == v else f"and {seen[key(v)]!r} name the same cell folder"
            raise ValueError(f"{option}: {v!r} {same}; list each once")
        seen[key(v)] = v


def check_extra(extra: tuple[str, ...]) -> None:
    for token in extra:
        flag = token.split("=", 1)[0].replace("_", "-")
        if flag in _MANAGED:
            own = _MANAGED[flag]
            hint = f"use the table's own {own}" if own else "the table sets it for every cell"
            raise ValueError(f"--extra {token}: {flag} is set per cell by norm-inr table; {hint}")
