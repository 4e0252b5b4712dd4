"""flush_denormals: FTZ/DAZ in the calling thread and torch's intra-op threads (own process: it is process state)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.core.test_norm_functions import needs_kernels

CODE = """
import torch
from norm_nerf.core.cpu_setup import flush_denormals
torch.set_num_threads(2)
x = torch.full((1 << 22,), 1e-39)  # denormal in float32; a multiply this large runs on both threads
before = int((x * 1.0 != 0).sum())
threads = flush_denormals()
after = int((x * 1.0 != 0).sum())
print(threads, before, after, x.numel())
"""


def _run(flush: bool = True) -> list[int]:
    env = {**os.environ, "NORM_NERF_FLUSH_DENORMALS": "1" if flush else "0"}  # tests/conftest.py turns it off here
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env)
    return [int(v) for v in out.stdout.split()]


@needs_kernels
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="FTZ/DAZ are x86 MXCSR bits")
def test_flush_denormals_reaches_every_intra_op_thread() -> None:
    threads, before, after, n = _run()
    assert threads == 2
    assert before == n  # denormals are kept by default
    assert after == 0  # and read as zero afterwards, in every chunk of the parallel multiply


def test_flush_denormals_opt_out() -> None:
    threads, before, after, n = _run(flush=False)
    assert threads == 0 and before == after == n
