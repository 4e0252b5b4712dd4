"""Helpers of the tests that run nerfstudio's own CLIs (ns-eval, ns-export) on trained norm-* runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run_ns(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the console script ``cmd[0]`` of this environment (``ns-eval``, ``ns-export``, ...) with arguments."""
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)  # fmt: skip


def require_open3d() -> None:
    """Skip unless open3d imports: ns-export imports it, and its wheel needs the system's libusb-1.0 (Debian package
    libusb-1.0-0; .ci/run installs it)."""
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as err:
        pytest.skip(f"open3d does not import ({err}); on Debian: apt-get install libusb-1.0-0")
