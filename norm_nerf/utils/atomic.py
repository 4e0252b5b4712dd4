"""Files that appear whole or not at all: write to a temporary name beside the target, then rename.

A reader (``--load-dir``, ``ns-eval``, a resumed table) never sees a truncated checkpoint, JSON file or image: if
the write fails (a full disk, an interrupt, a crash), the target keeps its previous content or stays absent, and the
temporary file is removed (a ``kill -9`` can leave one; its name starts with a dot and ends in ``.partial``, so no
loader's pattern matches it). A full disk becomes :class:`NoSpaceError`, one line that names the folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["NoSpaceError", "partial_path", "write_atomically", "write_bytes_atomically"]


class NoSpaceError(OSError):
    """The disk holding an output file is full; the message names the folder and the file that was not written."""

    def __init__(self, path: Path) -> None:
        message = f"no space left on {path.parent} (while writing {path.name}; nothing of it was kept)"
        super().__init__(errno.ENOSPC, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def partial_path(path: Path, tmp_dir: Path | None = None) -> Path:
    """The temporary name :func:`write_atomically` writes ``path`` under (in ``tmp_dir``, default its folder)."""
    return (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}.partial"


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    cause = err.__cause__ or err.__context__
    return cause is not None and cause is not err and _is_disk_full(cause)


def write_atomically(path: Path, write: Callable[[Path], Any], tmp_dir: Path | None = None) -> Path:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``; returns ``path``.

    ``tmp_dir`` (default: the folder of ``path``) must be on the same file system; a checkpoint folder passes its
    parent, so that the folder holds only complete checkpoints even after a ``kill -9``. Raises
    :class:`NoSpaceError` when the disk is full; any failure removes the temporary file.
    """
    path = Path(path)
    tmp = partial_path(path, tmp_dir)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(err):
            raise NoSpaceError(path) from None
        raise
    return path


def write_bytes_atomically(path: Path, data: bytes | memoryview, tmp_dir: Path | None = None) -> Path:
    """``data`` to ``path`` through :func:`write_atomically`, flushed to the disk before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return write_atomically(path, write, tmp_dir)
