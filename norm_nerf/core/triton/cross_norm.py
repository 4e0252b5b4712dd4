"""Triton kernels: train-mode cross norm on float32 ``N x C``, forward, backward and double backward.

The same algorithm as the C++ twin (``csrc/norms.cpp``) and the same formulas as
:class:`norm_nerf.core.functions.cross_norm.CrossNormFunction` (input gradient) and
:class:`~norm_nerf.core.functions.cross_norm.KernelCrossNormGradFunction` (double backward); only per-row and
per-column vectors are saved between passes, and ``r = rsqrt(Var_C_i + Var_N_j + eps)`` is recomputed in every pass
instead of stored (a multiply-add and a reciprocal square root cost less than writing and reading ``N x C`` floats).
Differences from the C++ kernels, for accuracy: statistics come from :mod:`norm_nerf.core.triton.moments` (two-pass
per tile, pairwise folds) and every centred quantity is written as differences from the means,
``z = ((x - m_j) N + (x - rho_i) C + x) / K`` and ``... - (x - m_j) a_j - (x - rho_i) b_i``, never as a difference
of large products.

Forward: one reducing pass (row statistics, column partials), one fold, one elementwise pass (:func:`apply`). Backward:
a reducing pass (four column sums, two row sums), a sum of the partials (:func:`backward_sums`), an elementwise pass
(:func:`backward_apply`); synchronised statistics all-reduce the sums between the halves. Double backward: two reducing
passes and an elementwise one, with the same all-reduces between them (:func:`double_backward_sums`,
:func:`double_backward_sums2`, :func:`double_backward_apply`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from norm_nerf.core.triton.launch import LaunchConfig, cdiv, empty
from norm_nerf.core.triton.moments import batch_moments
from norm_nerf.core.triton.tiles import column_range, load_columns, load_rows, row_tile


@triton.jit
def cross_forward_kernel(
    X, W, B, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, Y,
    n_rows, n_cols, frac_n, frac_c, inv_k, eps,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``y = z r w + b`` with ``z = x - mu_ij`` and ``r = rsqrt(rho_var_i + col_var_j + eps)``."""
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    b = load_columns(B, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    rm = load_rows(ROW_MEAN, rows, row_ok)
    rv = load_rows(ROW_VAR, rows, row_ok)
    z = (x - cm[None, :]) * frac_n + (x - rm[:, None]) * frac_c + x * inv_k
    r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
    tl.store(Y + offs, z * r * w[None, :] + b[None, :], mask=ok)


@triton.jit
def cross_backward_sums_kernel(
    G, X, W, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, ROW_B, ROW_P, PART,
    n_rows, n_cols, tiles_per_program, frac_n, frac_c, inv_k, eps, row_denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Column partials ``sum g``, ``sum g yhat``, ``sum g r``, ``sum g z r^3`` (``PART[program, 0..3]``) and per row
    ``ROW_B = sum_j w g z r^3 / (C-1)`` and ``ROW_P = sum_j w g r``."""
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    w = load_columns(W, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    s_g = tl.full([BLOCK_C], 0.0, tl.float32)
    s_gy = tl.full([BLOCK_C], 0.0, tl.float32)
    s_gr = tl.full([BLOCK_C], 0.0, tl.float32)
    s_u = tl.full([BLOCK_C], 0.0, tl.float32)
    first = pid * tiles_per_program * BLOCK_N
    for t in range(0, tiles_per_program):
        rows, row_ok, ok, offs = row_tile(first + t * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
        x = tl.load(X + offs, mask=ok, other=0.0)
        g = tl.load(G + offs, mask=ok, other=0.0)
        rm = load_rows(ROW_MEAN, rows, row_ok)
        rv = load_rows(ROW_VAR, rows, row_ok)
        r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
        z = (x - cm[None, :]) * frac_n + (x - rm[:, None]) * frac_c + x * inv_k
        gr = g * r
        u = gr * z * r * r
        s_g += tl.sum(g, axis=0)
        s_gy += tl.sum(gr * z, axis=0)
        s_gr += tl.sum(gr, axis=0)
        s_u += tl.sum(u, axis=0)
        tl.store(ROW_B + rows, tl.sum(u * w[None, :], axis=1) / row_denominator, mask=row_ok)
        tl.store(ROW_P + rows, tl.sum(gr * w[None, :], axis=1), mask=row_ok)
    base = PART + pid * 4 * n_cols + cols
    tl.store(base, s_g, mask=col_ok)
    tl.store(base + n_cols, s_gy, mask=col_ok)
    tl.store(base + 2 * n_cols, s_gr, mask=col_ok)
    tl.store(base + 3 * n_cols, s_u, mask=col_ok)


@triton.jit
def cross_backward_kernel(
    G, X, W, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, ROW_B, ROW_P, SUMS, DX,
    n_rows, n_cols, frac_n, frac_c, inv_k, eps, col_denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """``dx = (K+1)/K w g r - w colsum(g r)/K - rowsum(w g r)/K - (x - m_j) a_j - (x - rho_i) b_i`` with
    ``a_j = w_j colsum(g z r^3)_j / (N-1)`` and ``b_i`` = ``ROW_B``."""
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    g = tl.load(G + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    s_gr = load_columns(SUMS + 2 * n_cols, cols, col_ok)
    s_u = load_columns(SUMS + 3 * n_cols, cols, col_ok)
    rm = load_rows(ROW_MEAN, rows, row_ok)
    rv = load_rows(ROW_VAR, rows, row_ok)
    b_row = load_rows(ROW_B, rows, row_ok)
    p_row = load_rows(ROW_P, rows, row_ok)
    a_col = w * s_u / col_denominator
    shift = w * s_gr * inv_k
    r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
    dx = (1.0 + inv_k) * w[None, :] * g * r - shift[None, :] - (p_row * inv_k)[:, None]
    dx = dx - (x - cm[None, :]) * a_col[None, :] - (x - rm[:, None]) * b_row[:, None]
    tl.store(DX + offs, dx, mask=ok)


@triton.jit
def cross_double_sums_kernel(
    V, G, X, W, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, ROW_DM, ROW_DB, ROW_BR, PART,
    n_rows, n_cols, tiles_per_program, frac_n, frac_c, inv_k, eps, row_denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Double backward, pass 1: column partials ``sum v``, ``sum (x - m) v``, ``sum u`` (``u = g w z r^3``) and per
    row ``ROW_DM = mean_j v``, ``ROW_DB = 2 sum_j (x - rho) v / (C-1)``, ``ROW_BR = sum_j u / (C-1)``."""
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    w = load_columns(W, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    s_v = tl.full([BLOCK_C], 0.0, tl.float32)
    s_xv = tl.full([BLOCK_C], 0.0, tl.float32)
    s_u = tl.full([BLOCK_C], 0.0, tl.float32)
    first = pid * tiles_per_program * BLOCK_N
    for t in range(0, tiles_per_program):
        rows, row_ok, ok, offs = row_tile(first + t * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
        x = tl.load(X + offs, mask=ok, other=0.0)
        g = tl.load(G + offs, mask=ok, other=0.0)
        v = tl.load(V + offs, mask=ok, other=0.0)
        rm = load_rows(ROW_MEAN, rows, row_ok)
        rv = load_rows(ROW_VAR, rows, row_ok)
        r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
        z = (x - cm[None, :]) * frac_n + (x - rm[:, None]) * frac_c + x * inv_k
        u = g * w[None, :] * z * r * r * r
        s_v += tl.sum(v, axis=0)
        s_xv += tl.sum((x - cm[None, :]) * v, axis=0)  # v is 0 outside the matrix
        s_u += tl.sum(u, axis=0)
        tl.store(ROW_DM + rows, tl.sum(v, axis=1) / n_cols, mask=row_ok)
        tl.store(ROW_DB + rows, 2.0 * tl.sum((x - rm[:, None]) * v, axis=1) / row_denominator, mask=row_ok)
        tl.store(ROW_BR + rows, tl.sum(u, axis=1) / row_denominator, mask=row_ok)
    base = PART + pid * 3 * n_cols + cols
    tl.store(base, s_v, mask=col_ok)
    tl.store(base + n_cols, s_xv, mask=col_ok)
    tl.store(base + 2 * n_cols, s_u, mask=col_ok)


@triton.jit
def cross_double_terms_kernel(
    V, G, X, W, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, ROW_DM, ROW_DB, SUMS1, ROW_Q, ROW_DBB, PART, GG,
    n_rows, n_cols, tiles_per_program, count, frac_n, frac_c, inv_k, eps, row_denominator, col_denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Double backward, pass 2: ``t = J v = dz r + z dr`` and ``GG = dL/dg = w t``; column partials ``sum g t``,
    ``sum dp``, ``sum du`` (``dp = h dr``, ``du = h r^2 (dz r + 3 z dr)``, ``h = g w``) and per row
    ``ROW_Q = sum_j dp``, ``ROW_DBB = sum_j du / (C-1)``. ``count``: the rows behind the column sums ``SUMS1``."""
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    w = load_columns(W, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    dm_col = load_columns(SUMS1, cols, col_ok) / count
    da_col = 2.0 * load_columns(SUMS1 + n_cols, cols, col_ok) / col_denominator
    s_gt = tl.full([BLOCK_C], 0.0, tl.float32)
    s_dp = tl.full([BLOCK_C], 0.0, tl.float32)
    s_du = tl.full([BLOCK_C], 0.0, tl.float32)
    first = pid * tiles_per_program * BLOCK_N
    for t in range(0, tiles_per_program):
        rows, row_ok, ok, offs = row_tile(first + t * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
        x = tl.load(X + offs, mask=ok, other=0.0)
        g = tl.load(G + offs, mask=ok, other=0.0)
        v = tl.load(V + offs, mask=ok, other=0.0)
        rm = load_rows(ROW_MEAN, rows, row_ok)
        rv = load_rows(ROW_VAR, rows, row_ok)
        dm_row = load_rows(ROW_DM, rows, row_ok)
        db_row = load_rows(ROW_DB, rows, row_ok)
        r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
        z = (x - cm[None, :]) * frac_n + (x - rm[:, None]) * frac_c + x * inv_k
        dz = (v - dm_col[None, :]) * frac_n + (v - dm_row[:, None]) * frac_c + v * inv_k
        dr = -0.5 * r * r * r * (da_col[None, :] + db_row[:, None])
        jv = dz * r + z * dr
        h = g * w[None, :]
        dp = h * dr
        du = h * r * r * (dz * r + 3.0 * z * dr)
        tl.store(GG + offs, jv * w[None, :], mask=ok)
        s_gt += tl.sum(g * jv, axis=0)
        s_dp += tl.sum(dp, axis=0)
        s_du += tl.sum(du, axis=0)
        tl.store(ROW_Q + rows, tl.sum(dp, axis=1), mask=row_ok)
        tl.store(ROW_DBB + rows, tl.sum(du, axis=1) / row_denominator, mask=row_ok)
    base = PART + pid * 3 * n_cols + cols
    tl.store(base, s_gt, mask=col_ok)
    tl.store(base + n_cols, s_dp, mask=col_ok)
    tl.store(base + 2 * n_cols, s_du, mask=col_ok)


@triton.jit
def cross_double_backward_kernel(
    V, G, X, W, ROW_MEAN, ROW_VAR, COL_MEAN, COL_VAR, ROW_DM, ROW_DB, ROW_BR, ROW_Q, ROW_DBB, SUMS1, SUMS2, GX,
    n_rows, n_cols, count, inv_k, eps, col_denominator,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """Double backward, pass 3: ``GX = dL/dx = H v = (K+1)/K dp - colsum(dp)/K - rowsum(dp)/K - (v - dm_j) A_j
    - (v - drho_i) B_i - (x - m_j) dA_j - (x - rho_i) dB_i``. ``count``: the rows behind the column sums."""
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    g = tl.load(G + offs, mask=ok, other=0.0)
    v = tl.load(V + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    cm = load_columns(COL_MEAN, cols, col_ok)
    cv = load_columns(COL_VAR, cols, col_ok)
    dm_col = load_columns(SUMS1, cols, col_ok) / count
    da_col = 2.0 * load_columns(SUMS1 + n_cols, cols, col_ok) / col_denominator
    a_col = load_columns(SUMS1 + 2 * n_cols, cols, col_ok) / col_denominator
    p_col = load_columns(SUMS2 + n_cols, cols, col_ok)
    dA_col = load_columns(SUMS2 + 2 * n_cols, cols, col_ok) / col_denominator
    rm = load_rows(ROW_MEAN, rows, row_ok)
    rv = load_rows(ROW_VAR, rows, row_ok)
    dm_row = load_rows(ROW_DM, rows, row_ok)
    db_row = load_rows(ROW_DB, rows, row_ok)
    b_row = load_rows(ROW_BR, rows, row_ok)
    q_row = load_rows(ROW_Q, rows, row_ok)
    dB_row = load_rows(ROW_DBB, rows, row_ok)
    r = tl.rsqrt(rv[:, None] + cv[None, :] + eps)
    dp = g * w[None, :] * (-0.5 * r * r * r * (da_col[None, :] + db_row[:, None]))
    out = (1.0 + inv_k) * dp - (p_col * inv_k)[None, :] - (q_row * inv_k)[:, None]
    out = out - (v - dm_col[None, :]) * a_col[None, :] - (v - dm_row[:, None]) * b_row[:, None]
    out = out - (x - cm[None, :]) * dA_col[None, :] - (x - rm[:, None]) * dB_row[:, None]
    tl.store(GX + offs, out, mask=ok)


def _constants(n: float, c: int) -> tuple[float, float, float]:
    """``(N/K, C/K, 1/K)``, ``K = N + C`` (``N`` the rows behind the column statistics):
    ``z = x - mu = (x - m) N/K + (x - rho) C/K + x/K``."""
    k = float(n + c)
    return n / k, c / k, 1.0 / k


def forward(x: Tensor, w: Tensor, b: Tensor, eps: float, cfg: LaunchConfig) -> tuple[Tensor, ...]:
    """``(y, row_mean, row_var, col_mean, col_var)`` as ``cpu_kernels().cross_norm_forward``."""
    row_mean, row_var, col_mean, col_var, _ = batch_moments(
        x, cfg, row_stats=True, global_stats=False, norm_denominator=1.0, eps=eps
    )
    y = apply(x, w, b, row_mean, row_var, col_mean, col_var, x.shape[0], eps, cfg)
    return y, row_mean, row_var, col_mean, col_var


def apply(
    x: Tensor, w: Tensor, b: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor,
    count: float, eps: float, cfg: LaunchConfig,
) -> Tensor:  # fmt: skip
    """``y = z r w + b`` with column statistics over ``count`` rows, as ``cpu_kernels().cross_norm_apply``."""
    n, c = x.shape
    y = torch.empty_like(x)
    block_n, block_c = cfg.blocks(c)
    cross_forward_kernel[(cdiv(n, block_n),)](
        x, w, b, row_mean, row_var, col_mean, col_var, y, n, c, *_constants(count, c), float(eps),
        BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return y


def backward_sums(
    g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor,
    count: float, eps: float, cfg: LaunchConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """``(sums, row_b, row_p, work)`` as ``cpu_kernels().cross_norm_backward_sums``: the four column sums (4, C), the
    two row sums, and the ``N x C`` buffer :func:`backward_apply` writes the gradient into (``r`` is recomputed here,
    not stored)."""
    n, c = x.shape
    block_n, block_c, tiles, programs = cfg.reduction_grid(n, c)
    row_b, row_p = empty(n, like=x), empty(n, like=x)
    part = empty((programs, 4, c), like=x)
    cross_backward_sums_kernel[(programs,)](
        g, x, w, row_mean, row_var, col_mean, col_var, row_b, row_p, part, n, c, tiles, *_constants(count, c),
        float(eps), float(max(c - 1, 1)), BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return part.sum(0), row_b, row_p, torch.empty_like(x)


def backward_apply(
    g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor,
    row_b: Tensor, row_p: Tensor, sums: Tensor, work: Tensor, count: float, eps: float, cfg: LaunchConfig,
) -> Tensor:  # fmt: skip
    """``dx`` into ``work`` from the column sums of :func:`backward_sums` (of all ranks, with synchronised statistics)
    over ``count`` rows, as ``cpu_kernels().cross_norm_backward_apply``."""
    n, c = x.shape
    block_n, block_c = cfg.blocks(c)
    cross_backward_kernel[(cdiv(n, block_n),)](
        g, x, w, row_mean, row_var, col_mean, col_var, row_b, row_p, sums.to(torch.float32).contiguous(), work, n, c,
        *_constants(count, c), float(eps), float(max(count - 1, 1)),
        BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return work


def backward(
    g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor,
    eps: float, cfg: LaunchConfig,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """``(dx, d_weight, d_bias)`` as ``cpu_kernels().cross_norm_backward``."""
    stats, n = (row_mean, row_var, col_mean, col_var), x.shape[0]
    sums, row_b, row_p, work = backward_sums(g, x, w, *stats, n, eps, cfg)
    return backward_apply(g, x, w, *stats, row_b, row_p, sums, work, n, eps, cfg), sums[1], sums[0]


def double_backward_sums(
    v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
    col_var: Tensor, count: float, eps: float, cfg: LaunchConfig,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Pass 1 of the double backward, as ``cpu_kernels().cross_norm_double_backward_sums``: ``(sums1, rows1, work)``,
    the column sums (3, C), the row sums (3, N) and the ``N x C`` buffer :func:`double_backward_apply` writes
    ``dL/dx`` into (``r`` is recomputed in every pass, not stored)."""
    n, c = x.shape
    block_n, block_c, tiles, programs = cfg.reduction_grid(n, c)
    rows1 = empty((3, n), like=x)  # dm, db, br
    part = empty((programs, 3, c), like=x)
    cross_double_sums_kernel[(programs,)](
        v, g, x, w, row_mean, row_var, col_mean, col_var, rows1[0], rows1[1], rows1[2], part, n, c, tiles,
        *_constants(count, c), float(eps), float(max(c - 1, 1)),
        BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return part.sum(0), rows1, torch.empty_like(x)


def double_backward_sums2(
    v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
    col_var: Tensor, rows1: Tensor, sums1: Tensor, work: Tensor, count: float, eps: float, cfg: LaunchConfig,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Pass 2, from pass 1's column sums (of all ranks, with synchronised statistics), as
    ``cpu_kernels().cross_norm_double_backward_sums2``: ``(sums2, rows2, dL/dg)``."""
    n, c = x.shape
    block_n, block_c, tiles, programs = cfg.reduction_grid(n, c)
    rows2 = empty((2, n), like=x)  # q, dbb
    part = empty((programs, 3, c), like=x)
    grad_g = torch.empty_like(x)
    cross_double_terms_kernel[(programs,)](
        v, g, x, w, row_mean, row_var, col_mean, col_var, rows1[0], rows1[1], sums1.to(torch.float32).contiguous(),
        rows2[0], rows2[1], part, grad_g, n, c, tiles, float(count), *_constants(count, c), float(eps),
        float(max(c - 1, 1)), float(max(count - 1, 1)), BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return part.sum(0), rows2, grad_g


def double_backward_apply(
    v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
    col_var: Tensor, rows1: Tensor, rows2: Tensor, sums1: Tensor, sums2: Tensor, work: Tensor, count: float,
    eps: float, cfg: LaunchConfig,
) -> Tensor:  # fmt: skip
    """Pass 3: ``dL/dx`` into ``work`` from the column sums of passes 1 and 2, as
    ``cpu_kernels().cross_norm_double_backward_apply``."""
    n, c = x.shape
    block_n, block_c = cfg.blocks(c)
    inv_k = _constants(count, c)[2]
    cross_double_backward_kernel[(cdiv(n, block_n),)](
        v, g, x, w, row_mean, row_var, col_mean, col_var, rows1[0], rows1[1], rows1[2], rows2[0], rows2[1],
        sums1.to(torch.float32).contiguous(), sums2.to(torch.float32).contiguous(), work, n, c, float(count), inv_k,
        float(eps), float(max(count - 1, 1)), BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c),
    )  # fmt: skip
    return work


def double_backward(
    v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
    col_var: Tensor, eps: float, cfg: LaunchConfig,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """``(dL/dx, dL/dg, dL/dw)`` for an upstream ``v`` on the input gradient, as
    ``cpu_kernels().cross_norm_double_backward``: the three passes back to back."""
    stats, n = (row_mean, row_var, col_mean, col_var), x.shape[0]
    sums1, rows1, work = double_backward_sums(v, g, x, w, *stats, n, eps, cfg)
    sums2, rows2, grad_g = double_backward_sums2(v, g, x, w, *stats, rows1, sums1, work, n, eps, cfg)
    grad_x = double_backward_apply(v, g, x, w, *stats, rows1, rows2, sums1, sums2, work, n, eps, cfg)
    return grad_x, grad_g, sums2[0]
