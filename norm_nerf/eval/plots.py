"""Figures people look at: image grids with error maps, training curves (matplotlib, no display).

Every figure and image is written whole or not at all (:func:`norm_nerf.utils.atomic.write_atomically`): a full disk
raises :class:`~norm_nerf.utils.atomic.NoSpaceError` and leaves no empty or truncated picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from norm_nerf.utils.atomic import write_atomically


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image_format(path: Path) -> str:
    """The file format a picture's suffix names (``png`` without one): the temporary name has no image suffix."""
    return Path(path).suffix.lstrip(".").lower() or "png"


def save_figure(fig, path: Path, **savefig: Any) -> Path:
    """Write a matplotlib figure (``savefig`` options such as ``dpi``) whole or not at all, then close it."""
    try:
        return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format=_image_format(path), **savefig))
    finally:
        pyplot().close(fig)


def save_image(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 picture, (H, W) or (H, W, C), with PIL (format from the suffix), whole or not at all."""
    from PIL import Image

    fmt = {"jpg": "JPEG"}.get(_image_format(path), _image_format(path).upper())
    return write_atomically(Path(path), lambda tmp: Image.fromarray(image).save(tmp, format=fmt))


def _save(fig, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a figure; returns ``path``."""
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _bare(ax) -> None:
    """An image axis without ticks."""
    ax.set_xticks([])
    ax.set_yticks([])


def save_image_grid(
    target: np.ndarray, preds: dict[str, np.ndarray], path: Path, titles: dict[str, str] | None = None
) -> Path:
    """Target beside each prediction (top row) and each |error| map (bottom row)."""
    plt = pyplot()
    cols = 1 + len(preds)
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.4), squeeze=False)
    cmap = "gray" if target.shape[-1] == 1 else None
    axes[0, 0].imshow(np.clip(target.squeeze(), 0, 1), cmap=cmap, vmin=0, vmax=1)
    axes[0, 0].set_title("target")
    axes[1, 0].axis("off")
    for k, (name, pred) in enumerate(preds.items(), start=1):
        axes[0, k].imshow(np.clip(pred.squeeze(), 0, 1), cmap=cmap, vmin=0, vmax=1)
        axes[0, k].set_title((titles or {}).get(name, name), fontsize=9)
        err = np.abs(np.clip(pred, 0, 1) - target).mean(-1)
        axes[1, k].imshow(err, cmap="inferno", vmin=0, vmax=0.25)
        axes[1, k].set_title(f"|error| {name}", fontsize=9)
    for ax in axes.flat:
        _bare(ax)
    return _save(fig, path)


def save_curves(
    curves: dict[str, tuple[list[int], list[float]]], path: Path, ylabel: str = "train-mode PSNR [dB]"
) -> Path:
    """One line per method: metric over training steps. Beyond ten methods the colours come from a 20-colour map,
    so that no two lines share one."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors
    for k, (name, (steps, values)) in enumerate(curves.items()):
        ax.plot(steps, values, label=name, color=colours[k % len(colours)])
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def log_spectrum(img: np.ndarray) -> np.ndarray:
    """Centred log-magnitude 2-D Fourier spectrum of an image (channels averaged)."""
    gray = img.mean(-1) if img.ndim == 3 else img
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))))


def save_spectra(target: np.ndarray, pred: np.ndarray, path: Path) -> Path:
    """The prediction's Fourier spectrum beside the target's (shared colour scale)."""
    plt = pyplot()
    st, sp = log_spectrum(target), log_spectrum(pred)
    vmax = float(max(st.max(), sp.max()))
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    for ax, spec, title in zip(axes, (st, sp), ("target spectrum", "reconstruction spectrum")):
        ax.imshow(spec, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        _bare(ax)
    return _save(fig, path)


def save_panels(panels: dict[str, np.ndarray], path: Path, error_of: tuple[str, str] | None = None) -> Path:
    """A row of images (gray or RGB, values in [0, 1]) plus an |error| map of ``error_of = (pred, target)``."""
    plt = pyplot()
    items = list(panels.items())
    if error_of is not None:
        pred, target = panels[error_of[0]], panels[error_of[1]]
        err = np.abs(np.clip(pred, 0, 1) - target)
        items.append(("|error|", err.mean(-1) if err.ndim == 3 else err))
    fig, axes = plt.subplots(1, len(items), figsize=(2.8 * len(items), 3.0), squeeze=False)
    for ax, (title, img) in zip(axes[0], items):
        is_err = title == "|error|"
        cmap = "inferno" if is_err else ("gray" if img.ndim == 2 or img.shape[-1] == 1 else None)
        vmax = 0.25 if is_err else 1.0
        ax.imshow(np.clip(np.squeeze(img), 0, None if is_err else 1), cmap=cmap, vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        _bare(ax)
    return _save(fig, path)


def save_rate_distortion(points: dict[str, list[tuple[float, float]]], path: Path) -> Path:
    """PSNR against bits per pixel, one line per method (the compression view of image fitting)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("bits per pixel (32-bit parameters)")
    ax.set_ylabel("PSNR [dB] (eval mode)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)
