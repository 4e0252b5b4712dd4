"""Console-script plumbing: user-facing errors become one clear line, not a stack trace."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def run_cli(main: Callable[[], Any]) -> None:
    """Run ``main``; known user errors (bad files, names, values) exit with status 2 and a message.

    CPU training settings apply (:func:`norm_nerf.core.cpu_setup.prepare_cpu_training`): freed memory is kept for
    reuse (training reallocates the same large activations every step) and denormal floats are flushed to zero.
    """
    from norm_nerf.core.cpu_setup import prepare_cpu_training

    prepare_cpu_training()
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
