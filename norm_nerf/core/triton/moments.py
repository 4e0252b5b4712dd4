"""Triton kernels: batch moments of an ``N x C`` float32 matrix, shared by batch, global and cross norm.

Column (or global) statistics are computed without a one-pass variance and without float64: each tile of rows is
held in registers, so its mean and centred sum of squares are exact two-pass sums; a program folds its tiles
together with Chan et al.'s pairwise update (``M2 = M2_a + M2_b + delta^2 n_a n_b / n``) and writes one partial
``(mean, M2)``; :func:`combine_moments_kernel` folds the partials the same way. A large offset (mean / spread) costs
no digits beyond those of one float32 subtraction. Rows (cross norm's per-point statistics) are exact two-pass sums
over the row in the tile. The eager twins are :func:`norm_nerf.core.moments.mean_var` and ``moments``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from norm_nerf.core.triton.launch import LaunchConfig, cdiv, empty, next_power_of_2
from norm_nerf.core.triton.tiles import column_range


@triton.jit
def partial_moments_kernel(
    X,
    ROW_MEAN,
    ROW_VAR,
    PART_MEAN,
    PART_M2,
    n_rows,
    n_cols,
    tiles_per_program,
    row_denominator,
    BLOCK_N: tl.constexpr,
    BLOCK_C: tl.constexpr,
    ROW_STATS: tl.constexpr,
    GLOBAL: tl.constexpr,
):
    """Per program: ``(mean, M2)`` of its rows per column (one pair over all entries with ``GLOBAL``) into
    ``PART_MEAN/PART_M2[program]``; with ``ROW_STATS`` also every row's mean and unbiased variance."""
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    first = pid * tiles_per_program * BLOCK_N
    count = 0.0
    mean = tl.full([BLOCK_C], 0.0, tl.float32)
    m2 = tl.full([BLOCK_C], 0.0, tl.float32)
    for t in range(0, tiles_per_program):
        rows = first + t * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_rows
        ok = row_ok[:, None] & col_ok[None, :]
        x = tl.load(X + rows.to(tl.int64)[:, None] * n_cols + cols[None, :], mask=ok, other=0.0)
        if ROW_STATS:
            row_mean = tl.sum(x, axis=1) / n_cols
            d = tl.where(ok, x - row_mean[:, None], 0.0)
            tl.store(ROW_MEAN + rows, row_mean, mask=row_ok)
            tl.store(ROW_VAR + rows, tl.sum(d * d, axis=1) / row_denominator, mask=row_ok)
        n_tile = tl.sum(row_ok.to(tl.float32), axis=0)
        if GLOBAL:
            n_tile = n_tile * n_cols
            tile_mean = tl.sum(tl.sum(x, axis=1), axis=0) / tl.maximum(n_tile, 1.0)
            d = tl.where(ok, x - tile_mean, 0.0)
            tile_m2 = tl.full([BLOCK_C], 0.0, tl.float32) + tl.sum(tl.sum(d * d, axis=1), axis=0)
            tile_mean = tl.full([BLOCK_C], 0.0, tl.float32) + tile_mean
        else:
            tile_mean = tl.sum(x, axis=0) / tl.maximum(n_tile, 1.0)
            d = tl.where(ok, x - tile_mean[None, :], 0.0)
            tile_m2 = tl.sum(d * d, axis=0)
        total = count + n_tile
        share = n_tile / tl.maximum(total, 1.0)
        delta = tile_mean - mean
        mean = mean + delta * share
        m2 = m2 + tile_m2 + delta * delta * (count * share)
        count = total
    width = 1 if GLOBAL else n_cols
    tl.store(PART_MEAN + pid * width + cols, mean, mask=cols < width)
    tl.store(PART_M2 + pid * width + cols, m2, mask=cols < width)


