"""Constant test images for the Blender evaluation: prediction = ground truth + d, so PSNR and SSIM have closed
forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

C1, C2 = 0.01**2, 0.03**2
S = 40  # >= 31 px a side, so LPIPS (AlexNet) applies


def save_image(folder: Path, name: str, values, channels: int = 3) -> None:
    """An S x S image of constant ``values`` (uint8) as ``folder/name.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.broadcast_to(np.asarray(values, dtype=np.uint8), (S, S, channels)).copy()
    Image.fromarray(arr).save(folder / f"{name}.png")


def offset_case(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[int, int]]]:
    """Constant images: prediction = ground truth + d (in 1/255 steps); returns the folders and ``{name: (c, d)}``."""
    cases = {"a": (100, 13), "b": (60, 26)}
    for name, (c, d) in cases.items():
        save_image(tmp_path / "gt", name, c)
        save_image(tmp_path / "pred", name, c + d)
    return tmp_path / "pred", tmp_path / "gt", cases


def closed_form(c: int, d: int) -> tuple[float, float]:
    """PSNR and SSIM of a constant image c + d against c (the structure term is 1)."""
    x, y = c / 255, (c + d) / 255
    return -10 * math.log10((d / 255) ** 2), (2 * x * y + C1) / (x * x + y * y + C1)
