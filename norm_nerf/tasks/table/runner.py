"""Running (or resuming) a table in its folder: lock, plan, run, collect."""

from __future__ import annotations

import json
import shlex
from typing import Any

from norm_nerf.tasks.processes import LOCK_NAME, exit_on_sigterm, lock_folder
from norm_nerf.tasks.table.cells import Cell, build_cells
from norm_nerf.tasks.table.collect import collect
from norm_nerf.tasks.table.config import TableConfig
from norm_nerf.tasks.table.resume import expected_configs, plan_cells
from norm_nerf.tasks.table.running import run_cells
from norm_nerf.utils.atomic import write_bytes_atomically
from norm_nerf.utils.console import CONSOLE
from norm_nerf.utils.jsonio import write_json


class CellsFailedError(ValueError):
    """Some cells of a table failed; a ValueError so that ``norm-inr`` reports it in one line and exits non-zero."""


def run_table(cfg: TableConfig) -> dict[str, Any]:
    """Run (or resume) the grid; returns the collected results.

    The folder is locked for the run (:func:`norm_nerf.tasks.processes.lock_folder`): a second table on it is refused
    naming the first one's PID. SIGTERM, Ctrl-C or a ``kill -9`` of the table ends its running cells."""
    if cfg.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {cfg.jobs}")
    cells = build_cells(cfg)
    expected = expected_configs(cfg, cells)  # refuses bad --extra flags before the folder is made
    _refuse_foreign_folder(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    with lock_folder(cfg.out) as lock, exit_on_sigterm():
        _mark_folder(cfg)
        return _run_locked(cfg, cells, expected, lock)


def _run_locked(cfg: TableConfig, cells: list[Cell], expected: dict[str, Any], lock: int | None) -> dict[str, Any]:
    """:func:`run_table` once the folder is claimed and locked."""
    plan = plan_cells(cfg, cells, expected)
    if plan.stale and not cfg.overwrite:
        cell, why = plan.stale[0]
        more = f" (and {len(plan.stale) - 1} more cells)" if len(plan.stale) > 1 else ""
        raise FileExistsError(
            f"{cell.out}: cell {cell.name} finished with other settings than this run's: {why}{more}; "
            "pass --overwrite to re-run such cells (their results are replaced) or choose another --out"
        )
    commands = "\n".join(shlex.join(c.command) for c in cells) + "\n"
    write_bytes_atomically(cfg.out / "commands.txt", commands.encode())
    rerun = f", {len(plan.stale)} re-run for other settings (--overwrite)" if plan.stale else ""
    CONSOLE.print(f"{len(cells)} cells, {len(plan.done)} already done{rerun}; commands in {cfg.out / 'commands.txt'}")
    for cell, why in plan.stale:
        CONSOLE.print(f"re-running {cell.name}: {why}")
    if cfg.dry_run:
        for c in plan.todo:
            CONSOLE.print(shlex.join(c.command))
        return {}
    for cell, _ in plan.stale:  # a failed re-run must not leave the old result to be collected
        (cell.out / "metrics.json").unlink()
    failures = run_cells(cfg, plan.todo, lock)
    results = collect(cfg, cells, failures)
    for f in failures:
        CONSOLE.print(f"[red]failed[/red] {f['cell']}: {f['error']} (log: {f['log']})")
    CONSOLE.print(f"results: {cfg.out / 'results.json'}, table: {cfg.out / 'table.md'}")
    if failures:
        first = failures[0]
        raise CellsFailedError(
            f"{cfg.out}: {len(failures)} of {len(cells)} cells failed, first {first['cell']}: {first['error']}; "
            "all are listed in table.md and results.json, each cell's log.txt in its folder"
        )
    return results


def _refuse_foreign_folder(cfg: TableConfig) -> None:
    """A non-empty ``--out`` must hold a table (its table.json, or the lock of a table that is starting)."""
    out = cfg.out
    if not out.exists() or (out / "table.json").is_file() or (out / LOCK_NAME).is_file() or not any(out.iterdir()):
        return
    raise FileExistsError(f"{out}: folder exists, is not empty and is not a norm-inr table; choose another --out")


def _mark_folder(cfg: TableConfig) -> None:
    """Refuse a table of another task; mark the folder as this task's table (table.json)."""
    marker = cfg.out / "table.json"
    if marker.is_file():
        previous = json.loads(marker.read_text()).get("task")
        if previous != cfg.task:
            raise FileExistsError(f"{cfg.out}: holds a table for task {previous!r}; choose another --out")
    write_json(marker, {"task": cfg.task, "preset": cfg.preset})
