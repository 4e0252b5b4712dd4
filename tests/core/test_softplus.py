"""The compiled softplus (``norm_nerf.core.softplus``) against ATen's in float64: values, first, second and third
derivatives, the tails, NaN/inf, and when the kernels are (not) used."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.softplus import Softplus
from tests.core.test_norm_functions import needs_kernels


def _derivatives(f, x: torch.Tensor) -> list[torch.Tensor]:
    """``f(x)`` and the input gradients of nested losses: the first derivative, the second without ``create_graph``
    (the double-backward kernel) and with it, and the third (through the second's ``create_graph`` path)."""
    x = x.clone().requires_grad_(True)
    y = f(x)
    (g,) = torch.autograd.grad((y**2).sum(), x, create_graph=True)
    (h_plain,) = torch.autograd.grad((g**2).sum(), x, retain_graph=True)
    (h,) = torch.autograd.grad((g**2).sum(), x, create_graph=True)
    (k,) = torch.autograd.grad((h * x).sum(), x)
    return [y.detach(), g.detach(), h_plain, h.detach(), k]


def _inputs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    scales = (0.001, 0.1, 1.0, 3.0)
    edges = torch.tensor([0.0, 1e-30, -1e-30, 50.0])
    return torch.cat([torch.randn(20000, generator=gen) * s for s in scales] + [edges])


@needs_kernels
@pytest.mark.parametrize("beta", [0.5, 1.0, 100.0])
def test_compiled_softplus_matches_aten_in_float64(beta: float) -> None:
    x = _inputs()
    got = _derivatives(Softplus(beta, impl="compiled"), x)
    want = _derivatives(lambda t: F.softplus(t, beta), x.double())  # the same float32 inputs, exact arithmetic
    for order, (g, w) in enumerate(zip(got, want)):  # ATen's own float32 errors are of the same size
        torch.testing.assert_close(g.double(), w, rtol=2e-6, atol=1e-6 * float(w.abs().max()), msg=f"output {order}")


@needs_kernels
def test_compiled_softplus_tails_nan_and_inf() -> None:
    x = torch.tensor([-1e4, -5.0, -0.9, -0.5, 0.5, 0.9, 5.0, 1e4, float("inf"), -float("inf")])
    m = Softplus(100.0, impl="compiled")
    xi = x.clone().requires_grad_(True)
    y = m(xi)
    (g,) = torch.autograd.grad(y.sum(), xi)
    torch.testing.assert_close(y.detach(), F.softplus(x.double(), 100.0).float(), rtol=1e-6, atol=1e-30)
    torch.testing.assert_close(g, torch.sigmoid(100.0 * x.double()).float(), rtol=1e-6, atol=1e-30)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((y != 0) & (y.abs() < tiny)).any() and not ((g != 0) & (g.abs() < tiny)).any()
    nan = torch.tensor([1.0, float("nan"), -1.0]).requires_grad_(True)
    out = m(nan)
    (gx,) = torch.autograd.grad(out.sum(), nan, create_graph=True)
    (hx,) = torch.autograd.grad(gx.sum(), nan)
    for t in (out, gx, hx):  # a diverged input stays visible, as with ATen
        assert torch.isnan(t[1]) and torch.isfinite(t[[0, 2]]).all()


@needs_kernels
def test_softplus_uses_the_kernels_only_where_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    def grad_fn(m: Softplus, x: torch.Tensor) -> str:
        return type(m(x.requires_grad_(True)).grad_fn).__name__

    x = torch.randn(8, 4)
    assert "SoftplusFunction" in grad_fn(Softplus(100.0), x.clone())  # auto on float32 CPU
    assert "SoftplusFunction" not in grad_fn(Softplus(100.0), x.clone().double())
    assert "SoftplusFunction" not in grad_fn(Softplus(100.0, impl="reference"), x.clone())
    for beta in (-2.0, 0.0, float("inf")):  # outside the kernels' formulas: ATen, with ATen's values
        m = Softplus(beta, impl="compiled")
        assert "SoftplusFunction" not in grad_fn(m, x.clone())
        torch.testing.assert_close(m(x), F.softplus(x, beta))
    monkeypatch.setenv("NORM_NERF_COMPILED", "0")
    assert "SoftplusFunction" not in grad_fn(Softplus(100.0), x.clone())
    assert "SoftplusFunction" in grad_fn(Softplus(100.0, impl="compiled"), x.clone())
    with pytest.raises(ValueError, match="impl"):
        Softplus(1.0, impl="fast")


@needs_kernels
def test_softplus_under_torch_func_falls_back_to_aten() -> None:
    from torch.func import jacrev

    x = torch.randn(5)
    jac = jacrev(Softplus(10.0))(x)
    torch.testing.assert_close(jac, torch.diag(torch.sigmoid(10.0 * x)))


@needs_kernels
def test_norm_mlp_eikonal_gradients_match_the_reference_activation() -> None:
    # NeuS-shaped: softplus MLP with cross norm, loss on the input gradient (double backward through both kernels).
    torch.manual_seed(0)
    net = NormMLP(3, 2, 3, 16, norm="cn", activation="softplus", softplus_beta=100.0)
    ref = NormMLP(3, 2, 3, 16, norm="cn", activation="softplus", softplus_beta=100.0, norm_opts={"impl": "reference"})
    ref.load_state_dict(net.state_dict())
    ref = ref.double()
    for act in ref.acts:
        act.impl = "reference"
    x = torch.rand(64, 3, dtype=torch.float64) * 2 - 1
    results = []
    for model, xi in ((net, x.float()), (ref, x)):
        xi = xi.clone().requires_grad_(True)
        h = model.layers[0](xi)
        assert type(model.acts[0](model.norms[0](h)).grad_fn).__name__ == (
            "SoftplusFunctionBackward" if model is net else "SoftplusBackward0"
        )
        out = model(xi)
        (normal,) = torch.autograd.grad(out[:, 0].sum(), xi, create_graph=True)
        loss = ((normal.norm(dim=-1) - 1) ** 2).mean() + out.square().mean()
        results.append(torch.autograd.grad(loss, [xi, *model.parameters()]))
    for got, want in zip(*results):
        torch.testing.assert_close(got.double(), want, rtol=2e-3, atol=2e-3 * float(want.abs().max()))
