"""``norm-inr table``'s options (:class:`TableConfig`), the grid's networks and steps, and the ``--extra`` flags."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from norm_nerf.core import PAPER_METHODS
from norm_nerf.tasks.common import TablePreset
from norm_nerf.tasks.run import TASKS
from norm_nerf.utils.cli import split_commas

TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]


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


def parse_net(net: str) -> tuple[int, int]:
    """``"10x28"`` -> ``(10, 28)``; raises a clear ValueError otherwise."""
    try:
        depth, width = (int(v) for v in net.lower().split("x"))
    except ValueError:
        raise ValueError(f"--nets entries must look like DEPTHxWIDTH (e.g. 10x28), got {net!r}") from None
    if depth < 1 or width < 1:
        raise ValueError(f"--nets {net!r}: depth and width must be >= 1")
    return depth, width


def preset(cfg: TableConfig) -> TablePreset:
    """The table's preset of its task (:attr:`norm_nerf.tasks.common.TaskConfig.presets`)."""
    return TASKS[cfg.task].presets[cfg.preset]


def table_steps(cfg: TableConfig) -> int:
    """Training steps of the table's cells (--steps, else the preset's)."""
    return cfg.steps if cfg.steps is not None else preset(cfg).steps
