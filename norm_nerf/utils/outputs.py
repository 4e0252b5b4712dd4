"""Output folders: never overwrite what a user wrote without being asked."""

from __future__ import annotations

import time
from pathlib import Path


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
