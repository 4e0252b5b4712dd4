"""Launch geometry of the Triton norm kernels (no triton import).

Every kernel works on tiles of ``BLOCK_N`` whole rows (``BLOCK_C`` = the next power of two of the channels C, so a
row's sums never leave one program). Elementwise passes launch one program per tile. Passes that reduce over the
points (column statistics, affine and input-gradient sums) loop over ``tiles_per_program`` consecutive tiles and
write one partial result per program, so the partials stay small (a few hundred rows) however many points there
are; a second, tiny step combines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MAX_CHANNELS = 8192
"""Widest rows the kernels take (a tile holds whole rows); wider inputs use the eager ``fast`` Functions."""


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def empty(shape: int | tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised float32 buffer on ``like``'s device."""
    return torch.empty(shape, dtype=torch.float32, device=like.device)


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes and program counts.

    Args:
        tile_elements: target entries per tile (``BLOCK_N * BLOCK_C``; one row when a row alone is wider).
        max_rows: most rows per tile.
        max_programs: most programs of a reducing pass (each loops over its share of the tiles).
    """

    tile_elements: int = 2048
    max_rows: int = 128
    max_programs: int = 512

    def blocks(self, c: int) -> tuple[int, int]:
        """``(BLOCK_N, BLOCK_C)`` for rows of ``c`` channels."""
        block_c = next_power_of_2(c)
        rows = max(1, min(self.max_rows, self.tile_elements // block_c))
        return 1 << (rows.bit_length() - 1), block_c  # a power of two (tl.arange needs one)

    def reduction_grid(self, n: int, c: int) -> tuple[int, int, int, int]:
        """``(BLOCK_N, BLOCK_C, tiles_per_program, programs)`` of a pass that reduces over the ``n`` rows."""
        block_n, block_c = self.blocks(c)
        tiles = cdiv(n, block_n)
        per_program = cdiv(tiles, self.max_programs)
        return block_n, block_c, per_program, cdiv(tiles, per_program)

    def num_warps(self, c: int) -> int:
        """Warps per program: one per 256 tile entries (8 entries per thread and tensor), 4 to 16."""
        block_n, block_c = self.blocks(c)
        return min(16, max(4, block_n * block_c // 256))


def gpu_config(multiprocessors: int) -> LaunchConfig:
    """Tiles of about 2048 entries; reducing passes with four programs per multiprocessor."""
    return LaunchConfig(tile_elements=2048, max_rows=128, max_programs=max(4 * int(multiprocessors), 1))


INTERPRETER_CONFIG = LaunchConfig(tile_elements=64, max_rows=4, max_programs=3)
"""Under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors): tiles of at most 4 rows and at most 3 programs,
so that even the tests' tiny shapes run masked last tiles, several tiles per program and several programs."""
