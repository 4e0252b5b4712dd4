"""Running a table's cells as local processes, ``--jobs`` at a time, and recording the ones that fail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from norm_nerf.tasks.processes import Command, run_commands, usable_cores
from norm_nerf.tasks.table.cells import Cell
from norm_nerf.tasks.table.config import TableConfig
from norm_nerf.utils.console import progress


def _cell_failure(cell: Cell, returncode: int) -> dict[str, Any] | None:
    """The failure record of an ended cell (None: it finished and wrote its metrics.json)."""
    if returncode == 0 and (cell.out / "metrics.json").is_file():
        return None
    return failure_record(cell, returncode, cell.out / "log.txt")


def run_cells(cfg: TableConfig, todo: list[Cell], lock: int | None) -> list[dict[str, Any]]:
    """Run the cells as local processes, ``--jobs`` at a time, each writing its log.txt; returns the failures in
    cell order. The cells hold the folder's lock with the table and end with it (:mod:`norm_nerf.tasks.processes`)."""
    threads = max(1, usable_cores() // cfg.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    failures: dict[int, dict[str, Any]] = {}
    with progress() as bar:
        task = bar.add_task(f"table {cfg.task}", total=len(todo))

        def done(index: int, returncode: int) -> None:
            bar.advance(task)
            failure = _cell_failure(todo[index], returncode)
            if failure:
                failures[index] = failure

        commands = [Command(c.command, c.out / "log.txt", env) for c in todo]
        run_commands(commands, cfg.jobs, done, keep_fds=() if lock is None else (lock,))
    return [failures[i] for i in sorted(failures)]


def failure_record(cell: Cell, returncode: int, log_path: Path) -> dict[str, Any]:
    """A failed cell for the output: its name, folder, exit status and the last lines of its log."""
    try:
        lines = [ln.rstrip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    tail = lines[-5:]
    if returncode == 0:
        error = "exited 0 but wrote no metrics.json"
    else:
        error = f"exit {returncode}: " + (tail[-1].strip() if tail else "(empty log)")
    return {"cell": cell.name, "folder": str(cell.out), "error": error, "log": str(log_path), "log_tail": tail}
