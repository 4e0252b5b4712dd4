"""Triton kernels: train-mode batch norm (per-column statistics) and global norm (one statistic over all entries)
on float32 ``N x C``; the twin of :class:`norm_nerf.core.functions.scale_shift.ScaleShiftNormFunction`.

Forward: the moments of :mod:`norm_nerf.core.triton.moments` (a reducing pass and a fold, which also gives
``r = rsqrt(var + eps)``: the biased variance for ``bn``, the unbiased one for ``gn``), then one elementwise pass
``y = (x - m) r w + b`` (:func:`apply`). Backward: one reducing pass for the column sums ``sum g`` and
``sum g (x - m)`` and a sum of the partials (:func:`backward_sums`), then one elementwise pass
``dx = r w g - r sum(h)/count - (x - m) r^2 sum(h xhat)/D`` (:func:`backward_apply`; ``h = g w``; sums over the
column for ``bn``, over all entries for ``gn``; ``D`` the variance's denominator). Synchronised statistics all-reduce
the sums between the halves.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from norm_nerf.core.triton.launch import LaunchConfig, cdiv, empty
from norm_nerf.core.triton.moments import batch_moments
from norm_nerf.core.triton.tiles import column_range, load_columns, row_tile


@triton.jit
def scale_shift_forward_kernel(
    X, W, B, MEAN, RSTD, Y, n_rows, n_cols,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, GLOBAL: tl.constexpr,
):  # fmt: skip
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    b = load_columns(B, cols, col_ok)
    if GLOBAL:
        mean = tl.load(MEAN + cols * 0)
        rstd = tl.load(RSTD + cols * 0)
    else:
        mean = load_columns(MEAN, cols, col_ok)
        rstd = load_columns(RSTD, cols, col_ok)
    scale = rstd * w
    tl.store(Y + offs, (x - mean[None, :]) * scale[None, :] + b[None, :], mask=ok)


@triton.jit
def scale_shift_sums_kernel(
    G, X, MEAN, PART, n_rows, n_cols, tiles_per_program,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, GLOBAL: tl.constexpr,
):  # fmt: skip
    """Column partials ``sum g`` and ``sum g (x - m)`` into ``PART[program, 0..1]``."""
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    if GLOBAL:  # noqa: SIM108 - a constexpr branch, compiled away
        mean = tl.load(MEAN + cols * 0)
    else:
        mean = load_columns(MEAN, cols, col_ok)
    s_g = tl.full([BLOCK_C], 0.0, tl.float32)
    s_gx = tl.full([BLOCK_C], 0.0, tl.float32)
    first = pid * tiles_per_program * BLOCK_N
    for t in range(0, tiles_per_program):
        rows = first + t * BLOCK_N + tl.arange(0, BLOCK_N)
        ok = (rows < n_rows)[:, None] & col_ok[None, :]
        offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        x = tl.load(X + offs, mask=ok, other=0.0)
        g = tl.load(G + offs, mask=ok, other=0.0)
        s_g += tl.sum(g, axis=0)
        s_gx += tl.sum(g * (x - mean[None, :]), axis=0)  # g is 0 outside the matrix
    base = PART + pid * 2 * n_cols + cols
    tl.store(base, s_g, mask=col_ok)
    tl.store(base + n_cols, s_gx, mask=col_ok)


@triton.jit
def scale_shift_backward_kernel(
    G, X, W, MEAN, RSTD, SUMS, DX, n_rows, n_cols, count, denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, GLOBAL: tl.constexpr,
):  # fmt: skip
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    g = tl.load(G + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    h_sum = w * load_columns(SUMS, cols, col_ok)
    h_xc = w * load_columns(SUMS + n_cols, cols, col_ok)  # sum h (x - m) per column
    if GLOBAL:
        mean = tl.load(MEAN + cols * 0)
        rstd = tl.load(RSTD + cols * 0)
        h_sum = tl.full([BLOCK_C], 0.0, tl.float32) + tl.sum(h_sum, axis=0)
        h_xc = tl.full([BLOCK_C], 0.0, tl.float32) + tl.sum(h_xc, axis=0)
    else:
        mean = load_columns(MEAN, cols, col_ok)
        rstd = load_columns(RSTD, cols, col_ok)
    a = rstd * rstd * rstd * h_xc / denominator  # r^2 sum(h xhat) / D, as sum(h xhat) = r sum(h (x - m))
    shift = rstd * h_sum / count
    dx = (rstd * w)[None, :] * g - shift[None, :] - (x - mean[None, :]) * a[None, :]
    tl.store(DX + offs, dx, mask=ok)


def forward(
    x: Tensor, w: Tensor, b: Tensor, eps: float, global_stats: bool, cfg: LaunchConfig
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(y, mean, unbiased_var, rstd)``: per column for ``bn``, shape (1,) for ``gn`` (``global_stats``)."""
    n, c = x.shape
    norm_den = max(n * c - 1, 1) if global_stats else n
    _, _, mean, var, rstd = batch_moments(
        x, cfg, row_stats=False, global_stats=global_stats, norm_denominator=norm_den, eps=eps
    )
    return apply(x, w, b, mean, rstd, global_stats, cfg), mean, var, rstd


