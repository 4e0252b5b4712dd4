"""Derived image files for data parsers: block-average downscaling and a cache that never writes into the data.

Downscaling crops the right/bottom remainder so that width and height divide by the factor and averages
``factor x factor`` pixel blocks. RGBA images are averaged with premultiplied alpha, so compositing the small
image onto any background equals block-averaging the composited full-size image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Float

from norm_nerf.utils.console import progress

ImageKind = Literal["rgb", "rgba", "mask"]


def block_average(img: Float[np.ndarray, "h w *c"], factor: int) -> Float[np.ndarray, "h2 w2 *c"]:
    """Mean of ``factor`` x ``factor`` pixel blocks after cropping the right/bottom remainder."""
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    blocks = img[:h, :w].astype(np.float64).reshape(h // factor, factor, w // factor, factor, *img.shape[2:])
    return blocks.mean(axis=(1, 3))


def downscale_array(arr: np.ndarray, factor: int, kind: ImageKind) -> np.ndarray:
    """Downscale a uint8 image: ``rgb`` (block mean), ``rgba`` (premultiplied mean), ``mask`` (majority, 0/255)."""
    if kind == "mask":
        return (block_average((arr > 127).astype(np.float64), factor) >= 0.5).astype(np.uint8) * 255
    if kind == "rgba":
        alpha = arr[..., 3:4].astype(np.float64) / 255.0
        premult = block_average(np.concatenate([arr[..., :3] * alpha, alpha * 255.0], axis=-1), factor)
        a = premult[..., 3:4] / 255.0
        rgb = np.where(a > 0, premult[..., :3] / np.maximum(a, 1e-12), 0.0)
        out = np.concatenate([rgb, premult[..., 3:4]], axis=-1)
    else:
        out = block_average(arr, factor)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_downscaled(src: Path, dst: Path, factor: int, kind: ImageKind) -> Path:
    """Write ``dst``: ``src`` converted to ``kind`` (RGB, RGBA or one-channel mask) and downscaled by ``factor``."""
    from PIL import Image

    mode = {"rgb": "RGB", "rgba": "RGBA", "mask": "L"}[kind]
    with Image.open(src) as img:
        arr = np.asarray(img.convert(mode))
    out = downscale_array(arr, factor, kind)  # factor 1: conversion only (masks thresholded to 0/255)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.png")
    Image.fromarray(out).save(tmp)
    tmp.replace(dst)
    return dst


def default_cache_dir(root: Path, data: Path) -> Path:
    """``root/<data folder name>-<hash of its absolute path>``."""
    digest = hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:8]
    return Path(root) / f"{Path(data).name}-{digest}"


def cache_files(
    pairs: list[tuple[Path, Path]],
    make: Callable[[Path, Path], Path],
    description: str,
) -> list[Path]:
    """Make every ``dst`` that is missing or older than its ``src`` with ``make(src, dst)``; returns the dsts."""
    todo = [(s, d) for s, d in pairs if not (d.is_file() and d.stat().st_mtime >= s.stat().st_mtime)]
    with progress(enabled=len(todo) >= 8) as bar:
        for src, dst in bar.track(todo, description=description):
            make(src, dst)
    return [d for _, d in pairs]
