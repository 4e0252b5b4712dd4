"""The torch.compile path: a model built with ``impl="reference"`` under ``torch.compile`` trains like eager."""

from __future__ import annotations

import pytest
import torch

from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import running_stat_norms


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bn", "cn", "rms"])
def test_compiled_model_matches_eager(kind: str) -> None:
    torch.manual_seed(0)
    eager = NormMLP(2, 3, 3, 16, norm=kind, norm_opts={"impl": "reference"}).train()
    twin = NormMLP(2, 3, 3, 16, norm=kind, norm_opts={"impl": "reference"}).train()
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin)
    for step in range(3):  # updates running statistics each step; batch size changes once
        x = torch.rand(64 if step < 2 else 48, 2, generator=torch.Generator().manual_seed(step))
        outs = []
        for net in (eager, compiled):
            net.zero_grad()
            y = net(x)
            y.square().mean().backward()
            outs.append((y.detach(), [p.grad.clone() for p in net.parameters()]))
        torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
        for g_comp, g_eager in zip(outs[1][1], outs[0][1]):
            torch.testing.assert_close(g_comp, g_eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(running_stat_norms(eager), running_stat_norms(twin)):
        for (name, got), (_, want) in zip(b.named_buffers(), a.named_buffers()):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    eager.eval()
    compiled.eval()
    x = torch.rand(10, 2)
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
