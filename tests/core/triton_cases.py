"""The Triton norm kernels against the float64 reference: values, input and affine gradients, double backward,
running statistics, on shapes that are not multiples of the tiles (N = 1 and C = 1 included), with and without affine.

Not collected by a plain ``pytest`` run (no ``test_`` prefix): the kernels need either a CUDA device or Triton's
interpreter, and the interpreter must be switched on before triton is first imported, so
``tests/core/test_triton.py`` runs this module in a subprocess with ``TRITON_INTERPRET=1`` (CPU tensors; tiles of at
most 4 rows and at most 3 programs per reducing pass, so these small shapes still cover masked tiles, several tiles
per program and several programs). On a machine with CUDA, ``pytest tests/core/triton_cases.py`` runs the same cases on
the GPU with the GPU launch configuration (``test_triton.py`` does that too).
"""

from __future__ import annotations

import os

import pytest
import torch

from norm_nerf.core import NormMLP, recalibrate
from norm_nerf.core.functions import (
    KernelCrossNormFunction,
    KernelRMSNormFunction,
    KernelScaleShiftNormFunction,
    backend_of,
)
from norm_nerf.core.norms import build_norm
from norm_nerf.core.triton import interpreting, triton_available, triton_kernels, triton_kernels_for
from norm_nerf.core.triton.launch import gpu_config
from tests.thread_ranks import check_synced_layer

INTERPRETED = triton_available() and interpreting()
DEVICE = torch.device("cpu" if INTERPRETED else "cuda")
pytestmark = pytest.mark.skipif(
    not (INTERPRETED or (triton_available() and torch.cuda.is_available())),
    reason="needs CUDA, or TRITON_INTERPRET=1 set before triton is imported (tests/core/test_triton.py does that)",
)

KINDS = ("bn", "gn", "cn", "rms")
RUNNING = ("bn", "gn", "cn")
SHAPES = [(1, 1), (1, 5), (6, 1), (2, 3), (37, 9)]
EPS = 1e-5


