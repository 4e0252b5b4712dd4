"""One console for everything the package prints, one notice line, one progress-bar factory, one table (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

CONSOLE = Console(soft_wrap=True)
"""Results, tables and paths (stdout), as nerfstudio's ``CONSOLE``."""
ERR_CONSOLE = Console(stderr=True, soft_wrap=True)
"""Notices and warnings (stderr), so that piped results stay clean."""


def notice(message: str) -> None:
    """Tell the user about something done to their input (a crop, a conversion) on stderr, in one line."""
    ERR_CONSOLE.print(f"[yellow]notice:[/yellow] {escape(message)}", highlight=False)


def progress(*extra: ProgressColumn, enabled: bool = True, transient: bool = False) -> Progress:
    """A progress bar with the package's columns (label, bar, done/total, ``extra``, time left).

    ``enabled=False`` gives a bar that draws nothing (quiet runs, tests); use it as a context manager.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra, TimeRemainingColumn())
    return Progress(*columns, console=CONSOLE, disable=not enabled, transient=transient)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A results table on :data:`CONSOLE`: right-aligned columns, one row per entry (cells already formatted)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    CONSOLE.print(table)
