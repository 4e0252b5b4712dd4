"""Cross norm ``(x - mu_ij) * rsqrt(Var_N(x)_j + Var_C(x)_i + eps) * weight + bias``: the reference expression and
the train-mode back ends, one place for the formula.

* :func:`cross_normalize`: the reference expression (no affine), given the column statistics; the layer uses it in
  eval mode (running statistics), with synchronised statistics, under ``torch.func`` and for ``impl="reference"``;
* :class:`CrossNormFunction`: the eager fast path (every device; matrix-vector sums, one-pass moments with a
  two-pass fallback, in-place buffers, analytic backward);
* :class:`KernelCrossNormFunction`: the same over fused kernels, the C++ ones on float32 CPU tensors
  (``csrc/norms.cpp``) or the Triton ones on float32 CUDA tensors (:mod:`norm_nerf.core.triton.cross_norm`), which
  take the same arguments (two passes forward, two backward, only per-row and per-column vectors saved); its
  differentiable first backward :class:`KernelCrossNormGradFunction` makes the double backward of an eikonal loss
  three kernel passes;
  with synchronised statistics (several ranks) the same kernels in halves with one all-reduce of packed partial sums
  between them per pass (two in the double backward);
* :func:`train_cross_norm`: the table from back end to Function; the layer calls it.

All return ``(y, col_mean, col_var)`` (the kernel Function also the number of rows behind the column statistics)
and every path is tested against the reference.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.cpu_kernels import cpu_kernels
from norm_nerf.core.distributed import count_over_ranks, sum_over_ranks
from norm_nerf.core.functions.autograd import (
    affine_or_identity,
    analytic_double_backward,
    kernel_args,
    remember_grads,
)
from norm_nerf.core.moments import colsum, mean_var, moments, rowsum, standardize, unbiased_denominator
from norm_nerf.core.norm_grads import cross_norm_grads


class CrossNormFunction(torch.autograd.Function):
    """Train-mode cross norm ``(x - mu_ij) * rsqrt(Var_N(x)_j + Var_C(x)_i + eps) * weight + bias``.

    With ``K = N + C`` the centred entry is ``z_ij = ((K + 1) x_ij - colsum_j - rowsum_i) / K``. Writing
    ``r = rsqrt(s)``, ``p = dL/dz = g * weight * r`` and ``w = g * weight * z * r^3``, the input gradient is::

        dx = (K+1)/K p - colsum(p)/K - rowsum(p)/K
             - (x - colmean) * colsum(w) / (N-1) - (x - rowmean) * rowsum(w) / (C-1)

    (the first line through the cross mean, the second through the two variances). Forward: two fresh
    ``N x C`` buffers and seven elementwise passes; backward: three buffers and eleven passes.

    Returns ``(y, col_mean, col_var)``; the column statistics (unbiased variance) carry no gradient.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, c = x.shape
        k = n + c
        col_s, row_s = colsum(x), rowsum(x)
        y = torch.mul(x, x)
        col_mean, col_var = moments(x, col_s, colsum(y), dim=0)
        row_mean, row_var = moments(x, row_s, rowsum(y), dim=1)
        z = torch.add(row_s.unsqueeze(1) / -k, col_s / -k).add_(x, alpha=(k + 1) / k)
        _inv_std(row_var, col_var, eps, out=y).mul_(z)
        ctx.save_for_backward(x, z, weight, row_mean, row_var, col_mean, col_var)
        ctx.eps = eps
        grads = functools.partial(cross_norm_grads, eps=eps)
        remember_grads(ctx, weight, bias, num_inputs=4, grads=grads)
        ctx.mark_non_differentiable(col_mean, col_var)
        return affine_or_identity(y, weight, bias), col_mean, col_var

    @staticmethod
    @analytic_double_backward
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, z, weight, row_mean, row_var, col_mean, col_var = ctx.saved_tensors
        n, c = x.shape
        k = n + c
        grad = grad.contiguous()
        gamma = weight if weight is not None else x.new_ones(c)
        r = _inv_std(row_var, col_var, ctx.eps)
        p = grad * r  # g r; dL/dz = p * gamma
        p_col, p_row = colsum(p) * gamma, rowsum(p, gamma)
        u = p * z  # g z r = g * (normalized output)
        grad_weight = colsum(u) if weight is not None else None
        u.mul_(r).mul_(r)  # g z r^3; dL/ds = -w / 2 with w = u * gamma
        w_col, w_row = colsum(u) * gamma, rowsum(u, gamma)
        a_col, b_row = w_col / unbiased_denominator(n), w_row / unbiased_denominator(c)
        # dx = (K+1)/K gamma p + e_j + f_i - x (a_j + b_i)
        e_col = col_mean * a_col - p_col / k
        f_row = row_mean * b_row - p_row / k
        dx = p.mul_(gamma * ((k + 1) / k))
        torch.add(b_row.unsqueeze(1), a_col, out=u)
        dx.addcmul_(x, u, value=-1.0)
        dx.add_(torch.add(f_row.unsqueeze(1), e_col, out=r))
        grad_bias = colsum(grad) if weight is not None else None
        return dx, grad_weight, grad_bias, None