@triton.jit
def combine_moments_kernel(
    PART_MEAN,
    PART_M2,
    MEAN,
    VAR,
    RSTD,
    n_parts,
    width,
    n_rows,
    rows_per_part,
    entries_per_row,
    var_denominator,
    norm_denominator,
    eps,
    BLOCK_P: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """Fold the partials: ``MEAN``, ``VAR = M2 / var_denominator`` (unbiased) and
    ``RSTD = rsqrt(M2 / norm_denominator + eps)`` per column (``width`` columns, 1 for global statistics)."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_W + tl.arange(0, BLOCK_W)
    col_ok = cols < width
    total = n_rows * entries_per_row
    acc = tl.full([BLOCK_W], 0.0, tl.float32)
    for p0 in range(0, n_parts, BLOCK_P):
        parts = p0 + tl.arange(0, BLOCK_P)
        part_ok = parts < n_parts
        rows = tl.minimum(n_rows - parts * rows_per_part, rows_per_part)
        weight = tl.where(part_ok, rows.to(tl.float32) * entries_per_row, 0.0)
        ok = part_ok[:, None] & col_ok[None, :]
        m = tl.load(PART_MEAN + parts[:, None] * width + cols[None, :], mask=ok, other=0.0)
        acc += tl.sum(m * weight[:, None], axis=0)
    mean = acc / total
    acc = tl.full([BLOCK_W], 0.0, tl.float32)
    for p0 in range(0, n_parts, BLOCK_P):
        parts = p0 + tl.arange(0, BLOCK_P)
        part_ok = parts < n_parts
        rows = tl.minimum(n_rows - parts * rows_per_part, rows_per_part)
        weight = tl.where(part_ok, rows.to(tl.float32) * entries_per_row, 0.0)
        ok = part_ok[:, None] & col_ok[None, :]
        m = tl.load(PART_MEAN + parts[:, None] * width + cols[None, :], mask=ok, other=0.0)
        q = tl.load(PART_M2 + parts[:, None] * width + cols[None, :], mask=ok, other=0.0)
        d = tl.where(ok, m - mean[None, :], 0.0)
        acc += tl.sum(q + weight[:, None] * d * d, axis=0)
    tl.store(MEAN + cols, mean, mask=col_ok)
    tl.store(VAR + cols, acc / var_denominator, mask=col_ok)
    tl.store(RSTD + cols, tl.rsqrt(acc / norm_denominator + eps), mask=col_ok)


def batch_moments(
    x: Tensor, cfg: LaunchConfig, *, row_stats: bool, global_stats: bool, norm_denominator: float, eps: float
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor, Tensor]:
    """``(row_mean, row_var, mean, var, rstd)`` of a contiguous float32 ``x``: row statistics (None unless
    ``row_stats``), then the column (or, with ``global_stats``, global: shape (1,)) mean, unbiased variance and
    ``rsqrt(M2 / norm_denominator + eps)``."""
    n, c = x.shape
    block_n, block_c, tiles, programs = cfg.reduction_grid(n, c)
    width = 1 if global_stats else c
    row_mean = empty(n, like=x) if row_stats else None
    row_var = empty(n, like=x) if row_stats else None
    part_mean, part_m2 = empty((programs, width), like=x), empty((programs, width), like=x)
    partial_moments_kernel[(programs,)](
        x, row_mean if row_stats else part_mean, row_var if row_stats else part_m2, part_mean, part_m2,
        n, c, tiles, float(max(c - 1, 1)),
        BLOCK_N=block_n, BLOCK_C=block_c, ROW_STATS=row_stats, GLOBAL=global_stats, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    count = n * (c if global_stats else 1)
    mean, var, rstd = (empty(width, like=x) for _ in range(3))
    block_w = min(64, next_power_of_2(width))
    combine_moments_kernel[(cdiv(width, block_w),)](
        part_mean, part_m2, mean, var, rstd,
        programs, width, n, tiles * block_n, float(c if global_stats else 1),
        float(max(count - 1, 1)), float(norm_denominator), float(eps),
        BLOCK_P=min(next_power_of_2(programs), 2048 // block_w), BLOCK_W=block_w,
    )  # fmt: skip
    return row_mean, row_var, mean, var, rstd


def moment_sums(x: Tensor, row_stats: bool, cfg: LaunchConfig) -> tuple[Tensor, Tensor, Tensor]:
    """``(sums, row_mean, row_var)`` as ``cpu_kernels().moment_sums``: the column sums of ``x`` and ``x*x``, shape
    (2, C) float64 (sums add up across ranks), made from :func:`batch_moments`' exact per-tile moments
    (``sum = N m``, ``sum of squares = M2 + N m^2``), and with ``row_stats`` the rows' statistics (else empty)."""
    n = x.shape[0]
    row_mean, row_var, mean, var, _ = batch_moments(
        x, cfg, row_stats=row_stats, global_stats=False, norm_denominator=1.0, eps=0.0
    )
    m = mean.double()
    sums = torch.stack([m * n, var.double() * max(n - 1, 1) + m * m * n])
    if not row_stats:
        row_mean = row_var = empty(0, like=x)
    return sums, row_mean, row_var
