"""Output folders: never overwrite what a user wrote without being asked.

:class:`OutputOptions` holds the two fields every writing command shares (``--out``, ``--overwrite``); a command's
config inherits it and names its default root in :attr:`OutputOptions.output_root`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


def prepare_output_dir(out: Path | None, default_root: Path, overwrite: bool = False) -> Path:
    """Create the output folder; a non-empty existing ``out`` needs ``overwrite=True``.

    With ``out=None`` a fresh time-stamped folder under ``default_root`` is used.
    """
    if out is None:
        out = default_root / time.strftime("%Y-%m-%d_%H%M%S")
        suffix = 1
        while out.exists():
            out = default_root / f"{time.strftime('%Y-%m-%d_%H%M%S')}_{suffix}"
            suffix += 1
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder exists and is not empty; pass --overwrite to write into it anyway")
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class OutputOptions:
    """Where a command writes: ``--out`` and ``--overwrite`` (inherit this in a command's config)."""

    output_root: ClassVar[Path] = Path("outputs")
    """Parent of the time-stamped folder used without --out (each command sets its own, e.g. outputs/image)."""

    out: Path | None = None
    """Output folder (default: a new time-stamped folder under outputs/<command>/)."""
    overwrite: bool = False
    """Allow writing into a non-empty --out folder."""

    def prepare_output(self) -> Path:
        """Create the output folder (:func:`prepare_output_dir` under :attr:`output_root`) and return it."""
        return prepare_output_dir(self.out, self.output_root, self.overwrite)
