"""Compile every Triton norm kernel for a GPU architecture without a GPU (run by tests/core/test_triton.py).

The host functions of ``norm_nerf/core/triton`` run on CPU tensors of the given shapes with each kernel's launch
replaced by Triton's ``warmup`` (compile, do not launch) and a stand-in driver that reports the chosen target. Every
specialization the host code asks for (tile sizes, flags, argument types, the integers Triton folds to constants) is
compiled through Triton's whole pipeline to a cubin with the ``ptxas`` Triton ships. ``ptxas -v`` then reports
registers and spills per kernel.

    .venv/bin/python tests/core/triton_compile.py [--arch 90] [--shapes 65536x256 65536x28 1x1] [--ptxas-info]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


class _Driver:
    """What ``JITFunction.run(warmup=True)`` asks of the active driver."""

    def __init__(self, target: object) -> None:
        self.target = target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self) -> object:
        return self.target

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")


class _Warmup:
    """Stands in for a kernel: ``kernel[grid](...)`` compiles it (and records the result) instead of launching."""

    def __init__(self, kernel: object, compiled: list) -> None:
        self.kernel, self.compiled = kernel, compiled

    def __getitem__(self, grid: tuple[int, ...]):
        def launch(*args, **kwargs) -> None:
            self.compiled.append((self.kernel.fn.__name__, self.kernel.run(*args, grid=grid, warmup=True, **kwargs)))

        return launch


@contextmanager
def compiling_for(arch: int) -> Iterator[list]:
    """Inside the block, every kernel launch of the norm kernels compiles for ``sm_<arch>`` and is recorded."""
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    from norm_nerf.core import triton as loader

    kernels = loader.triton_kernels()
    assert kernels is not None, "triton does not import"
    compiled: list = []
    patched = []
    for module in kernels._m.values():
        for name, value in vars(module).items():
            if isinstance(value, JITFunction) and value.fn.__module__ == module.__name__:  # kernels, not helpers
                patched.append((module, name, value))
                setattr(module, name, _Warmup(value, compiled))
    previous = driver._active
    driver.set_active(_Driver(GPUTarget("cuda", arch, 32)))
    try:
        yield compiled
    finally:
        driver._active = previous
        for module, name, value in patched:
            setattr(module, name, value)


def run_host_code(n: int, c: int) -> None:
    """Every host entry point (forward, backward, double backward of all four families) on an ``n x c`` matrix."""
    from norm_nerf.core.triton import triton_kernels
    from norm_nerf.core.triton.launch import gpu_config

    k = triton_kernels().with_config(gpu_config(132))  # an H100/H200 has 132 multiprocessors
    x, g, v = (torch.zeros(n, c) for _ in range(3))
    w, b = torch.ones(c), torch.zeros(c)
    y, *stats = k.cross_norm_forward(x, w, b, 1e-5)
    k.cross_norm_backward(g, x, w, *stats, 1e-5)
    k.cross_norm_double_backward(v, g, x, w, *stats, 1e-5)
    y, inv = k.rms_norm_forward(x, w, b, 1e-5)
    k.rms_norm_backward(g, x, w, inv)
    for global_stats in (False, True):
        y, mean, _, rstd = k.scale_shift_forward(x, w, b, 1e-5, global_stats)
        k.scale_shift_backward(g, x, w, mean, rstd, global_stats)


def ptxas_info(ptx: str, arch: int) -> tuple[int, int]:
    """``(registers, spill bytes)`` that the bundled ``ptxas -v`` reports for ``ptx``."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(arch).path
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        out = subprocess.run(
            [ptxas, "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else f"--gpu-name=sm_{arch}", str(src),
             "-o", str(Path(tmp) / "k.o")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    log = out.stderr + out.stdout
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spills = sum(int(s) for s in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
    return regs, spills


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200, 80: A100)")
    parser.add_argument("--shapes", nargs="+", default=["65536x256", "65536x28", "1x1"], help="N x C")
    parser.add_argument("--ptxas-info", action="store_true", help="print registers and spills per kernel")
    args = parser.parse_args(argv)
    with compiling_for(args.arch) as compiled:
        for shape in args.shapes:
            n, c = (int(s) for s in shape.split("x"))
            run_host_code(n, c)
    print(f"compiled {len(compiled)} launches ({len({id(k) for _, k in compiled})} kernels) for sm_{args.arch}")
    if args.ptxas_info:
        seen = set()
        for name, kernel in compiled:
            if id(kernel) in seen:
                continue
            seen.add(id(kernel))
            regs, spills = ptxas_info(kernel.asm["ptx"], args.arch)
            meta = kernel.metadata
            print(f"  {name:32s} warps {meta.num_warps:2d}  registers {regs:3d}  spill bytes {spills}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
