"""What every benchmark writes: the machine it ran on, and the JSON report (plus a plot next to it)."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def machine_info(**extra: Any) -> dict[str, Any]:
    """Threads, platform, torch version (and anything the benchmark adds, e.g. the allocator setting)."""
    return {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__,
            **extra}  # fmt: skip


def settings(args: argparse.Namespace, keep: Sequence[str] | None = None) -> dict[str, Any]:
    """The command's arguments for the report (paths as strings); with ``keep``, only those named."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if keep is None or k in keep}


def write_report(report: dict[str, Any], out: Path, plot: Callable[[Path], None] | None = None) -> None:
    """Write ``report`` as JSON to ``out`` and, with ``plot``, a figure to ``out`` with suffix ``.png``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if plot is not None:
        plot(out.with_suffix(".png"))
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if plot is not None else ""))