def apply(x: Tensor, w: Tensor, b: Tensor, mean: Tensor, rstd: Tensor, global_stats: bool, cfg: LaunchConfig) -> Tensor:
    """``y = (x - m) r w + b`` as ``cpu_kernels().scale_shift_apply``."""
    n, c = x.shape
    y = torch.empty_like(x)
    block_n, block_c = cfg.blocks(c)
    scale_shift_forward_kernel[(cdiv(n, block_n),)](
        x, w, b, mean, rstd, y, n, c,
        BLOCK_N=block_n, BLOCK_C=block_c, GLOBAL=global_stats, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return y


def _flags(c: int, global_stats: bool, cfg: LaunchConfig) -> dict:
    block_n, block_c = cfg.blocks(c)
    return {"BLOCK_N": block_n, "BLOCK_C": block_c, "GLOBAL": global_stats, "num_warps": cfg.num_warps(c)}


def backward_sums(g: Tensor, x: Tensor, mean: Tensor, global_stats: bool, cfg: LaunchConfig) -> Tensor:
    """Column sums ``sum g`` and ``sum g (x - m)``, shape (2, C), as ``cpu_kernels().scale_shift_backward_sums``."""
    n, c = x.shape
    _, _, tiles, programs = cfg.reduction_grid(n, c)
    part = empty((programs, 2, c), like=x)
    scale_shift_sums_kernel[(programs,)](g, x, mean, part, n, c, tiles, **_flags(c, global_stats, cfg))
    return part.sum(0)


def backward_apply(
    g: Tensor, x: Tensor, w: Tensor, mean: Tensor, rstd: Tensor, sums: Tensor, count: float, global_stats: bool,
    cfg: LaunchConfig,
) -> Tensor:  # fmt: skip
    """``dx`` from the column sums of :func:`backward_sums` over ``count`` rows (of all ranks, with synchronised
    statistics), as ``cpu_kernels().scale_shift_backward_apply``."""
    n, c = x.shape
    entries = count * c if global_stats else count
    denominator = max(entries - 1, 1) if global_stats else entries
    dx = torch.empty_like(x)
    flags = _flags(c, global_stats, cfg)
    scale_shift_backward_kernel[(cdiv(n, flags["BLOCK_N"]),)](
        g, x, w, mean, rstd, sums.to(torch.float32).contiguous(), dx, n, c, float(entries), float(denominator), **flags
    )
    return dx


def backward(
    g: Tensor, x: Tensor, w: Tensor, mean: Tensor, rstd: Tensor, global_stats: bool, cfg: LaunchConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, sum g, sum g (x - m))``, the sums per column (the affine gradients are ``r`` times the last and the
    middle one)."""
    sums = backward_sums(g, x, mean, global_stats, cfg)
    return backward_apply(g, x, w, mean, rstd, sums, x.shape[0], global_stats, cfg), sums[0], sums[1]
