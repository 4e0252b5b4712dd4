"""Empirical NTK: analytic kernels, naive references (with and without batch coupling), state left untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from norm_nerf.analysis.freq import uniform_grid
from norm_nerf.analysis.ntk import empirical_ntk, jacobian_blocks, ntk_eigenvalues, spectrum_summary
from norm_nerf.core import build_network


def _real_flat(g: Tensor) -> Tensor:
    return (torch.view_as_real(g) if g.is_complex() else g).reshape(-1)


def _naive_jacobian(outputs: list[Tensor], params: list[Tensor]) -> Tensor:
    """One backward pass per scalar output, rows stacked (float64)."""
    rows = []
    for out in outputs:
        grads = torch.autograd.grad(out, params, retain_graph=True)
        rows.append(torch.cat([_real_flat(g) for g in grads]))
    return torch.stack(rows).double()


def per_sample_ntk(net: nn.Module, x: Tensor) -> Tensor:
    """Reference without batch coupling: every point is its own forward pass."""
    params = list(net.parameters())
    j = _naive_jacobian([net(x[i : i + 1])[0, 0] for i in range(x.shape[0])], params)
    return j @ j.T


def one_batch_ntk(net: nn.Module, x: Tensor) -> Tensor:
    """Reference with batch coupling: ONE train-mode forward, then backpropagate each output separately."""
    net = copy.deepcopy(net).train()
    out = net(x)
    j = _naive_jacobian([out[i, 0] for i in range(x.shape[0])], list(net.parameters()))
    return j @ j.T


def _close(a: Tensor, b: Tensor, rtol: float = 1e-5) -> None:
    scale = b.abs().max()
    assert (a - b).abs().max() <= rtol * scale, f"max diff {(a - b).abs().max():.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("bias", [False, True])
def test_linear_model_ntk_is_analytic(bias: bool) -> None:
    x = torch.randn(12, 3)
    net = nn.Linear(3, 1, bias=bias)
    expected = x.double() @ x.double().T + (1.0 if bias else 0.0)
    _close(empirical_ntk(net, x), expected)


def test_plain_relu_ntk_equals_per_sample_gradient_loop() -> None:
    net = build_network("relu", 1, 1, depth=2, width=8, seed=1)
    x = torch.linspace(-1, 1, 10)[:, None]
    _close(empirical_ntk(net, x, chunk=3), per_sample_ntk(net, x))


@pytest.mark.parametrize("method", ["relu+cn", "relu+bn", "relu+gn"])
def test_batch_coupled_ntk_equals_one_batch_jacobian(method: str) -> None:
    net = build_network(method, 1, 1, depth=2, width=8, seed=2)
    x = torch.linspace(-1, 1, 10)[:, None]
    k = empirical_ntk(net, x, chunk=4)
    _close(k, one_batch_ntk(net, x))
    # The coupling matters: treating the points as independent gives a different kernel.
    assert (k - per_sample_ntk(net.train(), x)).abs().max() > 1e-2 * k.abs().max()


def test_complex_parameters_count_as_real_pairs() -> None:
    net = build_network("wire", 1, 1, depth=2, width=6, seed=3)
    assert any(p.is_complex() for p in net.parameters())
    x = torch.linspace(-1, 1, 7)[:, None]
    _close(empirical_ntk(net, x), per_sample_ntk(net, x), rtol=1e-4)


def test_chunk_size_and_output_selection() -> None:
    net = build_network("relu+cn", 1, 2, depth=2, width=8, seed=4)
    x = torch.linspace(-1, 1, 9)[:, None]
    k0 = empirical_ntk(net, x, output=0, chunk=1)
    _close(empirical_ntk(net, x, output=0), k0)  # automatic chunk
    _close(empirical_ntk(net, x, output=0, chunk=9), k0)
    _close(empirical_ntk(net, x, output=None, chunk=4), k0 + empirical_ntk(net, x, output=1))
    with pytest.raises(ValueError, match="output index 2"):
        empirical_ntk(net, x, output=2)
    with pytest.raises(ValueError, match="chunk"):
        jacobian_blocks(net, x, chunk=0)
    with pytest.raises(ValueError, match="shape"):
        empirical_ntk(net, x[:, 0])


@pytest.mark.parametrize("start_in_train_mode", [True, False])
def test_ntk_leaves_running_stats_params_and_modes_untouched(start_in_train_mode: bool) -> None:
    net = build_network("relu+cn", 1, 1, depth=3, width=16, seed=5)
    x = uniform_grid(32)
    net.train()
    net(x * 0.5 + 0.2)  # non-initial running statistics
    net.train(start_in_train_mode)
    before = copy.deepcopy(net.state_dict())
    flags = [m.training for m in net.modules()]
    empirical_ntk(net, x, chunk=8)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in net.modules()] == flags
    # ... and the norms update again afterwards (the update switch was restored).
    net.train()
    net(x)
    assert not torch.equal(before["body.norms.0.running_mean"], net.state_dict()["body.norms.0.running_mean"])


def test_eigenvalues_real_nonnegative_and_clamping_reported() -> None:
    net = build_network("pe+cn", 1, 1, depth=2, width=16, seed=6)
    eig, report = ntk_eigenvalues(empirical_ntk(net, uniform_grid(24)))
    assert eig.dtype == torch.float64 and not eig.is_complex()
    assert (eig >= 0).all() and report["most_negative"] <= 0
    eig, report = ntk_eigenvalues(torch.diag(torch.tensor([2.0, -1e-12, 0.5], dtype=torch.float64)))
    assert eig.tolist() == [0.0, 0.5, 2.0]
    assert report == {"clamped_negative": 1, "most_negative": -1e-12}


def test_spectrum_summary_hand_computed() -> None:
    s = spectrum_summary(torch.tensor([0.0, 1e-5, 0.5, 1.0, 2.0]), rtol=1e-9)
    assert s["max"] == 2.0 and s["median"] == 0.5 and s["median_over_max"] == 0.25
    assert s["mean"] == pytest.approx(3.50001 / 5)
    assert s["variance"] == pytest.approx(torch.tensor([0.0, 1e-5, 0.5, 1.0, 2.0]).double().var(correction=0).item())
    assert s["frac_below_1e-3_max"] == pytest.approx(0.4)
    assert s["condition_number"] == pytest.approx(2e5) and s["rank"] == 4


def test_normalized_networks_shift_ntk_spectrum_up_at_init() -> None:
    """The papers' claim: BN/CN give a larger median eigenvalue relative to the max than plain ReLU."""
    x = uniform_grid(256)
    ratio = {}
    for method in ("relu", "relu+bn", "relu+cn"):
        eig, _ = ntk_eigenvalues(empirical_ntk(build_network(method, 1, 1, depth=4, width=64, seed=0), x))
        ratio[method] = spectrum_summary(eig)["median_over_max"]
    assert ratio["relu+bn"] > 10 * ratio["relu"], ratio
    assert ratio["relu+cn"] > 10 * ratio["relu"], ratio
