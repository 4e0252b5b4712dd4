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

Modules, one job each: :mod:`.config` (the options), :mod:`.cells` (the grid and each cell's command),
:mod:`.resume` (which finished cells to keep), :mod:`.running` (local processes), :mod:`.collect` (means,
convergence, settled orderings), :mod:`.report` (markdown and plots), :mod:`.runner` (the whole run).
"""

from norm_nerf.tasks.table.cells import Cell, build_cells
from norm_nerf.tasks.table.collect import collect
from norm_nerf.tasks.table.config import TableConfig, join_extra_words, parse_net
from norm_nerf.tasks.table.report import markdown_table
from norm_nerf.tasks.table.resume import config_differences, expected_configs, plan_cells
from norm_nerf.tasks.table.runner import CellsFailedError, run_table

__all__ = [
    "Cell",
    "CellsFailedError",
    "TableConfig",
    "build_cells",
    "collect",
    "config_differences",
    "expected_configs",
    "join_extra_words",
    "markdown_table",
    "parse_net",
    "plan_cells",
    "run_table",
]
