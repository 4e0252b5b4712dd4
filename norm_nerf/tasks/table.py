"""``norm-inr table``: the papers' comparison grids (methods x nets x inputs), one plain command per cell.

A cell's command is the tasks' own runner, ``python -m norm_nerf.tasks <task> <flags>`` (:mod:`norm_nerf.tasks.run`),
so the library never calls a CLI of the layer above.

Cells are independent and resumable: a cell whose folder holds ``metrics.json`` made with the same settings is
not recomputed. Each cell's ``metrics.json`` records the full config it ran with (written by the cell itself, so
cells run elsewhere from ``commands.txt`` are checked too); a finished cell whose recorded config differs from
what this run would use is refused, naming the cell and the differences, unless ``--overwrite`` re-runs it.
``commands.txt`` lists one shell command per cell, so a scheduler can spread them (see README: Slurm
job arrays). ``--jobs N`` runs cells as parallel local processes. Failed cells are listed (cell and the end of its
log) on the console, in ``table.md`` and in ``results.json`` under ``failed``, and make the command fail.

One table at a time per folder: a run holds ``<out>/.table.lock`` (``flock``; the kernel drops it when the holders
die), and a second run on the folder is refused naming the first one's PID. The cells end with their table, on
Ctrl-C, SIGTERM and (on Linux) ``kill -9`` alike (:mod:`norm_nerf.tasks.processes`), so no orphaned cell trains on
and rewrites its ``metrics.json`` under a later run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from norm_nerf.core import PAPER_METHODS, parse_method
from norm_nerf.eval.plots import save_curves, save_rate_distortion
from norm_nerf.tasks.common import flat_settings
from norm_nerf.tasks.processes import LOCK_NAME, Command, exit_on_sigterm, lock_folder, run_commands, usable_cores
from norm_nerf.tasks.run import TASKS, parse_task
from norm_nerf.tasks.settled import SETTLED_RULE, finite, settled_orderings, settled_text
from norm_nerf.tasks.trainer import CONVERGENCE_RULE, CONVERGENCE_THRESHOLD
from norm_nerf.utils.atomic import write_bytes_atomically
from norm_nerf.utils.cli import split_commas
from norm_nerf.utils.console import CONSOLE, notice, progress
from norm_nerf.utils.jsonio import jsonable, write_json

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
        # 64^2 with 25 angles keeps the papers' ratio of measurements to unknowns (100 angles at 256^2: about 0.5);
        # 8000 cosine-decayed steps, 1-4 min per cell on one thread (docs/signal_tasks.md: budget sweeps)
        "cpu": {"nets": ("2x128",), "steps": 8000, "flags": ["--size", "64", "--angles", "25", "--schedule", "cosine"]},
        "paper": {
            "nets": ("2x128", "2x256", "4x128", "4x256"),
            "steps": 20000,
            "flags": ["--size", "256", "--schedule", "cosine"],
        },
    },
    "mri": {
        # 16^3 (25 % of the k-space lines): 2000 cosine-decayed steps, about 1-2 min per cell on one thread
        "cpu": {"nets": ("2x256",), "steps": 2000, "flags": ["--size", "16", "--schedule", "cosine"]},
        "paper": {"nets": ("2x256", "4x256"), "steps": 1000, "flags": ["--size", "128"]},
    },
    "shape": {
        # 4 octaves: with 10, PE aliases between the training voxels (held-out IoU 0.09 at 64^3, see README);
        # 4000 cosine-decayed steps of 2048 points: PE gains 0.0001 IoU from 2000 (docs/signal_tasks.md: budget sweeps)
        "cpu": {
            "nets": ("2x256",),
            "steps": 4000,
            "flags": ["--grid", "64", "--num-frequencies", "4", "--batch-size", "2048"],
        },
        "paper": {"nets": ("2x256",), "steps": 10000, "flags": ["--grid", "128", "--num-frequencies", "4"]},
    },
}
_METRIC = {"image": "psnr", "ct": "psnr", "mri": "psnr", "shape": "iou"}
SECOND_METRIC = {"shape": ("iou_train_grid", "IoU on the training grid")}
"""A task's second metric and its column title: averaged as the first, shown beside it, not used for convergence or
the settled orderings (shape: the papers' protocol, the fitted occupancy scored on the grid it was fitted to; the
first metric, IoU on the held-out grid, is what a fit that aliases between the training voxels cannot pass)."""
# Flags the table sets per cell; --extra may not set them (the table has its own option, or they are per cell).
_MANAGED = {
    "--method": "--methods", "--depth": "--nets", "--width": "--nets", "--steps": "--steps", "--seed": "--seeds",
    "--out": "--out", "--overwrite": "--overwrite", "--no-overwrite": "--overwrite", "--progress": None,
    "--no-progress": None, "--image": "--inputs", "--volume": "--inputs", "--mesh": "--inputs",
}  # fmt: skip
# Recorded config fields that say where and how a cell wrote, not what it computed.
_NOT_SETTINGS = ("out", "overwrite", "progress")
CELL_RUNNER = ("-m", "norm_nerf.tasks")
"""How a cell's command starts (after the Python executable): the tasks' runner, ``norm_nerf/tasks/__main__.py``."""
MEANS = (
    "arithmetic mean over a cell's inputs of the values in their metrics.json, per seed; then mean and sample std over "
    "the seeds (a null value makes the mean null)"
)
"""How ``results.json`` averages, as it states it."""


def _input_flag(task: str) -> str:
    """The flag that names a task's input file (``--image``, ``--volume``, ``--mesh``)."""
    return f"--{TASKS[task].input_field}"


