"""``torch.save`` that never leaves a truncated file: serialized in memory, then written whole or not at all.

``torch.save`` straight to a full disk fails with a ``RuntimeError`` from its zip writer ("file write failed") and
leaves a truncated file that later loads fail on; :func:`save_atomically` raises
:class:`~norm_nerf.utils.atomic.NoSpaceError` instead and leaves the previous file, if any, in place.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from norm_nerf.utils.atomic import write_bytes_atomically

__all__ = ["save_atomically"]


def save_atomically(obj: Any, path: Path, tmp_dir: Path | None = None) -> Path:
    """``torch.save(obj, path)`` through a temporary file in ``tmp_dir`` (default: the folder of ``path``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes_atomically(Path(path), buffer.getbuffer(), tmp_dir)
