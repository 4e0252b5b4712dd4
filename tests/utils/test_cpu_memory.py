"""retain_freed_memory: glibc's thresholds raised once per process, opt-out by environment variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import time, torch
from norm_nerf.utils.cpu_memory import retain_freed_memory
torch.set_num_threads(1)
applied = retain_freed_memory() if {retain} else False
x, g = torch.randn(65536, 256), torch.randn(256)
for _ in range(3):
    y = x * g
best = float("inf")
for _ in range(15):
    t = time.perf_counter(); y = x * g; best = min(best, time.perf_counter() - t); del y
print(applied, best)
"""


def _run(retain: bool, env: dict | None = None) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", CODE.format(retain=retain)], capture_output=True, text=True,
                         check=True, env=env).stdout.split()  # fmt: skip
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_retained_memory_avoids_page_faults_of_fresh_activations() -> None:
    applied, fast = _run(True)
    _, slow = _run(False)
    assert applied
    assert fast < slow  # a fresh 64 MiB result no longer maps new pages (measured here: about 11 vs 45 ms)


def test_opt_out_by_environment() -> None:
    import os

    env = {**os.environ, "NORM_NERF_RETAIN_MEMORY": "0"}
    applied, _ = _run(True, env)
    assert not applied


BUILD = """
import torch
from norm_nerf.utils import cpu_memory
from norm_nerf.core.norms import build_norm
assert cpu_memory._applied is None
build_norm({kind!r}, 8)
print(cpu_memory._applied)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("kind", ["bn", "cn", "ln"])
def test_the_first_norm_built_on_the_cpu_retains_freed_memory_unless_opted_out(kind: str) -> None:
    """A user's own script (no norm-nerf CLI) gets the allocator setting when it builds a norm layer on the CPU."""
    import os

    def applied(**env: str) -> str:
        full = {k: v for k, v in os.environ.items() if k != "NORM_NERF_RETAIN_MEMORY"} | env
        done = subprocess.run([sys.executable, "-c", BUILD.format(kind=kind)], capture_output=True, text=True,
                              check=True, env=full)  # fmt: skip
        return done.stdout.strip()

    assert applied() == "True"
    assert applied(NORM_NERF_RETAIN_MEMORY="0") == "False"
