"""Analytic norm gradients as differentiable expressions (double backward) against autograd of the reference."""

from __future__ import annotations

import functools

import pytest
import torch

from norm_nerf.core.norm_grads import cross_norm_grads, rms_norm_grads, scale_shift_grads
from norm_nerf.core.norms import EPS, build_norm

GRADS = {
    "bn": functools.partial(scale_shift_grads, eps=EPS, global_stats=False),
    "gn": functools.partial(scale_shift_grads, eps=EPS, global_stats=True),
    "cn": functools.partial(cross_norm_grads, eps=EPS),
    "rms": functools.partial(rms_norm_grads, eps=EPS),
}


def _reference(kind: str, c: int, affine: bool) -> torch.nn.Module:
    norm = build_norm(kind, c, impl="reference", affine=affine).double().train()
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1.0, 1.0)
    return norm


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (2, 3), (9, 6)])
@pytest.mark.parametrize("kind", list(GRADS))
def test_analytic_grads_match_autograd_of_the_reference(kind: str, shape: tuple[int, int], affine: bool) -> None:
    torch.manual_seed(3)
    norm = _reference(kind, shape[1], affine)
    x = (torch.randn(*shape, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    g = torch.randn(*shape, dtype=torch.float64)
    params = [norm.weight, norm.bias] if affine else []
    want = torch.autograd.grad(norm(x), [x, *params], g)
    dx, dw, db = GRADS[kind](x, norm.weight, g)
    got = [dx, dw, db] if affine else [dx]
    assert (dw is None and db is None) != affine
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", list(GRADS))
def test_second_derivatives_match_the_reference(kind: str) -> None:
    # An eikonal-style loss through two stacked layers: the input gradient, differentiated again.
    torch.manual_seed(4)
    ref = torch.nn.Sequential(_reference(kind, 5, True), torch.nn.Softplus(), _reference(kind, 5, True))
    fast = torch.nn.Sequential(build_norm(kind, 5, impl="fast"), torch.nn.Softplus(), build_norm(kind, 5, impl="fast"))
    fast = fast.double().train()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(11, 5, dtype=torch.float64)
    results = []
    for net in (fast, ref):
        xi = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad((net(xi) ** 2).sum(), xi, create_graph=True)
        results.append(torch.autograd.grad((gx**2).sum(), [xi, *net.parameters()]))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["gn", "cn", "rms"])
def test_gradgradcheck_through_the_fast_functions(kind: str) -> None:
    norm = build_norm(kind, 3, impl="fast").double().train()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(norm, (x,))
