"""Batch norm (per-column statistics) and global norm (one statistic): the reference expression and the train-mode
back ends, one place for the formula.

* the reference expression is :func:`norm_nerf.core.moments.standardize` with the batch statistics (``bn``: per
  column, the biased variance; ``gn``: over all entries, the unbiased one) or, in eval mode, the running ones;
* :class:`ScaleShiftNormFunction`: the eager path (every device);
* :class:`KernelScaleShiftNormFunction`: the same over fused kernels (statistics, forward and input gradient in a
  few passes), the C++ ones on float32 CPU tensors (``csrc/norms.cpp``) or the Triton ones on float32 CUDA tensors
  (:mod:`norm_nerf.core.triton.scale_shift`), which take the same arguments; with synchronised statistics one
  all-reduce of packed partial sums per pass;
* :func:`synced_standardize`: the reference expression with synchronised statistics (its double backward);
* :func:`train_scale_shift`: the table from back end to Function; the layers call it.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.distributed import column_moments, count_over_ranks, sum_over_ranks
from norm_nerf.core.functions.autograd import analytic_double_backward, kernel_args, reference_grads, remember_grads
from norm_nerf.core.moments import colsum, moments, standardize, unbiased_denominator
from norm_nerf.core.norm_grads import scale_shift_grads


class ScaleShiftNormFunction(torch.autograd.Function):
    """Train-mode batch norm (per-column statistics) or global norm (one statistic over all entries).

    ``y = (x - m) * rsqrt(v + eps) * weight + bias`` is one fused ``addcmul`` with per-column scale and shift.
    With ``xhat = (x - m) r`` and ``h = g * weight`` the input gradient is::

        dx = r h - r mean(h) - xhat r sum(h xhat) / D

    with means and sums over each column (``bn``) or over all entries (``gn``), and ``D`` the variance
    denominator (``N`` for the biased ``bn`` variance, ``N*C - 1`` for the unbiased ``gn`` one). Forward: one
    fresh buffer, two passes; backward: one buffer, three passes.

    Returns ``(y, mean, unbiased_var)``: per column for ``bn``, shape ``(1,)`` for ``gn``; no gradient.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        global_stats: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, c = x.shape
        y = torch.mul(x, x)
        col_s, col_sq = colsum(x), colsum(y)
        if global_stats:
            mean, var = moments(x.reshape(-1, 1), col_s.sum().reshape(1), col_sq.sum().reshape(1), dim=0)
            norm_var, count = var, n * c
        else:
            mean, var = moments(x, col_s, col_sq, dim=0)
            norm_var, count = var * (unbiased_denominator(n) / n), n
        r = torch.rsqrt(norm_var + eps)
        scale = r * weight if weight is not None else r.expand(c)
        shift = (bias if bias is not None else torch.zeros_like(scale)) - mean * scale
        y = torch.addcmul(shift, x, scale, out=y)
        ctx.save_for_backward(x, weight, mean, r)
        ctx.global_stats, ctx.denominator = global_stats, (count - 1 if global_stats else count)
        grads = functools.partial(scale_shift_grads, eps=eps, global_stats=global_stats)
        remember_grads(ctx, weight, bias, num_inputs=5, grads=grads)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @analytic_double_backward
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, None, None]:
        x, weight, mean, r = ctx.saved_tensors
        n, c = x.shape
        grad = grad.contiguous()
        gamma = weight if weight is not None else x.new_ones(c)
        dx = grad * x
        g_sum, gx_sum = colsum(grad), colsum(dx)
        g_xhat = (gx_sum - mean * g_sum) * r  # sum_i g * xhat per column
        h_sum, h_xhat = g_sum * gamma, g_xhat * gamma
        count = n * c if ctx.global_stats else n
        if ctx.global_stats:
            h_sum, h_xhat = h_sum.sum(), h_xhat.sum()
        # dx = g * (r gamma) + x * a + b, with a = -r^2 h_xhat / D and b = -r mean(h) - mean * a
        a = -(r * r) * h_xhat / max(ctx.denominator, 1)
        b = -r * h_sum / count - mean * a
        torch.addcmul(b, x, a, out=dx)  # gn: a and b have shape (1,) and broadcast (no float(a): a device sync)
        dx.addcmul_(grad, r * gamma)
        has_affine = weight is not None
        return dx, (g_xhat if has_affine else None), (g_sum if has_affine else None), None, None


