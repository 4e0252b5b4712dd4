"""Image-quality metrics on arrays/tensors with values in [0, data_range]."""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float
from torch import Tensor

PSNR_CAP_DB = 100.0
"""Largest PSNR reported for one image: an exact match (MSE 0) has infinite PSNR, which would make a mean inf."""


def mse_to_psnr(mse: float, data_range: float = 1.0, cap_db: float | None = None) -> float:
    """PSNR in dB from a mean squared error: inf for a perfect fit, or at most ``cap_db`` when given."""
    value = math.inf if mse <= 0 else 10.0 * math.log10(data_range**2 / mse)
    return value if cap_db is None else min(value, cap_db)


def psnr(
    pred: Float[Tensor, "*shape"], target: Float[Tensor, "*shape"], data_range: float = 1.0, cap_db: float | None = None
) -> float:
    """Peak signal-to-noise ratio in dB over all entries (prediction clipped to the data range), at most ``cap_db``
    when given (:data:`PSNR_CAP_DB` for images, as norm-eval-blender reports them)."""
    if pred.shape != target.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    err = (pred.detach().clamp(0, data_range) - target.detach()).double().square().mean().item()
    return mse_to_psnr(err, data_range, cap_db)


SSIM_WINDOW = 11
"""Full SSIM window in samples per axis (Gaussian, sigma 1.5, as in Wang et al. 2004)."""
SSIM_MIN_WINDOW = 3
"""Smallest SSIM window: a signal with a spatial side shorter than this has no SSIM."""


def ssim_window(spatial_shape: tuple[int, ...] | list[int]) -> tuple[int, float]:
    """The SSIM window ``(size, sigma)`` for an image or volume with these spatial sides.

    The standard 11-sample Gaussian window (sigma 1.5) when every side is at least 11; otherwise the largest odd size
    ``w`` that fits the smallest side, with sigma scaled to ``1.5 * (w // 2) / 5`` (the same Gaussian shape over a
    smaller support; scikit-image truncates the Gaussian at 3.5 sigma, which gives exactly ``w`` samples). The
    window is isotropic, so an anisotropic volume such as 32x16x8 uses a 7-sample window on every axis.
    Raises ``ValueError`` when a side is shorter than :data:`SSIM_MIN_WINDOW`.
    """
    smallest = min(spatial_shape)
    if smallest < SSIM_MIN_WINDOW:
        raise ValueError(
            f"ssim: a spatial side of {tuple(spatial_shape)} is shorter than the smallest SSIM window "
            f"({SSIM_MIN_WINDOW} samples)"
        )
    if smallest >= SSIM_WINDOW:
        return SSIM_WINDOW, 1.5
    size = smallest if smallest % 2 else smallest - 1
    return size, 1.5 * (size // 2) / (SSIM_WINDOW // 2)


def ssim(
    pred: Float[Tensor, "*shape"],
    target: Float[Tensor, "*shape"],
    data_range: float = 1.0,
    channel_axis: int | None = None,
) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window sigma 1.5) of an image or volume.

    ``channel_axis`` marks a colour axis (e.g. -1 for (H, W, 3)); SSIM is the mean over channels. Signals with a
    spatial side shorter than 11 use a smaller window (:func:`ssim_window`); a side shorter than 3 raises
    ``ValueError``.
    """
    from skimage.metrics import structural_similarity

    if pred.shape != target.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    p = pred.detach().clamp(0, data_range).double().cpu().numpy()
    t = target.detach().double().cpu().numpy()
    if channel_axis is not None and p.shape[channel_axis] == 1:
        p, t, channel_axis = np.squeeze(p, channel_axis), np.squeeze(t, channel_axis), None
    spatial = [s for i, s in enumerate(p.shape) if channel_axis is None or i != channel_axis % p.ndim]
    _, sigma = ssim_window(spatial)
    return float(
        structural_similarity(
            p, t, data_range=data_range, channel_axis=channel_axis, gaussian_weights=True, sigma=sigma,
            use_sample_covariance=False,
        )
    )  # fmt: skip


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 for saving."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
