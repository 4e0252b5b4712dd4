"""The normalizations' analytic gradients as plain (differentiable) tensor expressions, for double backward.

A loss on an input gradient, like NeuS's eikonal loss on the SDF network, differentiates every layer twice.
Differentiating a layer's reference expression a second time records that expression, its backward graph
(about twice as many ops) and then the backward of both. These functions write the first derivative directly,
the same closed forms the fast kernels of :mod:`norm_nerf.core.functions` use, out of place so autograd can
differentiate them once more: about 20 elementwise ops per layer instead of the reference's 35-40.

Each returns ``(dx, d_weight, d_bias)`` for a train-mode layer with batch statistics, given its input ``x``
``(N, C)``, its affine ``weight`` (None without affine: then both affine gradients are None) and the output
gradient ``grad``. Tests compare every one with autograd through the reference expressions, first and second
derivatives, in float64.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.moments import unbiased_denominator

Grads = tuple[Tensor, Tensor | None, Tensor | None]


def _affine_grads(grad: Tensor, normalized: Tensor, weight: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    if weight is None:
        return None, None
    return (grad * normalized).sum(0), grad.sum(0)


def _scaled(grad: Tensor, weight: Tensor | None) -> Tensor:
    return grad if weight is None else grad * weight


def cross_norm_grads(
    x: Float[Tensor, "n c"],
    weight: Float[Tensor, "c"] | None,  # noqa: F821
    grad: Float[Tensor, "n c"],
    eps: float,
) -> Grads:
    """Cross norm: with ``z = x - mu``, ``r = rsqrt(Var_N_j + Var_C_i + eps)``, ``h = g * weight`` and
    ``u = h z r^3``: ``dx = (K+1)/K h r - colsum(h r)/K - rowsum(h r)/K - (x - colmean) colsum(u)/(N-1)
    - (x - rowmean) rowsum(u)/(C-1)``, ``K = N + C``."""
    n, c = x.shape
    k = n + c
    col_mean, row_mean = x.mean(0), x.mean(1, keepdim=True)
    col_var = (x - col_mean).square().sum(0) / unbiased_denominator(n)
    row_var = (x - row_mean).square().sum(1, keepdim=True) / unbiased_denominator(c)
    r = (row_var + col_var + eps).rsqrt()
    normalized = (x * ((k + 1) / k) - col_mean * (n / k) - row_mean * (c / k)) * r
    p = _scaled(grad, weight) * r
    u = p * normalized * r
    a_col, b_row = u.sum(0) / unbiased_denominator(n), u.sum(1, keepdim=True) / unbiased_denominator(c)
    shift = (col_mean * a_col - p.sum(0) / k) + (row_mean * b_row - p.sum(1, keepdim=True) / k)
    dx = p * ((k + 1) / k) + shift - x * (a_col + b_row)
    return (dx, *_affine_grads(grad, normalized, weight))


def scale_shift_grads(
    x: Float[Tensor, "n c"],
    weight: Float[Tensor, "c"] | None,  # noqa: F821
    grad: Float[Tensor, "n c"],
    eps: float,
    global_stats: bool,
) -> Grads:
    """Batch norm (per column, biased variance) or global norm (all entries, unbiased variance): with
    ``xhat = (x - m) r`` and ``h = g * weight``, ``dx = r (h - mean(h) - xhat sum(h xhat) / D)``."""
    n, c = x.shape
    dims = (0, 1) if global_stats else (0,)
    count = n * c if global_stats else n
    denominator = max(count - 1, 1) if global_stats else count
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().sum(dims, keepdim=True) / (unbiased_denominator(count) if global_stats else count)
    r = (var + eps).rsqrt()
    normalized = (x - mean) * r
    h = _scaled(grad, weight)
    dx = r * (h - h.mean(dims, keepdim=True) - normalized * ((h * normalized).sum(dims, keepdim=True) / denominator))
    return (dx, *_affine_grads(grad, normalized, weight))


def rms_norm_grads(
    x: Float[Tensor, "n c"],
    weight: Float[Tensor, "c"] | None,  # noqa: F821
    grad: Float[Tensor, "n c"],
    eps: float,
) -> Grads:
    """RMS norm: ``q = rsqrt(mean_j x^2 + eps)``, ``dx = q (h - x q^2 sum_j(h x) / C)`` with ``h = g * weight``."""
    c = x.shape[1]
    q = (x.square().mean(1, keepdim=True) + eps).rsqrt()
    h = _scaled(grad, weight)
    dx = q * (h - x * (q * q * (h * x).sum(1, keepdim=True) / c))
    return (dx, *_affine_grads(grad, x * q, weight))
