"""Batch norm (per-column statistics) and global norm (one statistic): the reference expression and the train-mode
back ends, one place for the formula.

* the reference expression is :func:`norm_nerf.core.moments.standardize` with the batch statistics (``bn``: per
  column, the biased variance; ``gn``: over all entries, the unbiased one) or, in eval mode, the running ones;
* :class:`ScaleShiftNormFunction`: the eager path (every device);
* :class:`KernelScaleShiftNormFunction`: the same over fused kernels (statistics, forward and input gradient in a
  few passes), the C++ ones on float32 CPU tensors (``csrc/norms.cpp``) or the Triton ones on float32 CUDA tensors
  (:mod:`norm_nerf.core.triton.scale_shift`), which take the same arguments;
* :func:`train_scale_shift`: the table from back end to Function; the layers call it.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.functions.autograd import analytic_double_backward, kernel_args, remember_grads
from norm_nerf.core.moments import colsum, moments, unbiased_denominator
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
    """Train-mode batch norm (``global_stats=False``) or global norm through fused kernels with
    ``scale_shift_forward`` / ``scale_shift_backward`` (C++ or Triton); the same values, gradients and outputs as
    :class:`ScaleShiftNormFunction`. The affine gradients come from the column sums of the backward kernel
    (``d_weight = r sum g (x - m)``, ``d_bias = sum g``); a double backward differentiates the analytic expressions
    (:func:`norm_nerf.core.norm_grads.scale_shift_grads`).
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
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, w, b = kernel_args(x, weight, bias)
        y, mean, var, rstd = kernels.scale_shift_forward(x, w, b, eps, global_stats)
        ctx.save_for_backward(x, w, mean, rstd)
        ctx.global_stats, ctx.kernels, ctx.affine = global_stats, kernels, weight is not None
        grads = functools.partial(scale_shift_grads, eps=eps, global_stats=global_stats)
        remember_grads(ctx, weight, bias, num_inputs=6, grads=grads)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @analytic_double_backward
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, None, None, None]:
        x, w, mean, rstd = ctx.saved_tensors
        dx, g_sum, g_xc = ctx.kernels.scale_shift_backward(grad.contiguous(), x, w, mean, rstd, ctx.global_stats)
        if not ctx.affine:
            return dx, None, None, None, None, None
        return dx, g_xc * rstd, g_sum, None, None, None


def train_scale_shift(
    x: Float[Tensor, "n c"],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    global_stats: bool,
    kernels: object | None,
) -> tuple[Float[Tensor, "n c"], Tensor, Tensor]:
    """Train-mode bn (``global_stats=False``) or gn of ``x`` through the back end ``kernels`` (from
    :func:`norm_nerf.core.functions.backend.select_kernels`): None for the eager Function, else the C++ or Triton
    kernels. Returns ``(y, mean, unbiased_var)``."""
    if kernels is None:
        return ScaleShiftNormFunction.apply(x, weight, bias, eps, global_stats)
    return KernelScaleShiftNormFunction.apply(x, weight, bias, eps, global_stats, kernels)
