"""Multi-device training: the nerfstudio field's norms synchronise their batch statistics across ranks, so two
processes with half the rays each compute what one process computes on all rays (gloo, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from tests.two_ranks import run_two_ranks

RAYS_PER_RANK = (5, 7)
SAMPLES = 4


def _field(norm: str):
    from nerfstudio.field_components.encodings import NeRFEncoding

    from norm_nerf.ns.fields import NormNeRFField, NormOptions

    torch.manual_seed(0)
    pos, dirs = NeRFEncoding(3, 4, 0.0, 3.0, include_input=True), NeRFEncoding(3, 2, 0.0, 2.0, include_input=True)
    return NormNeRFField(pos, dirs, NormOptions(norm=norm), base_mlp_num_layers=3, base_mlp_layer_width=32,
                         head_mlp_num_layers=1, head_mlp_layer_width=16, skip_connections=(2,)).train()  # fmt: skip


def _samples(rays: slice):
    from nerfstudio.cameras.rays import Frustums, RaySamples

    gen = torch.Generator().manual_seed(1)
    n = sum(RAYS_PER_RANK)
    origins = torch.randn(n, 1, 3, generator=gen).expand(n, SAMPLES, 3)
    directions = torch.nn.functional.normalize(torch.randn(n, 1, 3, generator=gen), dim=-1).expand(n, SAMPLES, 3)
    starts = torch.rand(n, SAMPLES, 1, generator=gen) * 2
    frustums = Frustums(origins=origins[rays], directions=directions[rays], starts=starts[rays],
                        ends=starts[rays] + 0.1, pixel_area=torch.ones(n, SAMPLES, 1)[rays])  # fmt: skip
    weights = torch.randn(n, SAMPLES, 4, generator=gen)[rays]
    return RaySamples(frustums=frustums), weights


def _step(field, rays: slice) -> dict:
    from nerfstudio.field_components.field_heads import FieldHeadNames

    samples, weights = _samples(rays)
    out = field(samples)
    pred = torch.cat([out[FieldHeadNames.DENSITY], out[FieldHeadNames.RGB]], dim=-1)
    (pred * weights).sum().backward()
    return {
        "pred": pred.detach(),
        "grads": {k: p.grad.clone() for k, p in field.named_parameters() if p.grad is not None},
        "buffers": {k: v.clone() for k, v in field.named_buffers() if "running" in k},
    }


def _rank_slice(rank: int) -> slice:
    start = sum(RAYS_PER_RANK[:rank])
    return slice(start, start + RAYS_PER_RANK[rank])


def _worker(rank: int, norm: str) -> dict:
    return _step(_field(norm), _rank_slice(rank))


@pytest.mark.slow  # spawns two gloo processes
@pytest.mark.parametrize("norm", ["cn", "bn"])
def test_two_ranks_train_the_one_process_field(norm: str, tmp_path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    ranks = run_two_ranks(_worker, (norm,), tmp_path)
    full = _step(_field(norm), slice(None))
    assert full["buffers"]
    for rank, res in enumerate(ranks):
        torch.testing.assert_close(res["pred"], full["pred"][_rank_slice(rank)], rtol=1e-4, atol=1e-5)
        for name, buf in full["buffers"].items():
            torch.testing.assert_close(res["buffers"][name], buf, rtol=1e-4, atol=1e-5, msg=f"{name} rank {rank}")
    for name, grad in full["grads"].items():  # what DDP's all-reduce sums
        torch.testing.assert_close(ranks[0]["grads"][name] + ranks[1]["grads"][name], grad, rtol=1e-3, atol=1e-5)
