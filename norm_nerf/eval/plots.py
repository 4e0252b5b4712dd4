"""Figures people look at: image grids with error maps, training curves (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_image_grid(
    target: np.ndarray, preds: dict[str, np.ndarray], path: Path, titles: dict[str, str] | None = None
) -> Path:
    """Target beside each prediction (top row) and each |error| map (bottom row)."""
    plt = _plt()
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
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_curves(
    curves: dict[str, tuple[list[int], list[float]]], path: Path, ylabel: str = "train-mode PSNR [dB]"
) -> Path:
    """One line per method: metric over training steps."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (steps, values) in curves.items():
        ax.plot(steps, values, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
