"""Image-quality metrics on arrays/tensors with values in [0, data_range]."""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float
from torch import Tensor


def mse_to_psnr(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB from a mean squared error (inf for a perfect fit)."""
    if mse <= 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def psnr(pred: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"], data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all entries (prediction clipped to the data range)."""
    if pred.shape != target.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    err = (pred.detach().clamp(0, data_range) - target.detach()).double().square().mean().item()
    return mse_to_psnr(err, data_range)


def ssim(
    pred: Float[Tensor, "*shape"],
    target: Float[Tensor, "*shape"],
    data_range: float = 1.0,
    channel_axis: int | None = None,
) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window sigma 1.5) of an image or volume.

    ``channel_axis`` marks a colour axis (e.g. -1 for (H, W, 3)); NaN when a side is shorter than the 11-sample window.
    """
    from skimage.metrics import structural_similarity

    if pred.shape != target.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    p = pred.detach().clamp(0, data_range).double().cpu().numpy()
    t = target.detach().double().cpu().numpy()
    if channel_axis is not None and p.shape[channel_axis] == 1:
        p, t, channel_axis = np.squeeze(p, channel_axis), np.squeeze(t, channel_axis), None
    spatial = [s for i, s in enumerate(p.shape) if channel_axis is None or i != channel_axis % p.ndim]
    if min(spatial) < 11:  # the Gaussian window (sigma 1.5) spans 11 samples
        return float("nan")
    return float(
        structural_similarity(
            p, t, data_range=data_range, channel_axis=channel_axis, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
    )  # fmt: skip


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 for saving."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
