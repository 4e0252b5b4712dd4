"""Precise-BN recalibration: resets and re-estimates statistics, closes the train/eval gap."""

from __future__ import annotations

import math

import pytest
import torch

from norm_nerf.core import build_network, recalibrate, running_stat_norms


def _fit_toy(method: str, steps: int = 150) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 256)[:, None]
    y = torch.sin(6 * math.pi * x) + 0.5 * torch.sign(x)
    # A small momentum makes the running statistics lag behind the weights: the gap to close.
    net = build_network(method, 1, 1, depth=4, width=32, norm_momentum=0.01)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):  # full-batch training, as the signal tasks do
        loss = (net(x) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, x


@pytest.mark.parametrize("method", ["relu+bn", "relu+cn", "relu+gn"])
def test_recalibration_closes_train_eval_gap(method: str) -> None:
    net, x = _fit_toy(method)
    batches = [x[torch.randperm(256)] for _ in range(16)]  # training-sized batches, shuffled
    net.train()
    with torch.no_grad():
        train_out = torch.stack([net(b) for b in batches])
    net.eval()
    with torch.no_grad():
        gap_before = (torch.stack([net(b) for b in batches]) - train_out).abs().mean().item()
    assert recalibrate(net, batches) == 16
    assert not net.training
    with torch.no_grad():
        gap_after = (torch.stack([net(b) for b in batches]) - train_out).abs().mean().item()
    assert gap_before > 0.05, f"toy setup produced no gap to close ({gap_before})"
    assert gap_after < 0.05 * gap_before, (gap_before, gap_after)
    assert gap_after < 0.03


def test_recalibration_uses_equal_weights_and_restores_flags() -> None:
    net = build_network("relu+cn", 2, 1, depth=2, width=8)
    net.eval()
    net.body.layers[0].train()  # a mixed state must come back as it was
    first = running_stat_norms(net)[0]
    batches = [torch.randn(50, 2), torch.randn(30, 2) + 1]
    recalibrate(net, batches)
    assert not net.training and net.body.layers[0].training
    # running_n is the plain average of the two batch sizes, not a momentum blend.
    torch.testing.assert_close(first.stat("running_n"), torch.tensor([40.0]))
    assert not first.recalibrating


def test_recalibrate_needs_batches_and_keeps_statistics_on_error() -> None:
    net = build_network("relu+bn", 2, 1, depth=2, width=8)
    net(torch.randn(16, 2))
    before = running_stat_norms(net)[0].stat("running_mean").clone()
    with pytest.raises(ValueError, match="no batches"):
        recalibrate(net, [])
    torch.testing.assert_close(running_stat_norms(net)[0].stat("running_mean"), before)


def test_recalibrate_without_batch_norms_is_a_no_op() -> None:
    assert recalibrate(build_network("pe+ln", 2, 1, depth=2, width=8), [torch.randn(4, 2)]) == 0


def test_custom_forward_and_max_batches() -> None:
    net = build_network("relu+gn", 2, 1, depth=2, width=8)
    seen = []

    def forward(model, batch):
        seen.append(batch["xy"].shape[0])
        return model(batch["xy"])

    n = recalibrate(net, ({"xy": torch.randn(10 + i, 2)} for i in range(10)), forward=forward, max_batches=3)
    assert n == 3 and seen == [10, 11, 12]
