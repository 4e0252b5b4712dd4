"""Several ranks as threads of this process, for synchronised statistics without a process group: while
:func:`run_thread_ranks` runs, ``torch.distributed.all_reduce`` sums its tensor over the threads (in rank order, so
every rank gets the same bits) and the norms see a world of that many ranks. Used where a real group cannot run:
the Triton kernels under Triton's interpreter (``tests/core/triton_cases.py``), and to count collectives per pass.
:func:`check_synced_layer` is the check both back ends share."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

import norm_nerf.core.distributed as distributed
from norm_nerf.core.functions.backend import backend_of
from norm_nerf.core.norms import build_norm

T = TypeVar("T")


def run_thread_ranks(work: Callable[[int], T], world: int = 2) -> tuple[list[T], list[int]]:
    """``([work(0), ..., work(world - 1)], all-reduces per rank)`` with each ``work(rank)`` in a thread of its own."""
    local = threading.local()
    turn = threading.Lock()  # one rank runs at a time (Triton's interpreter is not thread-safe): all_reduce hands on
    barrier = threading.Barrier(world, timeout=120)
    slots: list[torch.Tensor | None] = [None] * world
    calls, results, errors = [0] * world, [None] * world, []

    def all_reduce(tensor: torch.Tensor, op: object = None, group: object = None, async_op: bool = False) -> None:
        rank = local.rank
        calls[rank] += 1
        slots[rank] = tensor.detach().clone()
        turn.release()
        barrier.wait()
        total = slots[0].clone()
        for other in slots[1:]:
            total += other
        barrier.wait()  # every rank has read the slots before any writes the next ones
        turn.acquire()
        with torch.no_grad():
            tensor.copy_(total)

    def run(rank: int) -> None:
        local.rank = rank
        turn.acquire()
        try:
            results[rank] = work(rank)
        except BaseException as err:  # noqa: BLE001 - reported by the caller
            errors.append(err)
            barrier.abort()
        finally:
            turn.release()

    saved = dist.all_reduce, distributed.distributed_world_size
    dist.all_reduce, distributed.distributed_world_size = all_reduce, lambda: world
    try:
        threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        dist.all_reduce, distributed.distributed_world_size = saved
    if errors:
        raise errors[0]
    return results, calls


def _data(n: int, c: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x, r = (torch.randn(n, c, generator=gen, dtype=torch.float64) * 2 + 1 for _ in range(2))
    w, b = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5, torch.randn(c, generator=gen, dtype=torch.float64)
    return x.to(device), r.to(device), w.to(device), b.to(device)


def _step(kind: str, impl: str, x: torch.Tensor, r: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
          double_backward: bool) -> tuple[dict, str]:  # fmt: skip
    norm = build_norm(kind, x.shape[1], impl=impl).to(x.device, x.dtype).train()
    with torch.no_grad():
        norm.weight.copy_(w)
        norm.bias.copy_(b)
    x = x.clone().requires_grad_(True)
    y = norm(x)
    loss = (y * r).sum()
    if double_backward:  # an eikonal-style loss on the input gradient
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        loss = (gx * gx).sum()
    loss.backward()
    out = {"y": y.detach(), "x_grad": x.grad, "w_grad": norm.weight.grad, "b_grad": norm.bias.grad}
    return {**out, **{k: v.clone() for k, v in norm.named_buffers()}}, backend_of(y)


def check_synced_layer(kind: str, impl: str, device: torch.device, backend: str, shards: tuple[int, ...] = (5, 9),
                       c: int = 4, double_backward: bool = False) -> list[int]:  # fmt: skip
    """Ranks (threads) holding ``shards`` rows each train a float32 ``kind`` layer with ``impl`` as one float64
    reference layer trains on all rows: outputs, input gradients, summed parameter gradients, running statistics.
    Asserts that the ranks ran ``backend`` and agree bitwise on the running statistics; returns the all-reduces per
    rank."""
    x, r, w, b = _data(sum(shards), c, device)
    starts = [sum(shards[:k]) for k in range(len(shards))]

    def work(rank: int) -> tuple[dict, str]:
        rows = slice(starts[rank], starts[rank] + shards[rank])
        return _step(kind, impl, x[rows].float(), r[rows].float(), w.float(), b.float(), double_backward)

    results, calls = run_thread_ranks(work, len(shards))
    want, _ = _step(kind, "reference", x, r, w, b, double_backward)
    for rank, (got, used) in enumerate(results):
        assert used == backend, f"{kind} rank {rank} ran {used}, not {backend}"
        rows = slice(starts[rank], starts[rank] + shards[rank])
        for name in ("y", "x_grad"):
            torch.testing.assert_close(got[name].double(), want[name][rows], rtol=1e-4, atol=1e-4, msg=name)
        for name, value in want.items():
            if name.startswith("running") or name == "num_batches_tracked":
                torch.testing.assert_close(got[name].to(value.dtype), value, rtol=1e-5, atol=1e-5, msg=name)
                assert torch.equal(got[name], results[0][0][name]), f"{name}: ranks differ"
    for name in ("w_grad", "b_grad"):  # what DDP all-reduces (None: the loss does not depend on it)
        if want[name] is None:
            assert all(got[name] is None for got, _ in results), name
            continue
        total = sum(got[name].double() for got, _ in results)
        torch.testing.assert_close(total, want[name], rtol=1e-4, atol=1e-4, msg=name)
    return calls