def _twins(kind: str, c: int, seed: int = 0, **opts) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A triton layer (float32) and a reference layer (float64) on DEVICE with the same random affine."""
    tri = build_norm(kind, c, impl="triton", **opts).to(DEVICE)
    ref = build_norm(kind, c, impl="reference", **opts).to(DEVICE, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    if tri.weight is not None:
        with torch.no_grad():
            ref.weight.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
            ref.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
            tri.weight.copy_(ref.weight)
            tri.bias.copy_(ref.bias)
    return tri, ref


def _data(*shape: int, seed: int, scale: float = 3.0, offset: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + offset).to(DEVICE)


def _close(got: torch.Tensor | None, want: torch.Tensor | None, what: str = "", rtol: float = 1e-4) -> None:
    if want is None:
        assert got is None or not got.abs().max() > 0, what
        return
    want = want.detach()
    atol = rtol * max(1.0, float(want.abs().max()))
    torch.testing.assert_close(got.detach().double(), want, rtol=rtol, atol=atol, msg=what)


def _values_and_grads(norm: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = norm(x)
    params = [p for p in (norm.weight, norm.bias) if p is not None]
    return [y, *torch.autograd.grad(y, [x, *params], grad)]


def test_the_kernels_serve_this_device() -> None:
    x = torch.zeros(3, 4, device=DEVICE)
    assert triton_kernels_for(x) is not None
    assert triton_kernels_for(x.double()) is None
    assert triton_kernels_for(torch.zeros(3, 9000, device=DEVICE)) is None  # rows wider than a tile


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_values_and_gradients_match_the_reference(kind: str, shape: tuple[int, int], affine: bool) -> None:
    x, grad = _data(*shape, seed=sum(shape)), _data(*shape, seed=7, scale=1.0, offset=0.0)
    tri, ref = _twins(kind, shape[1], affine=affine)
    got = _values_and_grads(tri.train(), x.float(), grad.float())
    if not (kind == "bn" and shape[0] == 1):  # bn with one point takes the reference path
        assert backend_of(tri(x.float().requires_grad_(True))) == "triton"
    for i, (g, w) in enumerate(zip(got, _values_and_grads(ref.train(), x, grad))):
        _close(g, w, f"output {i}")


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (5, 1)])
@pytest.mark.parametrize("kind", KINDS)
def test_functions_on_single_points_and_channels(kind: str, shape: tuple[int, int], affine: bool) -> None:
    """The autograd Functions themselves (the layers send ``bn`` with N = 1 to the reference path)."""
    kernels = triton_kernels()
    x, grad = _data(*shape, seed=3), _data(*shape, seed=4, scale=1.0, offset=0.0)
    _, ref = _twins(kind, shape[1], affine=affine)
    w = ref.weight.detach().float().requires_grad_(True) if affine else None
    b = ref.bias.detach().float().requires_grad_(True) if affine else None
    xi = x.float().requires_grad_(True)
    if kind == "cn":
        y = KernelCrossNormFunction.apply(xi, w, b, EPS, kernels)[0]
    elif kind == "rms":
        y = KernelRMSNormFunction.apply(xi, w, b, EPS, kernels)
    else:
        y = KernelScaleShiftNormFunction.apply(xi, w, b, EPS, kind == "gn", kernels)[0]
    got = [y, *torch.autograd.grad(y, [xi, *([w, b] if affine else [])], grad.float())]
    for i, (g, want) in enumerate(zip(got, _values_and_grads(ref.train(), x, grad))):
        _close(g, want, f"output {i}")


@pytest.mark.parametrize("kind", RUNNING)
@pytest.mark.parametrize("momentum", [0.3, None])
def test_running_statistics_and_eval_match_the_reference(kind: str, momentum: float | None) -> None:
    tri, ref = _twins(kind, 6, momentum=momentum)
    for i, n in enumerate([50, 17, 1, 23]):
        x = _data(n, 6, seed=10 + i, scale=2.0, offset=3.0)
        _close(tri.train()(x.float()), ref.train()(x), f"batch {i}")
    for (name, got), (_, want) in zip(tri.named_buffers(), ref.named_buffers()):
        if got.is_floating_point():
            _close(got, want, name, rtol=1e-5)
        else:
            assert torch.equal(got, want), name
    x = _data(19, 6, seed=99)
    _close(tri.eval()(x.float()), ref.eval()(x), "eval")


@pytest.mark.parametrize("kind", RUNNING)
def test_recalibration_matches_the_reference(kind: str) -> None:
    tri, ref = _twins(kind, 4)
    batches = [_data(30, 4, seed=i, scale=i + 1.0) for i in range(3)]
    assert recalibrate(tri, [b.float() for b in batches]) == recalibrate(ref, batches) == 3
    for (name, got), (_, want) in zip(tri.named_buffers(), ref.named_buffers()):
        if got.is_floating_point():
            _close(got, want, name, rtol=1e-5)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (13, 6)])
@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_matches_the_reference(kind: str, shape: tuple[int, int], affine: bool) -> None:
    """An eikonal-style loss (the input gradient, differentiated again): the cross-norm double-backward kernels,
    and for bn/gn/rms the analytic expressions of norm_grads."""
    tri, ref = _twins(kind, shape[1], affine=affine)
    x = _data(*shape, seed=5, scale=2.0, offset=0.5)
    results = []
    for norm, xi in ((tri.train(), x.float()), (ref.train(), x)):
        xi = xi.clone().requires_grad_(True)
        params = [p for p in (norm.weight, norm.bias) if p is not None]
        (gx,) = torch.autograd.grad((norm(xi) ** 3).sum(), xi, create_graph=True)
        results.append(torch.autograd.grad((gx**2).sum(), [xi, *params], allow_unused=True))
    for i, (got, want) in enumerate(zip(*results)):
        _close(got, want, f"output {i}", rtol=1e-3)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (21, 6)])
def test_cross_norm_second_and_third_derivatives(shape: tuple[int, int], affine: bool) -> None:
    # Losses on each first-order gradient (input, weight, bias: the v, v_w and v_b inputs of the double-backward
    # kernels) and on all of them, then a third derivative (create_graph: the analytic-expression fallback).
    tri, ref = _twins("cn", shape[1], affine=affine)
    x = _data(*shape, seed=5, scale=2.0, offset=0.5)
    results = []
    for norm, xi in ((tri.train(), x.float()), (ref.train(), x)):
        xi = xi.clone().requires_grad_(True)
        params = [p for p in (norm.weight, norm.bias) if p is not None]
        grads = torch.autograd.grad((norm(xi) ** 3).sum(), [xi, *params], create_graph=True)
        ramp = [torch.arange(1.0, g.numel() + 1, device=DEVICE) for g in grads[1:]]
        losses = [grads[0].square().sum(), *[(g * r).square().sum() for g, r in zip(grads[1:], ramp)]]
        out = []
        for loss in [*losses, sum(losses)]:
            out += torch.autograd.grad(loss, [xi, *params], retain_graph=True, allow_unused=True)
        second = torch.autograd.grad(sum(losses), [xi, *params], create_graph=True)
        out += torch.autograd.grad((second[0] ** 2).sum(), [xi, *params])
        results.append(out)
    for i, (got, want) in enumerate(zip(*results)):
        _close(got, want, f"output {i}", rtol=1e-3)


@pytest.mark.parametrize("double_backward", [False, True])
@pytest.mark.parametrize("shards", [(5, 9), (1, 6, 3)])
@pytest.mark.parametrize("kind", RUNNING)
def test_synced_statistics_run_the_kernels(kind: str, shards: tuple[int, ...], double_backward: bool) -> None:
    """Synchronised statistics over ranks (threads with a summing all-reduce, tests/thread_ranks.py): the kernels'
    halves with one all-reduce forward and one backward train the one-process model on all rows."""
    calls = check_synced_layer(kind, "triton", DEVICE, "triton", shards=shards, c=6, double_backward=double_backward)
    assert calls == [1 + (3 if double_backward else 1)] * len(shards)


@pytest.mark.parametrize("kind", KINDS)
def test_large_offset_keeps_precision(kind: str) -> None:
    # mean/std = 1000 per column: the tile-wise two-pass moments keep the float32 digits.
    x = _data(96, 5, seed=7, scale=1.0, offset=1000.0)
    tri, ref = _twins(kind, 5)
    _close(tri.train()(x.float()), ref.train()(x), rtol=1e-3)


@pytest.mark.parametrize("shape", [(5, 1), (300, 17), (130, 256)])
def test_gpu_launch_configuration(shape: tuple[int, int]) -> None:
    """The tiles and program counts of a real GPU (here: an H100/H200's 132 multiprocessors) on the same kernels:
    every kernel against float64 autograd of the reference layers (the check the loader runs on a new device)."""
    from norm_nerf.core.triton import selfcheck

    selfcheck.run(triton_kernels().with_config(gpu_config(132)), DEVICE, shape)


def test_selfcheck_passes_here() -> None:
    from norm_nerf.core.triton import selfcheck

    selfcheck.run(triton_kernels(), DEVICE)


@pytest.mark.parametrize("kind", KINDS)
def test_mlp_trains_like_the_reference(kind: str) -> None:
    torch.manual_seed(0)
    tri = NormMLP(2, 3, 3, 7, norm=kind, norm_opts={"impl": "triton"}).to(DEVICE).train()
    ref = NormMLP(2, 3, 3, 7, norm=kind, norm_opts={"impl": "reference"}).to(DEVICE, torch.float64).train()
    ref.load_state_dict(tri.state_dict())
    x = _data(23, 2, seed=1, scale=1.0, offset=0.0)
    y_tri, y_ref = tri(x.float()), ref(x)
    _close(y_tri, y_ref, "output")
    y_tri.square().mean().backward()
    y_ref.square().mean().backward()
    for (name, p), q in zip(tri.named_parameters(), ref.parameters()):
        _close(p.grad, q.grad, name, rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_and_non_contiguous_inputs(kind: str) -> None:
    tri, ref = _twins(kind, 5)
    x = _data(5, 3, 8, seed=2).transpose(0, 2)  # (8, 3, 5), not contiguous
    _close(tri.train()(x.float()), ref.train()(x), "non-contiguous")
    y = tri.train()(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    _close(y.float(), ref.train()(x.to(torch.bfloat16).double()), "bfloat16", rtol=2e-2)


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's CPU-side dispatch")
def test_auto_on_the_cpu_never_uses_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(16, 8).requires_grad_(True)
    assert backend_of(build_norm("cn", 8)(x)) != "triton"  # impl="auto" on a CPU tensor: C++ or fast
    monkeypatch.setenv("NORM_NERF_COMPILED", "0")
    assert backend_of(build_norm("cn", 8)(x)) == "eager"


@pytest.mark.skipif(INTERPRETED, reason="CUDA dispatch")
@pytest.mark.parametrize("kind", KINDS)
def test_auto_uses_the_kernels_on_cuda_unless_disabled(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(64, 16, device="cuda", requires_grad=True)
    assert backend_of(build_norm(kind, 16).cuda().train()(x)) == "triton"
    assert backend_of(build_norm(kind, 16).cuda().double().train()(x.double())) != "triton"
    monkeypatch.setenv("NORM_NERF_TRITON", "0")
    assert backend_of(build_norm(kind, 16).cuda().train()(x)) != "triton"
    assert backend_of(build_norm(kind, 16, impl="triton").cuda().train()(x)) == "triton"  # explicit wins


@pytest.mark.skipif(INTERPRETED, reason="CUDA only")
@pytest.mark.parametrize("kind", KINDS)
def test_large_batches_on_cuda(kind: str) -> None:
    """A NeRF-sized batch (262 144 x 256) against float64 on the GPU, forward and backward."""
    tri, ref = _twins(kind, 256)
    x = _data(262144, 256, seed=0, scale=2.0, offset=0.5)
    grad = _data(262144, 256, seed=1, scale=1.0, offset=0.0)
    for i, (g, w) in enumerate(zip(_values_and_grads(tri.train(), x.float(), grad.float()),
                                   _values_and_grads(ref.train(), x, grad))):  # fmt: skip
        _close(g, w, f"output {i}", rtol=1e-3)


@pytest.mark.skipif(INTERPRETED, reason="CUDA only")
def test_autocast_on_cuda() -> None:
    torch.manual_seed(0)
    net = NormMLP(3, 1, depth=3, width=64, norm="cn").cuda()
    ref = NormMLP(3, 1, depth=3, width=64, norm="cn").cuda()
    ref.load_state_dict(net.state_dict())
    x = torch.rand(4096, 3, device="cuda") * 2 - 1
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref(x), atol=0.1, rtol=0.1)


if os.environ.get("NORM_NERF_TRITON_CASES_STRICT") == "1":  # set by test_triton.py: the subprocess must not skip

    def test_this_process_runs_the_kernels() -> None:
        assert INTERPRETED or torch.cuda.is_available()
