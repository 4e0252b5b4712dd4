"""Tile helpers of the Triton kernels (``@triton.jit``; Triton inlines them where the kernels call them).

Every kernel works on tiles of ``BLOCK_N`` whole rows of a row-major float32 ``N x C`` matrix (``BLOCK_C >= C``):
:func:`column_range` gives the tile's columns, :func:`row_tile` its rows, masks and element offsets (64-bit, so
matrices over 2^31 entries index correctly), and :func:`load_columns` / :func:`load_rows` read per-column and per-row
vectors with masked lanes as 0.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def column_range(n_cols, BLOCK_C: tl.constexpr):
    """``(cols, col_ok)``: the ``BLOCK_C`` column indices of a tile and which of them exist."""
    cols = tl.arange(0, BLOCK_C)
    return cols, cols < n_cols


@triton.jit
def row_tile(first_row, n_rows, n_cols, cols, col_ok, BLOCK_N: tl.constexpr):
    """``(rows, row_ok, ok, offs)`` of the tile whose first row is ``first_row``: row indices, which rows exist,
    the element mask and the element offsets."""
    rows = first_row + tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    ok = row_ok[:, None] & col_ok[None, :]
    offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    return rows, row_ok, ok, offs


@triton.jit
def load_columns(P, cols, col_ok):
    """The per-column vector at ``P`` for the tile's columns (0 past the last)."""
    return tl.load(P + cols, mask=col_ok, other=0.0)


@triton.jit
def load_rows(P, rows, row_ok):
    """The per-row vector at ``P`` for the tile's rows (0 past the last)."""
    return tl.load(P + rows, mask=row_ok, other=0.0)
