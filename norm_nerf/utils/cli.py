"""Console-script plumbing: user-facing errors become one clear line, not a stack trace."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from norm_nerf.utils.atomic import NoSpaceError
from norm_nerf.utils.cpu_memory import retain_freed_memory


def run_cli(main: Callable[[], Any]) -> None:
    """Run ``main``; known user errors (bad files, names, values) and a full disk exit with status 2 and a message.

    Freed CPU memory is kept for reuse (:func:`norm_nerf.utils.cpu_memory.retain_freed_memory`): training reallocates
    the same large activations every step.
    """
    retain_freed_memory()
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, FloatingPointError, NoSpaceError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def split_commas(words: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A list option given as ``a b``, ``a,b`` or a mix, as one tuple of non-empty items."""
    return tuple(part.strip() for word in words for part in str(word).split(",") if part.strip())
