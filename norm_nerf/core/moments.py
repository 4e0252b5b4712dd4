"""Moments of ``N x C`` activations: the statistics every normalization is built from.

Two-pass mean and unbiased variance (:func:`mean_var`, the reference layers and the synchronised statistics), sums
over rows and columns as matrix-vector products (:func:`colsum`, :func:`rowsum`) and the one-pass moments with a
two-pass fallback that the fast Functions use (:func:`moments`; off the CPU always two-pass, without a sync). A
single sample has variance 0, not NaN (:func:`unbiased_denominator`).
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor


def unbiased_denominator(n: Tensor | int) -> Tensor | int:
    """``n - 1`` clamped to at least 1: a single sample has variance 0 instead of NaN."""
    if isinstance(n, Tensor):
        return (n - 1).clamp_min(1)
    return max(n - 1, 1)


def mean_var(x: Float[Tensor, "n c"], dim: int) -> tuple[Tensor, Tensor]:
    """Mean and *unbiased* variance along ``dim`` (kept as a size-1 dim), by two-pass sums.

    Several times faster than ``torch.var_mean`` (Welford) on CPU, and as accurate. One sample has variance 0.
    """
    count = x.shape[dim]
    mean = x.sum(dim=dim, keepdim=True) / count
    d = x - mean
    return mean, (d * d).sum(dim=dim, keepdim=True) / unbiased_denominator(count)


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

    On the CPU, falls back to two-pass sums over ``x`` when cancellation in ``total_sq - total * mean`` would cost
    more than a few significant digits of the sums' precision (large mean relative to the spread, or a constant
    row/column). On other devices that test would be a device-to-host sync per layer and step, so the two-pass sums
    are always used there (``total_sq`` is then not read; the result is at least as accurate). Returned in the dtype
    of ``x``.
    """
    count = x.shape[dim]
    mean = total / count
    if x.device.type == "cpu":
        centred = torch.addcmul(total_sq, total, mean, value=-1.0)
        limit = _ONE_PASS_LIMIT.get(total.dtype, _ONE_PASS_LIMIT_DEFAULT)
        two_pass = float(torch.add(total_sq, centred, alpha=-limit).max()) > 0.0  # host memory: no sync
    else:
        two_pass = True
    if two_pass:
        d = x - mean.to(x.dtype).unsqueeze(dim)
        centred = (d * d).sum(dim=dim)
    var = centred.clamp_min_(0.0).div_(unbiased_denominator(count))
    return mean.to(x.dtype), var.to(x.dtype)


def standardize(x: Tensor, mean: Tensor, var: Tensor, eps: float) -> Tensor:
    """``(x - mean) * rsqrt(var + eps)``: the reference expression every norm ends with (broadcast statistics)."""
    return (x - mean) * torch.rsqrt(var + eps)
