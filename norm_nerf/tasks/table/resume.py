"""Resuming a table: which finished cells to keep, which to run, and which were made with other settings (each cell's
``metrics.json`` records the config it ran with)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from norm_nerf.tasks.common import flat_settings
from norm_nerf.tasks.run import TASKS, parse_task
from norm_nerf.tasks.table.cells import Cell, cell_args
from norm_nerf.tasks.table.config import TableConfig, parse_net
from norm_nerf.utils.console import notice
from norm_nerf.utils.jsonio import jsonable

# Recorded config fields that say where and how a cell wrote, not what it computed.
_NOT_SETTINGS = ("out", "overwrite", "progress")


@dataclass
class Plan:
    """What a run does with each cell of the grid."""

    done: list[Cell] = field(default_factory=list)
    """Finished with the same settings: kept."""
    todo: list[Cell] = field(default_factory=list)
    """To run (never finished, unreadable metrics.json, or --overwrite of other settings)."""
    stale: list[tuple[Cell, str]] = field(default_factory=list)
    """Finished with other settings: the cell and what differs."""


def expected_configs(cfg: TableConfig, cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """The config each cell's command parses to (as metrics.json records it), by cell name.

    The flags shared by all cells are parsed once with the cells' own parser (:func:`norm_nerf.tasks.run.parse_task`),
    which also refuses bad --extra flags before any cell runs; the per-cell fields are then filled in."""
    args = cell_args(cfg, None, None, None, None, None) + ["--no-progress"]
    refused = f"--extra {shlex.join(cfg.extra)}: norm-inr {cfg.task} refuses the cells' flags"
    try:
        shared, unknown = parse_task(args, prog="norm-inr", return_unknown_args=True)
    except SystemExit:  # a bad value: the task's parser has printed which flag and why
        raise ValueError(f"{refused} (see the message above and norm-inr {cfg.task} --help)") from None
    if unknown:
        raise ValueError(f"{refused} (unknown options: {shlex.join(unknown)}); see norm-inr {cfg.task} --help")
    field_name = TASKS[cfg.task].input_field
    configs = {}
    for c in cells:
        depth, width = parse_net(c.net)
        per_cell = {"method": c.method, "depth": depth, "width": width, "seed": c.seed, field_name: c.input_path}
        one = shared.replace(**per_cell, **({"steps": c.steps} if c.steps is not None else {}))
        configs[c.name] = jsonable(dataclasses.asdict(one))
    return configs


def _recorded_config(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The config a finished cell ran with (a folder of images records it per image)."""
    if isinstance(metrics.get("config"), dict):
        return metrics["config"]
    per_image = metrics.get("per_image")
    if isinstance(per_image, dict) and per_image:
        first = next(iter(per_image.values()))
        if isinstance(first, dict) and isinstance(first.get("config"), dict):
            return first["config"]
    return None


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_show(v) for v in value) or "()"
    return str(value)


def config_differences(recorded: dict[str, Any], expected: dict[str, Any], path_fields: tuple[str, ...] = ()) -> list:
    """``["--steps 3 -> 5", ...]``: the settings in which a finished cell differs from this run's.

    Both configs are compared option by option (:func:`norm_nerf.tasks.common.flat_settings`: the nested network
    and training configs by their flag names, so a flat record of an older ``norm-inr`` compares too). Where, and
    how verbosely, the cell wrote is no setting; a field the cell's record lacks (added to the task since) is not
    compared. Path fields compare as resolved paths."""
    recorded, expected = flat_settings(recorded), flat_settings(expected)
    diffs = []
    for key, new in expected.items():
        if key in _NOT_SETTINGS or key not in recorded:
            continue
        old = recorded[key]
        same = old == new
        if not same and key in path_fields and old is not None and new is not None:
            same = Path(old).resolve() == Path(new).resolve()
        if not same:
            diffs.append(f"--{key.replace('_', '-')} {_show(old)} -> {_show(new)}")
    return diffs


def plan_cells(cfg: TableConfig, cells: list[Cell], expected: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Sort the grid into kept, to-run and stale cells (finished with other settings; to run with --overwrite)."""
    expected = expected if expected is not None else expected_configs(cfg, cells)
    path_fields = (TASKS[cfg.task].input_field,)
    plan = Plan()
    for c in cells:
        path = c.out / "metrics.json"
        if not path.is_file():
            plan.todo.append(c)
            continue
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # a cell killed while writing it: no result to keep
            notice(f"{path}: unreadable ({err}); the cell runs again")
            plan.todo.append(c)
            continue
        recorded = _recorded_config(metrics) if isinstance(metrics, dict) else None
        if recorded is None:
            plan.stale.append((c, "its metrics.json records no settings (made by an older norm-inr)"))
            continue
        diffs = config_differences(recorded, expected[c.name], path_fields)
        if diffs:
            plan.stale.append((c, ", ".join(diffs)))
        else:
            plan.done.append(c)
    if plan.stale and cfg.overwrite:
        plan.todo += [c for c, _ in plan.stale]
    return plan
