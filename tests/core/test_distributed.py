"""Synchronised batch statistics: two gloo processes on CPU train exactly the concatenated-batch model."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from norm_nerf.core.norms import build_norm
from tests.thread_ranks import check_synced_layer
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


def _counting(function, counts: list[int]):
    """``function`` wrapped to append 1 to ``counts`` per call."""

    def counted(*args, **kwargs):
        counts.append(1)
        return function(*args, **kwargs)

    return counted


def _kernel_worker(rank: int, kind: str, double_backward: bool, local: bool) -> dict:
    """A float32 layer with the C++ kernels on this rank's shard: backend, sums over ranks per pass and how many of
    them went through gloo, values, gradients. ``local``: whether the shared-memory sum may be used."""
    import norm_nerf.core.distributed as distributed
    import norm_nerf.core.functions.cross_norm as cross_norm
    from norm_nerf.core.functions.backend import backend_of
    from norm_nerf.core.local_sum import world_local_sum

    os.environ["NORM_NERF_LOCAL_SUM"] = "1" if local else "0"
    x, r = _data()
    xs = _shard(x, rank).float().clone().requires_grad_(True)
    norm = build_norm(kind, C, impl="compiled").train()
    _weights(norm)
    uses_local = world_local_sum() is not None  # set up before counting (its agreement is one gloo all-reduce)
    sums: list[int] = []
    gloo: list[int] = []
    halves: list[int] = []  # cross norm's synced double backward through the kernels' halves
    distributed.all_reduce_sum_ = _counting(distributed.all_reduce_sum_, sums)
    dist.all_reduce = _counting(dist.all_reduce, gloo)
    cross_norm._synced_double_backward = _counting(cross_norm._synced_double_backward, halves)
    y = norm(xs)
    forward = len(sums)
    loss = (y * _shard(r, rank).float()).sum()
    if double_backward:  # an eikonal-style loss on the input gradient: the norm's backward is differentiated
        (gx,) = torch.autograd.grad(loss, xs, create_graph=True)
        loss = (gx * gx).sum()
    loss.backward()
    return {
        "backend": backend_of(y),
        "local": uses_local,
        "forward": forward,
        "backward": len(sums) - forward,
        "gloo": len(gloo),
        "double_backward_halves": len(halves),
        "y": y.detach(),
        "x_grad": xs.grad,
        "w_grad": norm.weight.grad,
        "buffers": {k: v.clone() for k, v in norm.named_buffers()},
    }


def _one_process(kind: str, double_backward: bool) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    x, r = _data()
    x = x.clone().requires_grad_(True)
    norm = build_norm(kind, C, impl="reference").double().train()
    _weights(norm)
    loss = (norm(x) * r).sum()
    if double_backward:
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        loss = (gx * gx).sum()
    loss.backward()
    return x.grad, norm.weight.grad, norm


@pytest.mark.slow  # spawns two gloo processes
@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
@pytest.mark.parametrize("double_backward", [False, True])
@pytest.mark.parametrize("local", [True, False], ids=["shared-memory", "gloo"])
def test_synced_statistics_run_through_the_kernels_with_one_all_reduce_per_pass(
    kind: str, double_backward: bool, local: bool, tmp_path
) -> None:
    """Synced float32 layers run the C++ kernels (backend "compiled") with ONE sum over ranks in the forward pass and
    one in the backward, and train the one-process model on the concatenated batch; a double backward too (three sums
    after the forward: cn's first backward and the two of its double backward's kernel halves; bn/gn through the
    reference expressions with the forward's sums). The sums go
    through shared memory (no gloo call) or, with ``NORM_NERF_LOCAL_SUM=0``, through gloo, with the same results."""
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    from norm_nerf.core.cpu_kernels import cpu_kernels
    from norm_nerf.core.local_sum import shm_available

    if cpu_kernels() is None:
        pytest.skip("the C++ kernels cannot be built here")
    if local and not shm_available():
        pytest.skip("no writable /dev/shm here: the sums go through gloo")
    results = run_two_ranks(_kernel_worker, (kind, double_backward, local), tmp_path)
    x_grad, w_grad, norm = _one_process(kind, double_backward)
    for rank, res in enumerate(results):
        assert res["backend"] == "compiled"
        assert (res["forward"], res["backward"]) == (1, 3 if double_backward else 1)  # as the reference's
        assert res["local"] == local
        assert res["double_backward_halves"] == (1 if kind == "cn" and double_backward else 0)
        assert res["gloo"] == (0 if local else res["forward"] + res["backward"])
        torch.testing.assert_close(res["x_grad"].double(), _shard(x_grad, rank), rtol=1e-4, atol=1e-4)
        for name, buf in norm.named_buffers():
            want = buf if buf.dtype == torch.long else buf.float()
            torch.testing.assert_close(res["buffers"][name], want, msg=f"{kind} {name} rank {rank}")
    torch.testing.assert_close((results[0]["w_grad"] + results[1]["w_grad"]).double(), w_grad, rtol=1e-4, atol=1e-4)
    for name, buf in results[0]["buffers"].items():  # the same sums reach both ranks: bitwise equal statistics
        assert torch.equal(buf, results[1]["buffers"][name]), name


@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
@pytest.mark.parametrize("double_backward", [False, True])
def test_synced_kernels_in_thread_ranks(kind: str, double_backward: bool) -> None:
    """The same with three ranks as threads (tests/thread_ranks.py; the Triton kernels run this check under the
    interpreter): one all-reduce forward, one backward; a double backward makes three after the forward, as the
    reference expressions do."""
    from norm_nerf.core.cpu_kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ kernels cannot be built here")
    calls = check_synced_layer(kind, "compiled", torch.device("cpu"), "compiled", shards=(5, 1, 9),
                               double_backward=double_backward)  # fmt: skip
    assert calls == [1 + (3 if double_backward else 1)] * 3


def _third_derivative(rank: int) -> None:
    from norm_nerf.core.cpu_kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ kernels cannot be built here")
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(6, C, generator=gen).requires_grad_(True)
    y = build_norm("cn", C, impl="compiled").train()(x)
    (gx,) = torch.autograd.grad((y * y.detach()).sum(), x, create_graph=True)
    torch.autograd.grad((gx * gx).sum(), x, create_graph=True)  # asks the double backward for a graph


def test_a_third_derivative_through_synced_cross_norm_kernels_is_refused_by_name() -> None:
    """The synced kernels give second derivatives (eikonal losses); a third one says what to use instead."""
    from tests.thread_ranks import run_thread_ranks

    with pytest.raises(NotImplementedError, match="third derivative .* impl='reference'"):
        run_thread_ranks(_third_derivative, world=2)