class KernelScaleShiftNormFunction(torch.autograd.Function):
    """Train-mode batch norm (``global_stats=False``) or global norm through fused kernels (C++ or Triton); the same
    values, gradients and outputs as :class:`ScaleShiftNormFunction`. The affine gradients come from the column sums
    of the backward kernel (``d_weight = r sum g (x - m)``, ``d_bias = sum g``).

    One rank: ``scale_shift_forward`` / ``scale_shift_backward``. With ``sync`` (synchronised statistics, several
    ranks) the same halves with one all-reduce between them per pass
    (:func:`norm_nerf.core.distributed.sum_over_ranks`): forward ``moment_sums`` -> the rows, sums and sums of
    squares of all ranks -> :func:`_moments_from_sums` -> ``scale_shift_apply``; backward
    ``scale_shift_backward_sums`` -> their sums over ranks -> ``scale_shift_backward_apply`` (the affine gradients
    stay local: DDP all-reduces parameter gradients).

    A double backward differentiates the analytic expressions (:func:`norm_nerf.core.norm_grads.scale_shift_grads`),
    with ``sync`` the reference expressions with their differentiable all-reduces (:func:`reference_grads`).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        global_stats: bool,
        kernels: object,
        sync: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, w, b = kernel_args(x, weight, bias)
        if sync:
            count, sums = count_over_ranks(x.shape[0], kernels.moment_sums(x, False)[0])
            mean, var, rstd = _moments_from_sums(sums, count, x.shape[1], eps, global_stats, x.dtype)
            y = kernels.scale_shift_apply(x, w, b, mean, rstd, global_stats)
            known = torch.cat([sums.new_full((1,), count), sums.reshape(-1)])  # what column_moments all-reduces
            if global_stats:
                known = torch.cat([known[:1] * x.shape[1], sums.sum(1)])
            normalize = functools.partial(synced_standardize, eps=eps, global_stats=global_stats, known=known)
            grads = reference_grads(normalize)
        else:
            y, mean, var, rstd = kernels.scale_shift_forward(x, w, b, eps, global_stats)
            count, grads = float(x.shape[0]), functools.partial(scale_shift_grads, eps=eps, global_stats=global_stats)
        ctx.save_for_backward(x, w, mean, rstd)
        ctx.global_stats, ctx.kernels, ctx.affine = global_stats, kernels, weight is not None
        ctx.sync, ctx.count = sync, count
        remember_grads(ctx, weight, bias, num_inputs=7, grads=grads)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @analytic_double_backward
    def backward(ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None) -> tuple[Tensor | None, ...]:
        x, w, mean, rstd = ctx.saved_tensors
        grad, kernels, global_stats = grad.contiguous(), ctx.kernels, ctx.global_stats
        if ctx.sync:
            sums = kernels.scale_shift_backward_sums(grad, x, mean, global_stats)
            (total,) = sum_over_ranks(sums)
            dx = kernels.scale_shift_backward_apply(grad, x, w, mean, rstd, total, ctx.count, global_stats)
            g_sum, g_xc = sums.to(x.dtype)
        else:
            dx, g_sum, g_xc = kernels.scale_shift_backward(grad, x, w, mean, rstd, global_stats)
        if not ctx.affine:
            return dx, None, None, None, None, None, None
        return dx, g_xc * rstd, g_sum, None, None, None, None


def _moments_from_sums(
    sums: Float[Tensor, "2 c"], count: float, c: int, eps: float, global_stats: bool, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, unbiased_var, rstd)`` in ``dtype`` from the column sums of ``x`` and ``x*x`` over ``count`` rows
    (float64; per column, or over all entries with ``global_stats``): the statistics ``scale_shift_forward`` computes
    from its own sums, in the same float64 steps (without its two-pass fallback: the sums of all ranks are all the
    all-reduce brings)."""
    total, total_sq = (sums.sum(1, keepdim=True) if global_stats else sums).unbind(0)
    entries = count * c if global_stats else count
    mean = total / entries
    centred = torch.addcmul(total_sq, total, mean, value=-1.0).clamp_min_(0.0)
    var = centred / max(entries - 1.0, 1.0)
    norm_var = (var if global_stats else centred / entries).to(dtype).double()
    return mean.to(dtype), var.to(dtype), torch.rsqrt(norm_var + eps).to(dtype)


def synced_standardize(
    x: Float[Tensor, "n c"], eps: float, global_stats: bool, known: Tensor | None = None
) -> Float[Tensor, "n c"]:
    """The reference expression with synchronised statistics (differentiable all-reduce; ``known``: the packed sums
    of all ranks, see :func:`~norm_nerf.core.distributed.column_moments`): bn per column with the biased variance, gn
    over all entries with the unbiased one."""
    n, mean, var = column_moments(x.reshape(-1, 1) if global_stats else x, sync=True, known=known)
    return standardize(x, mean, var if global_stats else var * (unbiased_denominator(n) / n), eps)


def train_scale_shift(
    x: Float[Tensor, "n c"],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    global_stats: bool,
    kernels: object | None,
    sync: bool = False,
) -> tuple[Float[Tensor, "n c"], Tensor, Tensor]:
    """Train-mode bn (``global_stats=False``) or gn of ``x`` through the back end ``kernels`` (from
    :func:`norm_nerf.core.functions.backend.select_kernels`): None for the eager Function, else the C++ or Triton
    kernels; with ``sync`` the statistics of all ranks (kernels only). Returns ``(y, mean, unbiased_var)``."""
    if kernels is None:
        if sync:
            raise ValueError("synchronised statistics run through kernels or the reference expressions")
        return ScaleShiftNormFunction.apply(x, weight, bias, eps, global_stats)
    return KernelScaleShiftNormFunction.apply(x, weight, bias, eps, global_stats, kernels, sync)
