"""Fast norm kernels (``impl="fast"``) against their reference twins: values, gradients, statistics, edge cases."""

from __future__ import annotations

import os

import pytest
import torch

from norm_nerf.core import recalibrate
from norm_nerf.core.functions import CrossNormFunction, RMSNormFunction, ScaleShiftNormFunction, backend_of
from norm_nerf.core.moments import moments
from norm_nerf.core.norms import build_norm

KINDS = ["bn", "ln", "gn", "cn", "rms"]
RUNNING = ["bn", "gn", "cn"]
COMPILED = ["bn", "gn", "cn", "rms"]
SHAPES = [(1, 1), (1, 5), (6, 1), (2, 3), (7, 4), (33, 9)]


def _twins(kind: str, c: int, seed: int = 0, **opts) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fast and a reference layer in float64 with the same random affine parameters."""
    fast = build_norm(kind, c, impl="fast", **opts).double()
    ref = build_norm(kind, c, impl="reference", **opts).double()
    gen = torch.Generator().manual_seed(seed)
    if fast.weight is not None:
        with torch.no_grad():
            for p_fast, p_ref in [(fast.weight, ref.weight), (fast.bias, ref.bias)]:
                p_fast.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
                p_ref.copy_(p_fast)
    return fast, ref


def _values_and_grads(norm: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = norm(x)
    params = [p for p in (norm.weight, norm.bias) if p is not None]
    return [y, *torch.autograd.grad(y, [x, *params], grad)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_fast_matches_reference_values_and_gradients(kind: str, shape: tuple[int, int], affine: bool) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3 + 1
    grad = torch.randn(*shape, generator=gen, dtype=torch.float64)
    fast, ref = _twins(kind, shape[1], affine=affine)
    for got, want in zip(_values_and_grads(fast.train(), x, grad), _values_and_grads(ref.train(), x, grad)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_leading_dims_and_non_contiguous_input(kind: str) -> None:
    fast, ref = _twins(kind, 5)
    x = torch.randn(5, 3, 4, dtype=torch.float64).transpose(0, 2)  # (4, 3, 5), not contiguous
    torch.testing.assert_close(fast.train()(x), ref.train()(x), rtol=1e-9, atol=1e-12)


def _functions(kind: str):
    """The fast autograd Function of ``kind`` as ``f(x, weight, bias) -> y``."""
    eps = 1e-5
    table = {
        "cn": lambda x, w, b: CrossNormFunction.apply(x, w, b, eps)[0],
        "bn": lambda x, w, b: ScaleShiftNormFunction.apply(x, w, b, eps, False)[0],
        "gn": lambda x, w, b: ScaleShiftNormFunction.apply(x, w, b, eps, True)[0],
        "rms": lambda x, w, b: RMSNormFunction.apply(x, w, b, eps),
    }
    return table[kind]


@pytest.mark.parametrize("shape", [(1, 3), (4, 1), (5, 4)])
@pytest.mark.parametrize("kind", ["cn", "bn", "gn", "rms"])
def test_gradcheck_fast_functions(kind: str, shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(*shape, generator=gen, dtype=torch.float64) * 2 + 1).requires_grad_(True)
    w = (torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5).requires_grad_(True)
    b = torch.randn(shape[1], generator=gen, dtype=torch.float64).requires_grad_(True)
    fn = _functions(kind)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradcheck(lambda t: fn(t, None, None), (x,))


@pytest.mark.parametrize("kind", RUNNING)
def test_running_statistics_and_eval_match_reference(kind: str) -> None:
    fast, ref = _twins(kind, 6, momentum=0.3)
    gen = torch.Generator().manual_seed(5)
    for n in [50, 17, 1, 64]:  # includes a single point (the reference path for bn's native kernel)
        x = torch.randn(n, 6, generator=gen, dtype=torch.float64) * 2 + 3
        torch.testing.assert_close(fast.train()(x), ref.train()(x), rtol=1e-9, atol=1e-9)
    for (name, got), (_, want) in zip(fast.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(fast.eval()(x), ref.eval()(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", RUNNING)
def test_no_grad_policy_and_slots_follow_the_reference(kind: str) -> None:
    from norm_nerf.core.norms import stat_slot

    fast, ref = _twins(kind, 3, num_slots=2)
    x = torch.randn(20, 3, dtype=torch.float64) + 2
    for norm in (fast, ref):
        norm.train()
        with torch.no_grad():
            norm(x)  # a sampler's query: no update
        with stat_slot(norm, 1):
            norm(x * 3)
    assert fast.num_batches_tracked.tolist() == ref.num_batches_tracked.tolist() == [0, 1]
    torch.testing.assert_close(fast.running_mean, ref.running_mean, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", RUNNING)
def test_recalibration_matches_reference(kind: str) -> None:
    fast, ref = _twins(kind, 4)
    batches = [torch.randn(30, 4, dtype=torch.float64) * (i + 1) for i in range(3)]
    assert recalibrate(fast, batches) == recalibrate(ref, batches) == 3
    for (name, got), (_, want) in zip(fast.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("kind", ["gn", "cn", "rms"])
def test_float32_large_offset_keeps_precision(kind: str) -> None:
    # mean/std = 1000 per column: the one-pass variance would cancel; moments() falls back to two passes.
    gen = torch.Generator().manual_seed(7)
    x64 = torch.randn(256, 8, generator=gen, dtype=torch.float64) + 1000.0
    ref = build_norm(kind, 8, impl="reference").double().train()(x64)
    fast = build_norm(kind, 8, impl="fast").train()(x64.float())
    torch.testing.assert_close(fast.double(), ref, rtol=1e-3, atol=1e-3)


def test_moments_hand_computed_and_constant_column() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    mean, var = moments(x, x.sum(0), (x * x).sum(0), dim=0)
    torch.testing.assert_close(mean, torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(var, torch.tensor([2.0, 0.0]))  # unbiased; the constant column is exactly 0


def test_unknown_impl_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="impl must be one of auto, fast, reference, compiled"):
        build_norm("cn", 4, impl="fused")


@pytest.mark.parametrize("kind", COMPILED)
def test_compiled_falls_back_to_fast_off_float32_cpu(kind: str) -> None:
    # float64 never uses the C++ kernels (and never builds them): identical to impl="fast".
    fast, _ = _twins(kind, 5)
    compiled = build_norm(kind, 5, impl="compiled").double()
    compiled.load_state_dict(fast.state_dict())
    x = torch.randn(9, 5, dtype=torch.float64)
    torch.testing.assert_close(compiled.train()(x), fast.train()(x), rtol=1e-12, atol=1e-12)


needs_kernels = pytest.mark.skipif(
    os.environ.get("NORM_NERF_COMPILED", "1").strip() == "0",
    reason="NORM_NERF_COMPILED=0: skips the C++ kernels (their first build takes 20-100 s)",
)


@needs_kernels
@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (2, 3), (300, 17), (1024, 64)])
@pytest.mark.parametrize("kind", COMPILED)
def test_compiled_kernels_match_float64_reference(kind: str, shape: tuple[int, int]) -> None:
    from norm_nerf.core.cpu_kernels import cpu_kernels

    assert cpu_kernels() is not None
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3 + 1
    grad = torch.randn(*shape, generator=gen, dtype=torch.float64)
    _, ref = _twins(kind, shape[1], momentum=0.5)
    compiled = build_norm(kind, shape[1], impl="compiled", momentum=0.5)
    compiled.load_state_dict(ref.state_dict())
    got = _values_and_grads(compiled.train(), x.float(), grad.float())
    want = _values_and_grads(ref.train(), x, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-4 * max(1.0, float(w.detach().abs().max())))
    for (name, g), (_, w) in zip(compiled.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(g.to(w.dtype), w, rtol=1e-5, atol=1e-6, msg=name)


def _backend(norm: torch.nn.Module, x: torch.Tensor) -> str:
    return backend_of(norm.train()(x.requires_grad_(True)))


@needs_kernels
@pytest.mark.parametrize("kind", ["cn", "rms"])
def test_auto_uses_the_kernels_on_float32_cpu_unless_disabled(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(16, 8)
    assert _backend(build_norm(kind, 8), x.clone()) == "compiled"  # impl="auto" is the default
    assert _backend(build_norm(kind, 8), x.clone().double()) == "eager"
    monkeypatch.setenv("NORM_NERF_COMPILED", "0")
    assert _backend(build_norm(kind, 8), x.clone()) == "eager"
    assert _backend(build_norm(kind, 8, impl="compiled"), x.clone()) == "compiled"  # explicit wins


@needs_kernels
@pytest.mark.parametrize("kind", COMPILED)
def test_double_backward_through_compiled_kernels(kind: str) -> None:
    _, ref = _twins(kind, 6)
    compiled = build_norm(kind, 6, impl="compiled")
    compiled.load_state_dict(ref.state_dict())
    x = torch.randn(40, 6, dtype=torch.float64)
    results = []
    for norm, xi in ((compiled.train(), x.float()), (ref.train(), x)):
        xi = xi.t().contiguous().requires_grad_(True)  # (6, 40) leaf; its transpose is a non-contiguous input
        (gx,) = torch.autograd.grad((norm(xi.t()) ** 3).sum(), xi, create_graph=True)
        results.append(torch.autograd.grad((gx**2).sum(), [xi, norm.weight]))
    for got, want in zip(*results):
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


@pytest.mark.parametrize("kind", ["gn", "cn", "rms"])
def test_double_backward_matches_the_reference_and_keeps_statistics(kind: str) -> None:
    # An eikonal-style loss: the gradient of the output w.r.t. the input, differentiated again.
    fast, ref = _twins(kind, 4)
    x = torch.randn(12, 4, dtype=torch.float64)
    results = []
    for norm in (fast.train(), ref.train()):
        xi = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad((norm(xi) ** 3).sum(), xi, create_graph=True)
        results.append(torch.autograd.grad((gx**2).sum(), [xi, norm.weight]))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    for (name, got), (_, want) in zip(fast.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)  # one update each, not two


def test_gradgradcheck_through_fast_cross_norm() -> None:
    norm = build_norm("cn", 3, impl="fast").double().train()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(norm, (x,))


@pytest.mark.parametrize("kind", ["ln", "rms"])  # bn/gn/cn: tests/analysis (NTK) runs them under torch.func
def test_torch_func_transforms_use_the_reference(kind: str) -> None:
    from torch.func import functional_call, jacrev

    fast, ref = _twins(kind, 3)
    x = torch.randn(6, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in fast.named_parameters()}
    jac = jacrev(lambda p: functional_call(fast.train(), p, (x,)))(params)
    want = jacrev(lambda p: functional_call(ref.train(), p, (x,)))(params)
    for name in params:
        torch.testing.assert_close(jac[name], want[name], rtol=1e-9, atol=1e-9)


@needs_kernels
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (40, 6), (300, 17)])
def test_compiled_cross_norm_second_and_third_derivatives(shape: tuple[int, int], affine: bool) -> None:
    # Losses on each of the three first-order gradients (input, weight, bias: the v, v_w and v_b inputs of the
    # double-backward kernel) and on all of them, differentiated without create_graph (the C++ kernel), and a third
    # derivative (create_graph: the analytic-expression fallback), against float64 autograd of the reference.
    _, ref = _twins("cn", shape[1], affine=affine)
    compiled = build_norm("cn", shape[1], impl="compiled", affine=affine)
    compiled.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * 2 + 0.5
    results = []
    for norm, xi in ((compiled.train(), x.float()), (ref.train(), x)):
        xi = xi.clone().requires_grad_(True)
        params = [p for p in (norm.weight, norm.bias) if p is not None]
        grads = torch.autograd.grad((norm(xi) ** 3).sum(), [xi, *params], create_graph=True)
        losses = [grads[0].square().sum(), *[(g * torch.arange(1.0, g.numel() + 1)).square().sum() for g in grads[1:]]]
        out = []
        for loss in [*losses, sum(losses)]:
            out += torch.autograd.grad(loss, [xi, *params], retain_graph=True, allow_unused=True)
        second = torch.autograd.grad(sum(losses), [xi, *params], create_graph=True)
        out += torch.autograd.grad((second[0] ** 2).sum(), [xi, *params])
        results.append(out)
    for i, (got, want) in enumerate(zip(*results)):
        if want is None:
            assert got is None or not got.abs().max() > 0, i
            continue
        want = want.detach()
        atol = 1e-3 * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got.detach().double(), want, rtol=1e-3, atol=atol, msg=f"output {i}")