def _inv_std(
    row_var: Float[Tensor, "n"],  # noqa: F821
    col_var: Float[Tensor, "c"],  # noqa: F821
    eps: float,
    out: Tensor | None = None,
) -> Float[Tensor, "n c"]:
    """``rsqrt(row_var_i + col_var_j + eps)`` written into ``out`` (a fresh buffer when None)."""
    s = torch.add(row_var.unsqueeze(1), col_var + eps, out=out)
    return s.rsqrt_()


class KernelCrossNormFunction(torch.autograd.Function):
    """Train-mode cross norm through fused kernels; same values, gradients and outputs as ``CrossNormFunction``,
    plus the number of rows behind the column statistics (shape (1,)).

    ``kernels``: the C++ kernel module (default: ``cpu_kernels()``) or the Triton kernels
    (:class:`norm_nerf.core.triton.TritonNorms`), which share its signatures. Its backward under ``create_graph=True``
    (double backward) is :class:`KernelCrossNormGradFunction`, whose own backward is a kernel too.

    With ``sync`` (synchronised statistics, several ranks) the column statistics are those of all ranks, with one
    all-reduce per pass (:func:`norm_nerf.core.distributed.sum_over_ranks`; the per-row part needs none): forward
    ``moment_sums`` (row statistics, column sums) -> rows, sums and sums of squares of all ranks -> column statistics
    -> ``cross_norm_apply``; backward ``cross_norm_backward_sums`` -> the two column sums that ``dx`` needs, summed
    over ranks -> ``cross_norm_backward_apply`` (the affine gradients stay local: DDP all-reduces them). The double
    backward runs the halves of ``cross_norm_double_backward`` with two all-reduces (see
    :class:`KernelCrossNormGradFunction`).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        kernels: object | None = None,
        sync: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        kernels = cpu_kernels() if kernels is None else kernels
        x, w, b = kernel_args(x, weight, bias)
        if sync:
            sums, row_mean, row_var = kernels.moment_sums(x, True)
            count, (total, total_sq) = count_over_ranks(x.shape[0], sums)
            col_mean = total / count
            col_var = torch.addcmul(total_sq, total, col_mean, value=-1.0).clamp_min_(0.0) / max(count - 1.0, 1.0)
            col_mean, col_var = col_mean.to(x.dtype), col_var.to(x.dtype)
            y = kernels.cross_norm_apply(x, w, b, row_mean, row_var, col_mean, col_var, count, eps)
        else:
            y, row_mean, row_var, col_mean, col_var = kernels.cross_norm_forward(x, w, b, eps)
            count = float(x.shape[0])
        ctx.save_for_backward(x, w, row_mean, row_var, col_mean, col_var, weight)
        ctx.eps, ctx.kernels, ctx.sync, ctx.count = eps, kernels, sync, count
        rows = torch.full((1,), count, dtype=x.dtype, device=x.device)
        ctx.mark_non_differentiable(col_mean, col_var, rows)
        return y, col_mean, col_var, rows

    @staticmethod
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None, _gn: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, w, *stats, weight = ctx.saved_tensors
        grad = grad.contiguous()
        if torch.is_grad_enabled():  # create_graph: the gradients as a differentiable op
            count = ctx.count if ctx.sync else None
            dx, dw, db = KernelCrossNormGradFunction.apply(x, weight, grad, *stats, ctx.eps, ctx.kernels, count)
        else:
            dx, dw, db = _first_backward(ctx.kernels, grad, x, w, stats, ctx.eps, ctx.count if ctx.sync else None)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return (dx if need_x else None), (dw if need_w else None), (db if need_b else None), None, None, None


class KernelCrossNormGradFunction(torch.autograd.Function):
    """The cross norm's first backward ``(x, weight, g) -> (dx, d_weight, d_bias)`` as a differentiable op.

    ``dx = J(x)^T (g w)`` with ``J`` the Jacobian of the normalized output ``yhat = z r`` (no affine), so for an
    upstream ``v = dL/d(dx)``: ``dL/dg = w (J v)``, ``dL/dw = colsum(g (J v))`` and ``dL/dx = H v``, the derivative of
    the analytic ``dx`` (see :func:`norm_nerf.core.norm_grads.cross_norm_grads`) along ``v`` with ``h = g w`` held
    fixed. With ``dm, drho`` (column and row means of ``v``), ``da = 2 colsum((x - m) v) / (N-1)``,
    ``db = 2 rowsum((x - rho) v) / (C-1)``, ``dz = (K+1)/K v - N/K dm - C/K drho`` and
    ``dr = -r^3 (da + db) / 2``: ``J v = dz r + z dr``, and with ``dp = h dr``, ``du = h r^2 (dz r + 3 z dr)``,
    ``A = colsum(h z r^3) / (N-1)``, ``B = rowsum(h z r^3) / (C-1)``::

        H v = (K+1)/K dp - colsum(dp)/K - rowsum(dp)/K - (v - dm) A - (x - m) colsum(du)/(N-1)
              - (v - drho) B - (x - rho) rowsum(du)/(C-1)

    The kernels make three passes over ``N x C`` (about 20 autograd ops per layer before, each a pass and most a
    fresh buffer). Upstream gradients of ``d_weight`` / ``d_bias`` (rare: only a loss on the weight gradients) add
    ``J^T (g v_w)`` to ``dL/dx`` and ``v_w yhat + v_b`` to ``dL/dg``. A third derivative (``create_graph`` in this
    backward) differentiates the analytic expressions of :mod:`norm_nerf.core.norm_grads` instead.
    ``kernels``: as for :class:`KernelCrossNormFunction`. ``synced_count``: with synchronised statistics, the rows of
    all ranks; the first backward and the double backward then run their kernels in halves with the column sums of
    all ranks between them (one all-reduce first, two in the double backward), and a third derivative is refused.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        grad: Tensor,
        row_mean: Tensor,
        row_var: Tensor,
        col_mean: Tensor,
        col_var: Tensor,
        eps: float,
        kernels: object | None = None,
        synced_count: float | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        kernels = cpu_kernels() if kernels is None else kernels
        _, w, _ = kernel_args(x, weight, None)
        stats = (row_mean, row_var, col_mean, col_var)
        dx, dw, db = _first_backward(kernels, grad.contiguous(), x, w, stats, eps, synced_count)
        ctx.save_for_backward(x, weight, grad, w, *stats)
        ctx.eps, ctx.kernels, ctx.synced_count = eps, kernels, synced_count
        ctx.set_materialize_grads(False)  # upstream gradients of d_weight/d_bias are usually absent: None, not zeros
        return dx, dw, db

    @staticmethod
    def backward(
        ctx: FunctionCtx, v: Tensor | None, v_w: Tensor | None, v_b: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, weight, grad, w, *stats = ctx.saved_tensors
        count = ctx.synced_count
        if torch.is_grad_enabled():
            if count is not None:
                raise NotImplementedError(
                    "a third derivative through cross norm with synchronised statistics is not supported by the "
                    "kernels; build the norms with impl='reference' (--pipeline.model.norm-impl reference)"
                )
            return (*_grad_of_grads(x, weight, grad, v, v_w, v_b, eps=ctx.eps), *[None] * 7)
        kernels, g, x = ctx.kernels, grad.detach().contiguous(), x.detach()
        v = torch.zeros_like(x) if v is None else v.contiguous()
        if count is None:
            dx, dg, dw = kernels.cross_norm_double_backward(v, g, x, w, *stats, ctx.eps)
        else:
            dx, dg, dw = _synced_double_backward(kernels, v, g, x, w, stats, ctx.eps, count)
        if v_w is not None:  # d_weight = colsum(g yhat)
            dx += _first_backward(kernels, g, x, v_w.contiguous(), stats, ctx.eps, count)[0]
            ones, zeros = torch.ones_like(w), torch.zeros_like(w)
            rows = float(x.shape[0]) if count is None else count
            dg += kernels.cross_norm_apply(x, ones, zeros, *stats, rows, ctx.eps) * v_w
        if v_b is not None:  # d_bias = colsum(g)
            dg += v_b
        return dx, (dw if weight is not None else None), dg, *[None] * 7


def _first_backward(
    kernels: object,
    grad: Tensor,
    x: Tensor,
    w: Tensor,
    stats: tuple[Tensor, ...],
    eps: float,
    synced_count: float | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The kernels' first backward ``(dx, d_weight, d_bias)``; with ``synced_count`` (the rows of all ranks) in halves
    with one all-reduce between them."""
    if synced_count is None:
        return kernels.cross_norm_backward(grad, x, w, *stats, eps)
    sums, row_b, row_p, work = kernels.cross_norm_backward_sums(grad, x, w, *stats, synced_count, eps)
    total = _summed_from(sums, 2)  # colsum(g r) and colsum(g z r^3) over the rows of all ranks
    dx = kernels.cross_norm_backward_apply(grad, x, w, *stats, row_b, row_p, total, work, synced_count, eps)
    db, dw = sums[:2].to(x.dtype)
    return dx, dw, db


def _synced_double_backward(
    kernels: object, v: Tensor, g: Tensor, x: Tensor, w: Tensor, stats: tuple[Tensor, ...], eps: float, count: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``cross_norm_double_backward`` with synchronised statistics: its three passes with the column sums of the first
    two summed over the ranks in between (two all-reduces; ``colsum(g J v)``, the weight's, stays local)."""
    sums1, rows1, work = kernels.cross_norm_double_backward_sums(v, g, x, w, *stats, count, eps)
    (sums1,) = sum_over_ranks(sums1)
    sums2, rows2, dg = kernels.cross_norm_double_backward_sums2(v, g, x, w, *stats, rows1, sums1, work, count, eps)
    sums2 = _summed_from(sums2, 1)
    dx = kernels.cross_norm_double_backward_apply(v, g, x, w, *stats, rows1, rows2, sums1, sums2, work, count, eps)
    return dx, dg, sums2[0].to(x.dtype)


def _summed_from(sums: Tensor, start: int) -> Tensor:
    """The column sums ``sums`` (rows of sums, float64) with rows ``start:`` summed over the ranks (one all-reduce);
    the rows before stay this rank's (sums behind the affine gradients, which DDP sums)."""
    (shared,) = sum_over_ranks(sums[start:])
    return torch.cat([sums[:start].to(shared.dtype), shared])


def _grad_of_grads(
    x: Tensor, weight: Tensor | None, grad: Tensor, *upstream: Tensor | None, eps: float
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The vector-Jacobian product of ``(x, weight, grad) -> cross_norm_grads(x, weight, grad)`` with ``upstream``,
    through the analytic expressions and differentiable again (a third derivative).

    ``torch.func.vjp`` differentiates the expressions with respect to their own arguments only: ``grad`` itself
    depends on ``x`` through the layer's output, and a plain ``autograd.grad`` with respect to ``x`` would count that
    path twice."""
    from torch.func import vjp

    def grads(x: Tensor, g: Tensor, *w: Tensor) -> tuple[Tensor, ...]:
        return tuple(o for o in cross_norm_grads(x, w[0] if w else None, g, eps) if o is not None)

    outputs, pullback = vjp(grads, x, grad, *([weight] if weight is not None else []))
    got = pullback(tuple(torch.zeros_like(o) if u is None else u for o, u in zip(outputs, upstream)))
    return got[0], (got[2] if weight is not None else None), got[1]


def cross_normalize(
    x: Float[Tensor, "n c"], n: Tensor | float, col_mean: Float[Tensor, " c"], col_var: Float[Tensor, " c"], eps: float
) -> Float[Tensor, "n c"]:
    """The reference expression: ``(x - mu_ij) * rsqrt(col_var_j + Var_C(x)_i + eps)`` with the cross mean
    ``mu_ij = (n col_mean_j + C rowmean_i - x_ij) / (n + C)`` (``n`` points behind the column statistics)."""
    c = x.shape[1]
    row_mean, row_var = mean_var(x, dim=1)
    mean = (n * col_mean + c * row_mean - x) / (n + c)
    return standardize(x, mean, col_var + row_var, eps)


def train_cross_norm(
    x: Float[Tensor, "n c"],
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    kernels: object | None,
    sync: bool = False,
) -> tuple[Float[Tensor, "n c"], Float[Tensor, " c"], Float[Tensor, " c"], float | Tensor]:
    """Train-mode cross norm of ``x`` with its own statistics through the back end ``kernels`` (from
    :func:`norm_nerf.core.functions.backend.select_kernels`): None for the eager Function, else the C++ or Triton
    kernels; with ``sync`` the column statistics of all ranks (kernels only). Returns
    ``(y, col_mean, col_var, rows)``, ``rows`` the number of points behind the column statistics."""
    if kernels is None:
        if sync:
            raise ValueError("synchronised statistics run through kernels or the reference expressions")
        return *CrossNormFunction.apply(x, weight, bias, eps), float(x.shape[0])
    return KernelCrossNormFunction.apply(x, weight, bias, eps, kernels, sync)
