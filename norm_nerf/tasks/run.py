"""The registry of the signal tasks (image, ct, mri, shape) and their command line. Each task's config lives beside
its signal (:mod:`~norm_nerf.tasks.image`, :mod:`~norm_nerf.tasks.ct`, :mod:`~norm_nerf.tasks.mri`,
:mod:`~norm_nerf.tasks.shape`) and says as class attributes what ``norm-inr`` and ``norm-inr table`` need: its name,
its input flag, its metric, its table presets, and how it runs. Each fits one network and writes ``metrics.json``
(eval-mode metrics after recalibration first) and pictures into its output folder.

Changes made to an input (a CT image centre-cropped to a square or min-max scaled, a complex MRI volume replaced by
its magnitude) are printed as a ``notice:`` line on stderr and listed under ``notices`` in ``metrics.json``.
A folder of images writes one sub-folder per image, named by the file stem; stems shared by several files
(``a.png`` and ``a.jpg``) use the stem and the suffix instead (``a_png``, ``a_jpg``), so no result overwrites another.

Every file is written whole or not at all (:mod:`norm_nerf.utils.atomic`), ``metrics.json`` last, so a folder that
holds it holds every file of the run (``norm-inr table`` keeps such cells). A full disk stops the run with one line
naming the folder (``norm-inr`` exits 2) and leaves no empty or truncated file.

The tasks' own command line, what ``norm-inr <task>`` and every cell of ``norm-inr table`` run::

    python -m norm_nerf.tasks image --method pe+cn --steps 2000 --out DIR

:func:`parse_task` turns ``<task> <flags>`` into a config, :func:`run_task` runs it, :func:`print_summary` prints
the headline numbers; :func:`main` is the three in a row.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any, Union

import tyro

from norm_nerf.tasks.common import TaskConfig
from norm_nerf.tasks.ct import CTTaskConfig
from norm_nerf.tasks.image import ImageTaskConfig
from norm_nerf.tasks.mri import MRITaskConfig
from norm_nerf.tasks.shape import ShapeTaskConfig
from norm_nerf.utils.console import CONSOLE

TASKS: dict[str, type[TaskConfig]] = {
    c.task: c for c in (ImageTaskConfig, CTTaskConfig, MRITaskConfig, ShapeTaskConfig)
}
"""The tasks by name: the one registry that the CLI, ``norm-inr table`` and its presets read."""
TaskCommand = Union[tuple(Annotated[c, tyro.conf.subcommand(name)] for name, c in TASKS.items())]  # noqa: UP007
"""``<task> <flags>``: the command line of the tasks (``norm-inr`` offers the same subcommands)."""
HEADLINE = (
    "psnr",
    "ssim",
    "iou",
    "iou_train_grid",
    "psnr_train_mode_final",
    "psnr_best_train_mode",
    "iou_best_train_mode",
    "seconds",
)
"""The summary entries :func:`print_summary` shows."""


def parse_task(args: Sequence[str], prog: str = "python -m norm_nerf.tasks", return_unknown_args: bool = False) -> Any:
    """The config of ``<task> <flags>`` (tyro; ``--help`` and bad flags exit as tyro does). With
    ``return_unknown_args``: ``(config, flags it does not know)``, so a caller can name them itself."""
    return tyro.cli(TaskCommand, args=list(args), prog=prog, return_unknown_args=return_unknown_args)  # type: ignore[call-overload]


def run_task(cfg: TaskConfig) -> dict[str, Any]:
    """Run the task ``cfg`` configures; returns its ``metrics.json`` content."""
    return cfg.run()


def print_summary(summary: dict[str, Any]) -> None:
    """The headline numbers of a task run and where its files are."""
    CONSOLE.print({k: summary[k] for k in HEADLINE if k in summary})
    out = summary.get("out", "the output folder")
    CONSOLE.print(f"[bold]metrics.json and pictures written to {out}[/bold]")


def main(args: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m norm_nerf.tasks <task> <flags>``: parse, run, print; returns the summary."""
    summary = run_task(parse_task(sys.argv[1:] if args is None else args))
    print_summary(summary)
    return summary
