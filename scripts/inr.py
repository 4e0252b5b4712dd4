"""norm-inr: signal tasks (image, ct, mri, shape), comparison tables and spectral-bias analysis (ntk, freq)."""

from __future__ import annotations

import sys
from typing import Annotated

import tyro

from norm_nerf.analysis.run import FreqConfig, NtkConfig, run_analysis
from norm_nerf.tasks.common import TaskConfig
from norm_nerf.tasks.run import TaskCommand, print_summary, run_task
from norm_nerf.tasks.table import TableConfig, join_extra_words, run_table
from norm_nerf.utils.cli import run_cli

Command = (
    TaskCommand  # image, ct, mri, shape: the tasks' own subcommands (python -m norm_nerf.tasks parses the same)
    | Annotated[TableConfig, tyro.conf.subcommand("table")]
    | Annotated[NtkConfig, tyro.conf.subcommand("ntk")]
    | Annotated[FreqConfig, tyro.conf.subcommand("freq")]
)


def main(cfg: Command) -> None:
    """Run a parsed subcommand config; a task's headline numbers are printed (tables and analyses print their own)."""
    if isinstance(cfg, TaskConfig):
        print_summary(run_task(cfg))
    elif isinstance(cfg, TableConfig):
        run_table(cfg)
    else:
        run_analysis(cfg)


def entrypoint() -> None:
    """Console script ``norm-inr``."""
    args = join_extra_words(sys.argv[1:])  # --extra "--lr 0.01" under tyro 0.9 and 1.x alike
    run_cli(lambda: main(tyro.cli(Command, args=args)))  # type: ignore[call-overload]


if __name__ == "__main__":
    entrypoint()