class CellsFailedError(ValueError):
    """Some cells of a table failed; a ValueError so that ``norm-inr`` reports it in one line and exits non-zero."""


@dataclass
class TableConfig:
    """Run a comparison grid and write results.json, a markdown table and plots."""

    task: tyro.conf.Positional[TaskName]
    """Which signal task: image, ct, mri or shape."""
    methods: tuple[str, ...] = PAPER_METHODS
    """Methods to compare, space- or comma-separated (default: the papers' 13)."""
    nets: tuple[str, ...] | None = None
    """Networks as DEPTHxWIDTH, space- or comma-separated (default: the preset's)."""
    inputs: tuple[Path, ...] = ()
    """Input files (images, volumes, meshes); default: the task's embedded default."""
    preset: Literal["cpu", "paper"] = "cpu"
    """cpu: reduced sizes that run in minutes; paper: the papers' settings (docs/design.md section 3)."""
    steps: int | None = None
    """Training steps per cell (default: the preset's)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds (network initialisation and draws); several give mean ± std over seeds per cell (--seeds 0 1 2)."""
    check_halving: bool = False
    """Also run every cell with half the steps and flag cells whose metric changed (gained, or lost) more than the
    convergence threshold from half to all steps (a decaying learning rate flattens every curve's end, so the last-10%
    rule alone cannot tell a converged run from a stopped one)."""
    jobs: int = 1
    """Cells run in parallel as local processes (threads per process = usable cores / jobs; under ``taskset`` or a
    cgroup CPU set, the cores it allows)."""
    out: Path = Path("outputs/table")
    """Output folder; re-running with the same folder resumes (finished cells with the same settings are kept)."""
    extra: tuple[str, ...] = ()
    """Extra flags for every cell, in one quoted word: --extra "--schedule cosine --lr 0.01" (or --extra=--lr=0.01)."""
    overwrite: bool = False
    """Re-run finished cells whose recorded settings differ from this run's (without it such cells are refused)."""
    dry_run: bool = False
    """Only write commands.txt and print the commands."""

    def __post_init__(self) -> None:
        # README and habit write lists with commas (--methods relu,pe+cn); the CLI takes words; accept both.
        self.methods = split_commas(self.methods)
        if self.nets is not None:
            self.nets = split_commas(self.nets)
        # --extra "--schedule cosine": one quoted word per option (argparse takes a word that starts with "--" and
        # holds a space as a value); split it into the cell's flags.
        self.extra = tuple(token for word in self.extra for token in _split_words("--extra", word))


