"""Batch statistics that are synchronised across ranks when ``torch.distributed`` is initialised.

Batch-dependent normalizations (``bn``, ``gn``, ``cn``) need per-channel moments over *all* points of the
global batch; with data parallelism each rank only sees its shard. :func:`column_moments` computes the moments
from sums that are all-reduced with a differentiable all-reduce, so that N ranks train exactly the model that
one process would train on the concatenated batch (the SyncBatchNorm idea).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.local_sum import world_local_sum
from norm_nerf.core.moments import mean_var, unbiased_denominator


def distributed_world_size() -> int:
    """Number of ranks when ``torch.distributed`` is initialised, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def synced(sync: bool) -> bool:
    """Whether a layer with ``sync`` all-reduces its batch statistics now: more than one rank exists."""
    return sync and distributed_world_size() > 1


def sum_over_ranks(*parts: Tensor) -> list[Tensor]:
    """The sums over all ranks of ``parts`` with ONE all-reduce: flattened into one float64 buffer (partial sums of
    many float32 terms, as the kernels accumulate them), returned as float64 tensors in the shapes of ``parts``.
    Not differentiable (callers all-reduce the backward's sums themselves)."""
    flat = all_reduce_sum_(torch.cat([p.reshape(-1).to(torch.float64) for p in parts]))
    return [t.reshape(p.shape) for t, p in zip(flat.split([p.numel() for p in parts]), parts)]


def count_over_ranks(n: int, sums: Tensor) -> tuple[float, Tensor]:
    """``(rows of all ranks, sums of all ranks)`` for a rank's ``n`` rows and its partial ``sums``: one all-reduce.
    The count is read on the host (a device sync where the sums live on a GPU): the kernels take it as a scalar."""
    count, total = sum_over_ranks(torch.full((1,), float(n), dtype=torch.float64, device=sums.device), sums)
    return float(count), total


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Replace the contiguous tensor ``t`` by its sum over the ranks; returns it. Between the processes of one
    machine under gloo through shared memory (:mod:`norm_nerf.core.local_sum`), else ``torch.distributed.all_reduce``.
    """
    local = world_local_sum()
    if local is not None and local.fits(t):
        return local.sum_(t)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class _SumOverRanks(torch.autograd.Function):
    """Differentiable sum over ranks: the backward pass sums the gradients over the ranks too (itself
    differentiable, for the double backward of an eikonal loss)."""

    @staticmethod
    def forward(ctx: object, t: Tensor) -> Tensor:
        return all_reduce_sum_(t.contiguous().clone())

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return _SumOverRanks.apply(grad)


def _all_reduce_sum(t: Tensor) -> Tensor:
    """Differentiable sum over ranks (the backward pass all-reduces the gradients too)."""
    return _SumOverRanks.apply(t)


class _KnownSum(torch.autograd.Function):
    """``total``, already the sum over ranks of ``local``, as a differentiable function of ``local``: no collective
    forward; backward the all-reduce of the gradient that a differentiable all-reduce of ``local`` would make."""

    @staticmethod
    def forward(ctx: object, local: Tensor, total: Tensor) -> Tensor:
        return total.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor, None]:
        return _all_reduce_sum(grad), None


def column_moments(
    x: Float[Tensor, "n c"], sync: bool = True, known: Tensor | None = None
) -> tuple[float | Tensor, Float[Tensor, "c"], Float[Tensor, "c"]]:  # noqa: F821
    """Per-column count, mean and *unbiased* variance over the rows of ``x``.

    When ``sync`` and more than one rank exist, the moments are those of the rows of all ranks together.
    Returns ``(count, mean, var)``; ``count`` is a float (a 0-dim tensor when synchronised). ``known``: the packed
    sums of all ranks ``[count, column sums, column sums of squares]`` where a kernel's forward all-reduced them
    already (its double backward recomputes these expressions): then no collective forward, the same backward.
    """
    if synced(sync):
        n_local = torch.full((1,), float(x.shape[0]), dtype=x.dtype, device=x.device)  # a fill, no host copy
        # One all-reduce for count, sum and sum of squares: [1 + C + C].
        packed = torch.cat([n_local, x.sum(dim=0), (x * x).sum(dim=0)])
        packed = _all_reduce_sum(packed) if known is None else _KnownSum.apply(packed, known.to(x.dtype))
        c = x.shape[1]
        n = packed[0]
        mean = packed[1 : 1 + c] / n
        sq = packed[1 + c :] / n
        var_biased = (sq - mean * mean).clamp_min(0.0)
        var = var_biased * n / unbiased_denominator(n)
        return n, mean, var
    mean, var = mean_var(x, dim=0)
    return float(x.shape[0]), mean[0], var[0]
