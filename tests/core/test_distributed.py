"""Synchronised batch statistics: two gloo processes on CPU train exactly the concatenated-batch model."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from norm_nerf.core.norms import build_norm
from tests.two_ranks import run_two_ranks

N_PER_RANK = (5, 9)  # unequal shards on purpose
C = 4


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(sum(N_PER_RANK), C, generator=gen, dtype=torch.float64) * 2 + 1
    r = torch.randn(sum(N_PER_RANK), C, generator=gen, dtype=torch.float64)
    return x, r


def _shard(t: torch.Tensor, rank: int) -> torch.Tensor:
    start = sum(N_PER_RANK[:rank])
    return t[start : start + N_PER_RANK[rank]]


def _weights(norm: torch.nn.Module) -> None:
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, C))
        norm.bias.copy_(torch.linspace(-1, 1, C))


def _worker(rank: int, kind: str) -> dict:
    x, r = _data()
    xs = _shard(x, rank).clone().requires_grad_(True)
    norm = build_norm(kind, C).double().train()
    _weights(norm)
    y = norm(xs)
    (y * _shard(r, rank)).sum().backward()
    return {
        "y": y.detach(),
        "x_grad": xs.grad,
        "w_grad": norm.weight.grad,
        "buffers": {k: v.clone() for k, v in norm.named_buffers()},
    }


@pytest.mark.slow  # spawns two gloo processes
@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
def test_two_process_sync_equals_concatenated_batch(kind: str, tmp_path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    results = run_two_ranks(_worker, (kind,), tmp_path)

    x, r = _data()
    x = x.clone().requires_grad_(True)
    norm = build_norm(kind, C).double().train()
    _weights(norm)
    y = norm(x)
    (y * r).sum().backward()

    for rank, res in enumerate(results):
        torch.testing.assert_close(res["y"], _shard(y.detach(), rank))
        torch.testing.assert_close(res["x_grad"], _shard(x.grad, rank))
        for name, buf in norm.named_buffers():
            torch.testing.assert_close(res["buffers"][name], buf, msg=f"{kind} {name} rank {rank}")
    # Parameter gradients summed over ranks (what DDP all-reduces) equal the full-batch gradient.
    torch.testing.assert_close(results[0]["w_grad"] + results[1]["w_grad"], norm.weight.grad)
