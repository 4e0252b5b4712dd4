"""Triton kernels: train-mode RMS norm on float32 ``N x C``; the twin of ``rms_norm_*`` in ``csrc/norms.cpp``.

Forward: one elementwise pass (each tile holds whole rows): ``q_i = rsqrt(mean_j x_ij^2 + eps)``,
``y = x q w + b``, ``q`` saved. Backward: one reducing pass, ``dx = q (h - x q^2 sum_j(h x) / C)`` with
``h = g w``, and the column partials ``sum g x q`` and ``sum g`` of the affine gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from norm_nerf.core.triton.launch import LaunchConfig, cdiv, empty
from norm_nerf.core.triton.tiles import column_range, load_columns, load_rows, row_tile


@triton.jit
def rms_forward_kernel(
    X, W, B, Y, INV, n_rows, n_cols, eps,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    cols, col_ok = column_range(n_cols, BLOCK_C)
    rows, row_ok, ok, offs = row_tile(tl.program_id(0) * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
    x = tl.load(X + offs, mask=ok, other=0.0)
    w = load_columns(W, cols, col_ok)
    b = load_columns(B, cols, col_ok)
    q = tl.rsqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    tl.store(INV + rows, q, mask=row_ok)
    tl.store(Y + offs, x * q[:, None] * w[None, :] + b[None, :], mask=ok)


@triton.jit
def rms_backward_kernel(
    G, X, W, INV, DX, PART, n_rows, n_cols, tiles_per_program,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols, col_ok = column_range(n_cols, BLOCK_C)
    w = load_columns(W, cols, col_ok)
    s_w = tl.full([BLOCK_C], 0.0, tl.float32)
    s_b = tl.full([BLOCK_C], 0.0, tl.float32)
    first = pid * tiles_per_program * BLOCK_N
    for t in range(0, tiles_per_program):
        rows, row_ok, ok, offs = row_tile(first + t * BLOCK_N, n_rows, n_cols, cols, col_ok, BLOCK_N)
        x = tl.load(X + offs, mask=ok, other=0.0)
        g = tl.load(G + offs, mask=ok, other=0.0)
        q = load_rows(INV, rows, row_ok)
        h = g * w[None, :]
        a = q * q * tl.sum(h * x, axis=1) / n_cols
        tl.store(DX + offs, q[:, None] * (h - x * a[:, None]), mask=ok)
        s_w += tl.sum(g * x * q[:, None], axis=0)
        s_b += tl.sum(g, axis=0)
    base = PART + pid * 2 * n_cols + cols
    tl.store(base, s_w, mask=col_ok)
    tl.store(base + n_cols, s_b, mask=col_ok)


def forward(x: Tensor, w: Tensor, b: Tensor, eps: float, cfg: LaunchConfig) -> tuple[Tensor, Tensor]:
    """``(y, inv_rms)`` as ``cpu_kernels().rms_norm_forward``."""
    n, c = x.shape
    block_n, block_c = cfg.blocks(c)
    y, inv = torch.empty_like(x), empty(n, like=x)
    rms_forward_kernel[(cdiv(n, block_n),)](
        x, w, b, y, inv, n, c, float(eps), BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c)
    )
    return y, inv


def backward(g: Tensor, x: Tensor, w: Tensor, inv: Tensor, cfg: LaunchConfig) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, d_weight, d_bias)`` as ``cpu_kernels().rms_norm_backward``."""
    n, c = x.shape
    block_n, block_c, tiles, programs = cfg.reduction_grid(n, c)
    dx, part = torch.empty_like(x), empty((programs, 2, c), like=x)
    rms_backward_kernel[(programs,)](
        g, x, w, inv, dx, part, n, c, tiles, BLOCK_N=block_n, BLOCK_C=block_c, num_warps=cfg.num_warps(c)
    )
    sums = part.sum(0)
    return dx, sums[0], sums[1]
