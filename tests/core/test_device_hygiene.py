"""Device hygiene (issue 19): the core runs on the ``meta`` device, which has no data.

A meta tensor raises on every host read (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``,
``.numpy()``) and on every op that mixes it with a non-scalar CPU tensor, so a train step here proves that the norms,
MLPs, encodings and baselines make no device-to-host sync per layer and step, create no per-step tensor on the CPU
and take no CPU-only branch for a tensor on another device. (The eager ``fast`` Functions are what a GPU runs when
the Triton kernels do not serve or ``NORM_NERF_TRITON=0``; ``impl="auto"`` on meta is ``fast``.) The one host read
left is the once-per-layer check that warns when a layer enters eval mode without ever having seen a training batch;
the tests mark it done.
"""

from __future__ import annotations

import pytest
import torch

from norm_nerf.core import NormMLP, build_network, recalibrate, running_stat_norms

META = torch.device("meta")
KINDS = ("none", "bn", "ln", "gn", "cn", "rms")


def _skip_untrained_eval_check(model: torch.nn.Module) -> None:
    for norm in running_stat_norms(model):
        norm._checked_untracked = True


def _step(model: torch.nn.Module, x: torch.Tensor, eikonal: bool) -> None:
    xi = x.requires_grad_(eikonal)
    out = model(xi)
    loss = out.square().mean()
    if eikonal:  # NeuS: a loss on the input gradient, so every layer is differentiated twice
        (normal,) = torch.autograd.grad(out[:, :1].sum(), xi, create_graph=True)
        loss = loss + (normal.norm(dim=-1) - 1.0).square().mean()
    loss.backward()


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("impl", ["auto", "fast", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_train_steps_on_meta(kind: str, impl: str, momentum: float | None) -> None:
    for activation, eikonal in (("relu", False), ("softplus", True)):
        opts = {"impl": impl, "momentum": momentum}
        net = NormMLP(3, 4, 3, 16, norm=kind, activation=activation, norm_opts=opts).to(META).train()
        for n in (64, 1):
            _step(net, torch.rand(n, 3, device=META), eikonal)
        assert all(p.grad is not None and p.grad.device == META for p in net.parameters())
        assert all(b.device == META for b in net.buffers())
        _skip_untrained_eval_check(net)
        with torch.no_grad():
            net.eval()(torch.rand(10, 3, device=META))


@pytest.mark.parametrize("method", ["pe+cn", "relu+bn", "rff+gn", "hash+cn", "pe+rms", "siren", "wire", "mfn"])
def test_networks_on_meta(method: str) -> None:
    net = build_network(method, 3, 2, depth=2, width=16).to(META).train()
    _step(net, torch.rand(32, 3, device=META), eikonal=False)
    _skip_untrained_eval_check(net)
    with torch.no_grad():
        assert net.eval()(torch.rand(5, 3, device=META)).device == META


def test_recalibration_on_meta() -> None:
    net = NormMLP(2, 1, 2, 8, norm="cn").to(META)
    assert recalibrate(net, [torch.rand(16, 2, device=META) for _ in range(3)]) == 3
