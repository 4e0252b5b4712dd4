"""``norm-inr table`` as real processes: its cells end with it (``kill -9``, SIGTERM), a cell outlives a sibling that
ends first, and a second table on the same folder is refused naming the first one's PID.

Each test starts a real table whose cell would train for minutes (a 16 x 16 image, a million steps) and waits until
the cell process exists; whatever a test leaves running is killed at its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from norm_nerf.tasks.table import TableConfig, run_table

pytestmark = pytest.mark.slow  # each test starts norm-inr table processes, and they their cells

CELL_GONE_WITHIN_S = 10.0
"""How long a cell may outlive its table."""


@pytest.fixture
def started() -> Iterator[list[psutil.Process]]:
    """Processes a test started or found; at its end they and their children are killed."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in list(procs):
        with contextlib.suppress(psutil.NoSuchProcess):
            procs += proc.children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def _image(path: Path, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _table_command(out: Path, *inputs: Path, jobs: int = 1) -> list[str]:
    return [sys.executable, "-m", "norm_nerf.scripts.inr", "table", "image", "--methods", "relu", "--nets", "1x8",
            "--steps", "1000000", "--jobs", str(jobs), "--inputs", *map(str, inputs), "--extra", "--resize None",
            "--out", str(out)]  # fmt: skip


def _start(command: list[str], started: list[psutil.Process]) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started.append(psutil.Process(proc.pid))
    return proc


def _cells(table: subprocess.Popen, count: int, started: list[psutil.Process], timeout: float = 120) -> list:
    """The table's running cell processes, once ``count`` of them exist."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert table.poll() is None, f"the table ended first: {table.stderr.read()}"
        cells = [c for c in psutil.Process(table.pid).children() if "norm_nerf.tasks" in " ".join(c.cmdline())]
        if len(cells) >= count:
            started.extend(cells)
            return cells
        time.sleep(0.2)
    raise AssertionError(f"no {count} cell processes after {timeout} s")


def _seconds_until_gone(proc: psutil.Process, timeout: float = CELL_GONE_WITHIN_S) -> float:
    """Seconds until ``proc`` has ended (reaped, or a zombie); ``inf`` if it still runs after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        return float("inf")
    return time.monotonic() - start


def test_kill_9_of_the_table_ends_its_cell_and_a_second_table_is_refused_meanwhile(tmp_path, started) -> None:
    image, out = _image(tmp_path / "tiny.png"), tmp_path / "t"
    table = _start(_table_command(out, image), started)
    [cell] = _cells(table, 1, started)
    second = _start(_table_command(out, image), started)
    _, err = second.communicate(timeout=60)  # the fixture ends it, and any cell it started, if it runs on
    assert second.returncode == 2, err
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {out}: ") and f"norm-inr table (PID {table.pid})" in line, line
    assert cell.is_running()  # the refused table left the running one alone
    os.kill(table.pid, signal.SIGKILL)
    table.wait()
    assert _seconds_until_gone(cell) < CELL_GONE_WITHIN_S, "the cell outlived its table"
    # the lock died with its holders: a new run on the folder goes ahead
    cfg = TableConfig("image", methods=("relu",), nets=("1x8",), inputs=(image,), out=out, dry_run=True)
    cfg.steps, cfg.extra = 1000000, ("--resize", "None")
    assert run_table(cfg) == {}


def test_sigterm_of_the_table_ends_its_cells_and_cells_outlive_a_sibling_that_ends_first(tmp_path, started) -> None:
    """Two cells in parallel: one fails at once (not an image), the other trains on after it, until SIGTERM."""
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    table = _start(_table_command(tmp_path / "t", _image(tmp_path / "tiny.png"), bad, jobs=2), started)
    cells = _cells(table, 2, started)
    long_cell = next(c for c in cells if "tiny.png" in " ".join(c.cmdline()))
    short_cell = next(c for c in cells if c is not long_cell)
    assert _seconds_until_gone(short_cell, timeout=120) < 120
    time.sleep(1.0)
    assert long_cell.is_running() and long_cell.status() != psutil.STATUS_ZOMBIE
    table.send_signal(signal.SIGTERM)
    assert table.wait(timeout=30) == 128 + signal.SIGTERM
    assert _seconds_until_gone(long_cell) < CELL_GONE_WITHIN_S, "the cell outlived its table"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_cells_get_the_cores_taskset_allows_not_the_machines() -> None:
    from norm_nerf.tasks.processes import usable_cores

    code = "from norm_nerf.tasks.processes import usable_cores; print(usable_cores())"
    pinned = subprocess.run(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{0}}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.strip() == "1"
    assert usable_cores() == len(os.sched_getaffinity(0))