def join_extra_words(argv: list[str]) -> list[str]:
    """``--extra WORD [WORD ...]`` rewritten as ``--extra=WORD WORD``, so that every tyro nerfstudio accepts parses it.

    tyro 0.9 (argparse) takes a word that starts with ``--`` and holds a space as a value; tyro 1.x reads it as an
    unknown option. Words after ``--extra`` are taken as argparse takes them: up to the first word that starts with
    ``-`` and holds no space."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        out.append(argv[i])
        i += 1
        if out[-1] != "--extra":
            continue
        words = []
        while i < len(argv) and (" " in argv[i] or not argv[i].startswith("-")):
            words.append(argv[i])
            i += 1
        if words:
            out[-1] = "--extra=" + " ".join(words)
    return out


def _split_words(option: str, word: str) -> list[str]:
    try:
        return shlex.split(word)
    except ValueError as err:  # an unmatched quote
        raise ValueError(f"{option} {word!r}: {err}") from None


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


@dataclass
class Plan:
    """What a run does with each cell of the grid."""

    done: list[Cell] = field(default_factory=list)
    """Finished with the same settings: kept."""
    todo: list[Cell] = field(default_factory=list)
    """To run (never finished, unreadable metrics.json, or --overwrite of other settings)."""
    stale: list[tuple[Cell, str]] = field(default_factory=list)
    """Finished with other settings: the cell and what differs."""


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
    _check_extra(cfg.extra)
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
                        steps = max(1, _table_steps(cfg) // 2) if half else None
                        args = _cell_args(cfg, method, depth, width, inp, seed, steps)
                        cmd = [sys.executable, *CELL_RUNNER, *args, "--out", str(out), "--overwrite", "--no-progress"]
                        cells.append(Cell(name, net, method, out, cmd, inp, seed, seeded, steps))
    return cells


def _table_steps(cfg: TableConfig) -> int:
    """Training steps of the table's cells (--steps, else the preset's)."""
    return cfg.steps if cfg.steps is not None else PRESETS[cfg.task][cfg.preset]["steps"]


def _cell_args(
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
    preset = PRESETS[cfg.task][cfg.preset]
    steps = steps if steps is not None else _table_steps(cfg)
    args = [cfg.task]
    if method is not None:
        args += ["--method", method, "--depth", str(depth), "--width", str(width)]
    args += ["--steps", str(steps), *(["--seed", str(seed)] if seed is not None else []), *preset["flags"], *cfg.extra]
    if inp is not None:
        args += [_input_flag(cfg.task), str(inp)]
    return args


def _refuse_repeats(option: str, values: Any, key: Any) -> None:
    seen: dict[str, str] = {}
    for v in values:
        if key(v) in seen:
            same = "is listed twice" if seen[key(v)] == v else f"and {seen[key(v)]!r} name the same cell folder"
            raise ValueError(f"{option}: {v!r} {same}; list each once")
        seen[key(v)] = v


def _check_extra(extra: tuple[str, ...]) -> None:
    for token in extra:
        flag = token.split("=", 1)[0].replace("_", "-")
        if flag in _MANAGED:
            own = _MANAGED[flag]
            hint = f"use the table's own {own}" if own else "the table sets it for every cell"
            raise ValueError(f"--extra {token}: {flag} is set per cell by norm-inr table; {hint}")


def _expected_configs(cfg: TableConfig, cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """The config each cell's command parses to (as metrics.json records it), by cell name.

    The flags shared by all cells are parsed once with the cells' own parser (:func:`norm_nerf.tasks.run.parse_task`),
    which also refuses bad --extra flags before any cell runs; the per-cell fields are then filled in."""
    args = _cell_args(cfg, None, None, None, None, None) + ["--no-progress"]
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
    expected = expected if expected is not None else _expected_configs(cfg, cells)
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


def _cell_failure(cell: Cell, returncode: int) -> dict[str, Any] | None:
    """The failure record of an ended cell (None: it finished and wrote its metrics.json)."""
    if returncode == 0 and (cell.out / "metrics.json").is_file():
        return None
    return failure_record(cell, returncode, cell.out / "log.txt")


def _run_cells(cfg: TableConfig, todo: list[Cell], lock: int | None) -> list[dict[str, Any]]:
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


def run_table(cfg: TableConfig) -> dict[str, Any]:
    """Run (or resume) the grid; returns the collected results.

    The folder is locked for the run (:func:`norm_nerf.tasks.processes.lock_folder`): a second table on it is refused
    naming the first one's PID. SIGTERM, Ctrl-C or a ``kill -9`` of the table ends its running cells."""
    if cfg.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {cfg.jobs}")
    cells = build_cells(cfg)
    expected = _expected_configs(cfg, cells)  # refuses bad --extra flags before the folder is made
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
    failures = _run_cells(cfg, plan.todo, lock)
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


