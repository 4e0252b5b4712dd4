"""Fast train-mode kernels for the normalizations: custom autograd Functions with analytic backward passes.

The reference layers in :mod:`norm_nerf.core.norms` are written as plain tensor expressions; autograd then
records every elementwise step, and on a CPU each step is a full memory pass over the ``N x C`` activations
(plus, for every fresh 64 MiB result, the page faults of a new allocation). The Functions here compute the
same values with as few full passes and fresh buffers as possible:

* sums over rows and columns are matrix-vector products (``ones @ x``, ``x @ ones``), which read ``x`` once
  and are several times faster than ``Tensor.sum`` along the strided axis;
* moments come from one pass (sum and sum of squares) and fall back to two-pass sums when the one-pass
  variance would lose significant digits (:func:`moments`);
* the output buffer first holds ``x * x`` (for the second moments) and is then overwritten with the result;
* the backward pass recomputes what it needs from the input and the saved per-row/per-column vectors, uses
  in-place ops on its own buffers, and folds the affine parameters into its reductions;
* a backward pass with ``create_graph=True`` (double backward, e.g. an eikonal loss on an SDF network)
  evaluates the analytic gradients as differentiable expressions instead (:func:`analytic_double_backward`,
  :mod:`norm_nerf.core.norm_grads`), so higher derivatives stay exact.

Each Function returns the batch statistics the layer needs for its running estimates as outputs without
gradients, so the policy code (running statistics, slots, recalibration, eval mode) stays in ``norms.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.distributed import unbiased_denominator
from norm_nerf.core.norm_grads import Grads, cross_norm_grads, rms_norm_grads, scale_shift_grads

AnalyticGrads = Callable[[Tensor, Tensor | None, Tensor], Grads]
"""``(x, weight, grad) -> (dx, d_weight, d_bias)`` as differentiable expressions (:mod:`norm_nerf.core.norm_grads`)."""

# One-pass variance ``(sum x^2 - n mean^2)`` loses about log10(sum x^2 / centred sum) digits; beyond this ratio
# the two-pass sums are used instead (float32: at most ~2 of its ~7 digits; float64: at most 6 of 16).
_ONE_PASS_LIMIT = {torch.float64: 1e6}
_ONE_PASS_LIMIT_DEFAULT = 100.0


@functools.lru_cache(maxsize=16)
def _ones(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A cached vector of ones (filling a fresh one per call shows up in profiles for large ``size``)."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.ones(size, dtype=dtype, device=device)


def colsum(x: Float[Tensor, "n c"], weight: Float[Tensor, "n"] | None = None) -> Float[Tensor, "c"]:  # noqa: F821
    """``sum_i weight_i * x_ij`` (weight 1 by default) as one matrix-vector product."""
    w = _ones(x.shape[0], x.dtype, x.device) if weight is None else weight
    return w.reshape(1, -1).mm(x).reshape(-1)


def rowsum(x: Float[Tensor, "n c"], weight: Float[Tensor, "c"] | None = None) -> Float[Tensor, "n"]:  # noqa: F821
    """``sum_j x_ij * weight_j`` (weight 1 by default) as one matrix-vector product."""
    w = _ones(x.shape[1], x.dtype, x.device) if weight is None else weight
    return x.mm(w.reshape(-1, 1)).reshape(-1)


def moments(x: Float[Tensor, "n c"], total: Tensor, total_sq: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Mean and unbiased variance along ``dim`` from the sums ``total`` and ``total_sq`` of ``x`` and ``x*x``.

    Falls back to two-pass sums over ``x`` when cancellation in ``total_sq - total * mean`` would cost more than
    a few significant digits of the sums' precision (large mean relative to the spread, or a constant
    row/column). Returned in the dtype of ``x``.
    """
    count = x.shape[dim]
    mean = total / count
    centred = torch.addcmul(total_sq, total, mean, value=-1.0)
    limit = _ONE_PASS_LIMIT.get(total.dtype, _ONE_PASS_LIMIT_DEFAULT)
    if float(torch.add(total_sq, centred, alpha=-limit).max()) > 0.0:
        d = x - mean.to(x.dtype).unsqueeze(dim)
        centred = (d * d).sum(dim=dim)
    var = centred.clamp_min_(0.0).div_(unbiased_denominator(count))
    return mean.to(x.dtype), var.to(x.dtype)


def remember_grads(
    ctx: FunctionCtx, weight: Tensor | None, bias: Tensor | None, num_inputs: int, grads: AnalyticGrads
) -> None:
    """Keep what :func:`analytic_double_backward` needs; the input ``x`` must be the first saved tensor."""
    ctx.params, ctx.num_inputs, ctx.grads = (weight, bias), num_inputs, grads


def analytic_double_backward(backward: Callable) -> Callable:
    """Decorate a fast ``backward`` so that it also works under ``create_graph=True`` (double backward).

    The fast backward passes are not themselves differentiable (they use in-place ops and C++ kernels). A double
    backward instead evaluates the layer's analytic gradients (registered with :func:`remember_grads`) as plain
    tensor expressions (:mod:`norm_nerf.core.norm_grads`) that autograd can differentiate again. The Function's
    first three inputs must be ``x, weight, bias``.
    """

    @functools.wraps(backward)
    def wrapper(ctx: FunctionCtx, grad: Tensor, *rest: Tensor | None) -> tuple[Tensor | None, ...]:
        if not torch.is_grad_enabled():
            return backward(ctx, grad, *rest)
        x, (weight, bias) = ctx.saved_tensors[0], ctx.params
        needed = [need and t is not None for t, need in zip((x, weight, bias), ctx.needs_input_grad)]
        grads = ctx.grads(x, weight, grad)
        return (*(g if need else None for g, need in zip(grads, needed)), *[None] * (ctx.num_inputs - 3))

    return wrapper


