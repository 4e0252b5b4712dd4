"""The Triton path: dispatch, launch geometry, the core without triton, and the kernels themselves.

The kernels run in subprocesses, so that nothing here changes how triton behaves in this process: under
``TRITON_INTERPRET=1`` on the CPU (``tests/core/triton_cases.py``; the variable must be set before triton is imported,
because triton.language decorates its own helpers then), compiled for an H100/H200 without a GPU
(``tests/core/triton_compile.py``), and on the GPU where CUDA exists.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from norm_nerf.core import triton as loader
from norm_nerf.core.functions import backend
from norm_nerf.core.functions.backend import backend_of
from norm_nerf.core.norms import NORM_IMPLS, build_norm
from norm_nerf.core.triton.launch import INTERPRETER_CONFIG, MAX_CHANNELS, LaunchConfig, gpu_config

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
needs_triton = pytest.mark.skipif(not loader.triton_available(), reason="triton is not installed")
needs_kernel_triton = pytest.mark.skipif(
    not loader.triton_available() or loader.triton_version() < loader.MIN_TRITON,
    reason=f"needs triton >= {'.'.join(map(str, loader.MIN_TRITON))} (the kernels' minimum)",
)


def _run(args: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    """``python args`` in the repository root with ``env`` added (and interpreter mode off unless given)."""
    full_env = {**os.environ, "TRITON_INTERPRET": "0", **env}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def _pytest_summary(out: str) -> str:
    lines = [line for line in out.strip().splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1] if lines else out[-2000:]


@pytest.mark.slow
@needs_kernel_triton
def test_kernels_under_the_interpreter() -> None:
    """Every case of triton_cases.py (values, input and affine gradients, double backward, running statistics, ...)
    with the kernels run by Triton's interpreter on CPU tensors (about 130 cases, 40-60 s)."""
    proc = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "triton_cases.py")],
        timeout=900,
        TRITON_INTERPRET="1",
        NORM_NERF_TRITON_CASES_STRICT="1",
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in _pytest_summary(proc.stdout) and " failed" not in _pytest_summary(proc.stdout)
    print(_pytest_summary(proc.stdout))


@pytest.mark.slow
@needs_kernel_triton
def test_kernels_compile_for_hopper_without_a_gpu() -> None:
    """Every specialization the host code launches for 65 536 x 256, 1 000 x 28 and 1 x 1 compiles to an sm_90 cubin
    (Triton's whole pipeline and its bundled ptxas; 15-40 s with an empty Triton cache, seconds once cached)."""
    proc = _run([str(HERE / "triton_compile.py"), "--arch", "90", "--shapes", "65536x256", "1000x28", "1x1"], 900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert re.search(r"compiled \d+ launches", proc.stdout), proc.stdout


@needs_kernel_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kernels_on_cuda() -> None:
    """The same cases on the GPU (GPU tiles, NeRF-sized batches, dispatch of impl="auto", autocast)."""
    proc = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "triton_cases.py")],
        timeout=900,
        NORM_NERF_TRITON_CASES_STRICT="1",
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    print(_pytest_summary(proc.stdout))


def test_triton_is_an_impl() -> None:
    assert "triton" in NORM_IMPLS
    with pytest.raises(ValueError, match="impl must be one of auto, fast, reference, compiled, triton"):
        build_norm("cn", 4, impl="tritonn")


class _Marker:
    """Stands in for the Triton kernels in the dispatch tests."""