def collect(cfg: TableConfig, cells: list[Cell], failures: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Gather finished cells (and the failed ones) into results.json, table.md and plots."""
    metric = _METRIC[cfg.task]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    unconverged = []
    halves = {c.key: _read_metrics(c) for c in cells if c.steps is not None}
    threshold = CONVERGENCE_THRESHOLD.get(metric)
    for c in cells:
        record = _read_metrics(c) if c.steps is None else None
        if record is None:
            continue
        record["_seed"] = c.seed
        half = halves.get(c.key)
        if half is not None and threshold is not None:
            gain = record[metric] - half[metric]
            # two-sided: a cell that lost more than the threshold from more steps has not settled either
            record["convergence"] = {**(record.get("convergence") or {}), "gain_from_half_steps": gain,
                                     "converged_from_half_steps": bool(abs(gain) < threshold)}  # fmt: skip
        rows.setdefault(c.net, {}).setdefault(c.method, []).append(record)
        if _converged(record) is False:
            unconverged.append(c.name)
    results: dict[str, Any] = {"task": cfg.task, "preset": cfg.preset, "metric": metric, "means": MEANS, "nets": {}}
    if cfg.task in SECOND_METRIC:
        results["second_metric"], results["second_metric_title"] = SECOND_METRIC[cfg.task]
    for net, by_method in rows.items():
        results["nets"][net] = {
            m: _mean_cell(runs, metric) for m, runs in sorted(by_method.items(), key=lambda kv: _order(cfg, kv[0]))
        }
    results["cells"] = len(cells)
    results["seeds"] = list(cfg.seeds)
    rule = f"{CONVERGENCE_RULE} ({metric}: {CONVERGENCE_THRESHOLD.get(metric)})"
    if cfg.check_halving:
        rule += "; and the change from half the steps to all steps, gain or loss, below the same threshold"
    results["convergence_rule"] = rule
    results["not_converged"] = unconverged
    if threshold is not None:
        results["settled_rule"] = SETTLED_RULE
        results["settled"] = {n: settled_orderings(c, metric, threshold) for n, c in results["nets"].items()}
    results["failed"] = list(failures)
    write_json(cfg.out / "results.json", results)
    write_bytes_atomically(cfg.out / "table.md", markdown_table(results).encode())
    if rows:
        _plots(cfg, rows, results)
    return results


def _order(cfg: TableConfig, method: str) -> int:
    return cfg.methods.index(method) if method in cfg.methods else len(cfg.methods)


def _read_metrics(cell: Cell) -> dict[str, Any] | None:
    path = cell.out / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _converged(record: dict[str, Any]) -> bool | None:
    """A finished cell's convergence verdict: the last-10% rule and, with --check-halving, the half-steps gain (None:
    not recorded, or a folder of images with mixed verdicts)."""
    convergence = record.get("convergence") or {}
    if convergence.get("converged_from_half_steps") is False:
        return False
    verdict = convergence.get("converged")
    if verdict is None and isinstance(record.get("per_image"), dict):
        verdicts = [(r.get("convergence") or {}).get("converged") for r in record["per_image"].values()]
        verdict = all(verdicts) if verdicts and None not in verdicts else None
    return verdict


def _mean_cell(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Means over a cell's inputs for each seed, then mean (and, with several seeds, std) over the seeds."""
    keys = [metric, "ssim", f"{metric}_train_mode_final", f"{metric}_best_train_mode", "bpp", "seconds"]
    keys += [name for name, _ in SECOND_METRIC.values()]
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r.get("_seed", 0), []).append(r)
    out: dict[str, Any] = {}
    for k in keys:
        if all(k in r for r in runs):
            per_seed = [_mean([r[k] for r in group]) for group in by_seed.values()]
            out[k] = _mean(per_seed)
            if len(per_seed) > 1:
                out[f"{k}_std"] = float(np.std(per_seed, ddof=1))
    gains = [(r.get("convergence") or {}).get("gain_from_half_steps") for r in runs]
    if gains and None not in gains:
        out["gain_from_half_steps"] = _mean(gains)
    verdicts = [_converged(r) for r in runs]
    out.update(params=runs[0].get("params"), inputs=len(runs) // len(by_seed), seeds=len(by_seed))
    out["converged"] = None if None in verdicts else all(verdicts)
    return out


def _mean(values: list[Any]) -> float:
    """The mean of recorded values; a null (a non-finite number, by the JSON policy) makes it NaN (null again)."""
    return float(np.mean([math.nan if v is None else float(v) for v in values]))


def _digits(metric: str) -> int:
    return 4 if metric == "iou" else 2


def _signed(gain: Any, metric: str) -> str:
    """A gain with its sign, ``—`` when unknown; a value that rounds to zero reads +0.00, not -0.00."""
    if not finite(gain):
        return "—"
    return f"{round(gain, _digits(metric)) + 0.0:+.{_digits(metric)}f}"


def _cell_text(value: Any, metric: str, std: Any = None, converged: bool | None = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    spec = f".{_digits(metric)}f"
    text = format(value, spec) + (f" ± {format(std, spec)}" if std is not None and math.isfinite(std) else "")
    return text + ("" if converged is not False else " †")


def markdown_table(results: dict[str, Any]) -> str:
    """The papers' layout: one row per method, one eval-mode column per net (+ train-mode best for contrast)."""
    metric = results["metric"]
    nets = list(results["nets"])
    methods: list[str] = []
    for net in nets:
        methods += [m for m in results["nets"][net] if m not in methods]
    gains = any("gain_from_half_steps" in c for n in nets for c in results["nets"][n].values())
    second = results.get("second_metric")
    head = ["method"] + [f"{n} {metric} (eval)" for n in nets]
    head += [f"{n} {results.get('second_metric_title', second)}" for n in nets] if second else []
    head += [f"{n} best train-mode" for n in nets]
    head += [f"{n} gain from half the steps" for n in nets] if gains else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        vals = []
        for key in (metric, *([second] if second else []), f"{metric}_best_train_mode"):
            for n in nets:
                cell = results["nets"][n].get(m, {})
                converged = cell.get("converged", True) if key == metric else True
                vals.append(_cell_text(cell.get(key), metric, cell.get(f"{key}_std"), converged))
        for n in nets if gains else ():
            gain = results["nets"][n].get(m, {}).get("gain_from_half_steps")
            vals.append(_signed(gain, metric))
        lines.append("| " + " | ".join([m, *vals]) + " |")
    seeds = results.get("seeds") or [0]
    over = f"mean over inputs, then mean ± std over seeds {seeds}" if len(seeds) > 1 else "mean over inputs"
    note = f"\n{metric} (eval): final model, eval mode, running statistics recalibrated; {over}.\n"
    if second:
        note += f"{results.get('second_metric_title', second)} (`{second}`): the same final model; not used for † or "
        note += "the settled orderings.\n"
    if results.get("not_converged"):
        note += f"\n† not converged: {results.get('convergence_rule')} fails for {len(results['not_converged'])} "
        note += "run(s): " + ", ".join(f"`{c}`" for c in results["not_converged"]) + ".\n"
    note += settled_text(results["nets"], results.get("settled") or {}, metric)
    text = "\n".join(lines) + "\n" + note if methods else "No cell finished.\n"
    failed = results.get("failed") or []
    if failed:
        text += f"\n## Failed cells ({len(failed)})\n\n"
        text += "".join(f"- `{f['cell']}`: {f['error']} (log: `{f['log']}`)\n" for f in failed)
    return text


def _plots(cfg: TableConfig, rows: dict[str, dict[str, list[dict[str, Any]]]], results: dict[str, Any]) -> None:
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