def _affine_or_identity(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``y * weight + bias`` in place (``y`` is a buffer this module owns)."""
    if weight is not None:
        torch.addcmul(bias, y, weight, out=y)
    return y


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
        return _affine_or_identity(y, weight, bias), col_mean, col_var

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


class ScaleShiftNormFunction(torch.autograd.Function):
    """Train-mode batch norm (per-column statistics) or global norm (one statistic over all entries).

    ``y = (x - m) * rsqrt(v + eps) * weight + bias`` is one fused ``addcmul`` with per-column scale and shift.
    With ``xhat = (x - m) r`` and ``h = g * weight`` the input gradient is::

        dx = r h - r mean(h) - xhat r sum(h xhat) / D

    with means and sums over each column (``bn``) or over all entries (``gn``), and ``D`` the variance
    denominator (``N`` for the biased ``bn`` variance, ``N*C - 1`` for the unbiased ``gn`` one). Forward: one
    fresh buffer, two passes; backward: one buffer, three passes.

    ``kernels`` (optional) provides compiled ``column_sums(x, y)`` and ``scale_add(g, x, p, q, s)`` (see
    :mod:`norm_nerf.core.fused_cpp`) for contiguous float32 CPU tensors; they replace the ``x * x`` and ``g * x``
    buffers and fuse the input gradient into one pass.

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
        kernels: object | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, c = x.shape
        if kernels is None:
            y = torch.mul(x, x)
            col_s, col_sq = colsum(x), colsum(y)
        else:
            x = x.contiguous()
            y = None
            col_s, col_sq = kernels.column_sums(x, x)
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
        ctx.kernels = kernels
        grads = functools.partial(scale_shift_grads, eps=eps, global_stats=global_stats)
        remember_grads(ctx, weight, bias, num_inputs=6, grads=grads)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @analytic_double_backward
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, None, None, None]:
        x, weight, mean, r = ctx.saved_tensors
        n, c = x.shape
        grad = grad.contiguous()
        gamma = weight if weight is not None else x.new_ones(c)
        kernels = ctx.kernels
        if kernels is None:
            dx = grad * x
            g_sum, gx_sum = colsum(grad), colsum(dx)
        else:
            g_sum, gx_sum = (t.to(x.dtype) for t in kernels.column_sums(grad, x))
        g_xhat = (gx_sum - mean * g_sum) * r  # sum_i g * xhat per column
        h_sum, h_xhat = g_sum * gamma, g_xhat * gamma
        count = n * c if ctx.global_stats else n
        if ctx.global_stats:
            h_sum, h_xhat = h_sum.sum(), h_xhat.sum()
        # dx = g * (r gamma) + x * a + b, with a = -r^2 h_xhat / D and b = -r mean(h) - mean * a
        a = -(r * r) * h_xhat / max(ctx.denominator, 1)
        b = -r * h_sum / count - mean * a
        if kernels is not None:
            dx = kernels.scale_add(grad, x, *(v.expand(c).contiguous() for v in (r * gamma, a, b)))
        else:
            if ctx.global_stats:
                torch.add(b, x, alpha=float(a), out=dx)
            else:
                torch.addcmul(b, x, a, out=dx)
            dx.addcmul_(grad, r * gamma)
        has_affine = weight is not None
        return dx, (g_xhat if has_affine else None), (g_sum if has_affine else None), None, None, None


class RMSNormFunction(torch.autograd.Function):
    """``y = x * rsqrt(mean_j x_ij^2 + eps) * weight + bias``; ``dx = q (h - x q^2 sum_j(h x) / C)``, ``h = g w``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> Tensor:
        c = x.shape[1]
        y = torch.mul(x, x)
        q = torch.rsqrt(rowsum(y) / c + eps)
        torch.mul(x, q.unsqueeze(1), out=y)
        ctx.save_for_backward(x, weight, q)
        remember_grads(ctx, weight, bias, num_inputs=4, grads=functools.partial(rms_norm_grads, eps=eps))
        return _affine_or_identity(y, weight, bias)

    @staticmethod
    @analytic_double_backward
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, weight, q = ctx.saved_tensors
        c = x.shape[1]
        grad = grad.contiguous()
        gamma = weight if weight is not None else x.new_ones(c)
        dx = grad * x
        hx = rowsum(dx, gamma)  # sum_j h x per row
        grad_weight = colsum(dx, q) if weight is not None else None
        # dx = q * (g gamma - x * q^2 hx / C)
        torch.mul(x, (-(q * q) * hx / c).unsqueeze(1), out=dx)
        dx.addcmul_(grad, gamma).mul_(q.unsqueeze(1))
        grad_bias = colsum(grad) if weight is not None else None
        return dx, grad_weight, grad_bias, None