def test_dispatch_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto``: Triton for non-CPU tensors unless NORM_NERF_TRITON=0, never asked for CPU tensors; ``triton``: the
    kernels, or the eager Functions where they do not serve; ``fast``/``compiled``: never Triton."""
    marker, asked = _Marker(), []

    def fake(x: torch.Tensor) -> _Marker:
        asked.append(x.device.type)
        return marker

    monkeypatch.setattr(backend, "triton_kernels_for", fake)
    gpu_like = torch.empty(8, 4, device="meta")  # any non-CPU device takes the GPU rules
    assert backend.select_kernels("auto", gpu_like) is marker
    assert backend.select_kernels("triton", gpu_like) is marker
    assert backend.select_kernels("fast", gpu_like) is None
    assert backend.select_kernels("compiled", gpu_like) is None
    assert backend.select_kernels("triton", torch.zeros(8, 4)) is marker  # the loader decides (interpreter or not)
    asked.clear()
    backend.select_kernels("auto", torch.zeros(8, 4))
    backend.select_kernels("compiled", torch.zeros(8, 4))
    assert asked == []  # CPU tensors under auto: the C++ kernels or the eager Functions, as before
    monkeypatch.setenv("NORM_NERF_TRITON", "0")
    assert backend.select_kernels("auto", gpu_like) is None
    assert backend.select_kernels("triton", gpu_like) is marker  # an explicit impl wins
    monkeypatch.setattr(backend, "triton_kernels_for", lambda x: None)
    assert backend.select_kernels("triton", gpu_like) is None  # -> the eager Functions


@needs_triton
@pytest.mark.parametrize("kind", ["bn", "gn", "cn", "rms"])
def test_triton_impl_on_the_cpu_without_the_interpreter_is_fast(kind: str) -> None:
    assert not loader.interpreting()  # this process imported triton normally (if at all)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=gen, dtype=torch.float32)
    assert loader.triton_kernels_for(x) is None
    tri, fast = build_norm(kind, 5, impl="triton"), build_norm(kind, 5, impl="fast")
    xt, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yt, yf = tri(xt), fast(xf)
    assert backend_of(yt) != "triton"
    torch.testing.assert_close(yt, yf)
    yt.sum().backward()
    yf.sum().backward()
    torch.testing.assert_close(xt.grad, xf.grad)


def test_the_kernels_refuse_what_they_do_not_serve() -> None:
    for x in (
        torch.zeros(4, 3, dtype=torch.float64),
        torch.zeros(4, 3, dtype=torch.bfloat16),  # the layers upcast low precision before asking
        torch.zeros(0, 3),
        torch.zeros(2, MAX_CHANNELS + 1),
        torch.zeros(4, 3, 2),
        torch.zeros(4, 3, device="meta"),
    ):
        assert loader.triton_kernels_for(x) is None, (x.shape, x.dtype, x.device)


def test_the_core_runs_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """With triton unimportable (CPU-only torch wheels), every impl still runs; nothing warns."""
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.setitem(sys.modules, "triton.language", None)
    caches = (loader.triton_available, loader.triton_kernels, loader.interpreting)
    for cached in caches:
        cached.cache_clear()
    try:
        assert not loader.triton_available() and loader.triton_kernels() is None and not loader.interpreting()
        x = torch.randn(7, 4, requires_grad=True)
        for kind in ("bn", "gn", "cn", "rms"):
            for impl in NORM_IMPLS:
                build_norm(kind, 4, impl=impl).train()(x).square().sum().backward()
    finally:
        for cached in caches:
            cached.cache_clear()


def test_only_the_kernel_modules_import_triton() -> None:
    """The loader imports triton lazily; only the kernel modules and their tile helpers do (the core must import
    without it)."""
    core = ROOT / "norm_nerf" / "core"
    kernel_modules = {core / "triton" / f"{name}.py" for name in (*loader.FAMILIES, "tiles")}
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level}
        uses_triton = any(name == "triton" or name.startswith("triton.") for name in names)
        assert uses_triton == (path in kernel_modules), path.relative_to(ROOT)


@pytest.mark.parametrize("config", [INTERPRETER_CONFIG, gpu_config(132), gpu_config(1), LaunchConfig()])
def test_launch_geometry_covers_every_row_once(config: LaunchConfig) -> None:
    for c in (1, 2, 3, 5, 28, 64, 256, 257, 1000, MAX_CHANNELS):
        block_n, block_c = config.blocks(c)
        assert block_c >= c and block_c & (block_c - 1) == 0 and block_c < 2 * c + 1
        assert block_n >= 1 and block_n & (block_n - 1) == 0 and block_n <= config.max_rows
        assert 4 <= config.num_warps(c) <= 16
        for n in (1, 2, 3, 7, 37, 1000, 65536, 262144, 1_000_003):
            bn, bc, per_program, programs = config.reduction_grid(n, c)
            rows_per_program = bn * per_program
            assert (bn, bc) == (block_n, block_c)
            assert programs <= config.max_programs and per_program >= 1
            assert (programs - 1) * rows_per_program < n <= programs * rows_per_program  # no idle program


def test_a_failed_self_check_warns_once_and_means_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from norm_nerf.core.triton import selfcheck

    def broken(kernels: object, device: torch.device) -> None:
        raise RuntimeError("ptxas fatal: a stand-in failure")

    monkeypatch.setattr(selfcheck, "run", broken)
    with pytest.warns(UserWarning, match="failed their check on cpu .*ptxas fatal"):
        assert loader._self_check.__wrapped__(torch.device("cpu")) is False
    monkeypatch.setattr(selfcheck, "run", lambda kernels, device: None)
    assert loader._self_check.__wrapped__(torch.device("cpu")) is True


@needs_triton
def test_a_triton_older_than_the_minimum_warns_once_and_means_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.1's triton 2.1.0 (nerfstudio's install guide): no kernels, one warning, the eager path, no error."""
    if loader.triton_version() >= loader.MIN_TRITON:
        monkeypatch.setattr(loader, "triton_version", lambda: (2, 1))
    loader.triton_kernels.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"triton \S+ is older than 3\.0.*using impl='fast'") as caught:
            assert loader.triton_kernels() is None
            assert loader.triton_kernels() is None
        assert len(caught) == 1
        monkeypatch.setattr(loader, "interpreting", lambda: True)  # even where kernels would be wanted on the CPU
        x = torch.randn(9, 5, requires_grad=True)
        assert loader.triton_kernels_for(x.detach()) is None
        build_norm("cn", 5, impl="triton").train()(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    finally:
        loader.triton_kernels.cache_clear()
