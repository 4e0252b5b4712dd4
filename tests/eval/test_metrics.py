"""SSIM on small and anisotropic signals (issue 14): a window that fits, never NaN; a clear error below 3 samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from norm_nerf.eval.metrics import psnr, ssim, ssim_window


def test_window_shrinks_to_the_smallest_side() -> None:
    assert ssim_window([64, 64]) == (11, 1.5)
    assert ssim_window([32, 16, 8]) == (7, pytest.approx(0.9))
    assert ssim_window([4, 4]) == (3, pytest.approx(0.3))
    with pytest.raises(ValueError, match=r"ssim: a spatial side of \(2, 9\) is shorter than the smallest SSIM window"):
        ssim_window([2, 9])


def test_full_size_ssim_is_the_standard_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((20, 24, 3)), rng.random((20, 24, 3))
    expected = structural_similarity(
        b, a, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(torch.from_numpy(b), torch.from_numpy(a), channel_axis=-1) == pytest.approx(expected)


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 3), (3, 40), (32, 16, 8), (5, 6, 7), (10, 12, 11)])
def test_small_and_anisotropic_signals_have_a_finite_ssim(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    target = torch.rand(shape, dtype=torch.float64)
    channel_axis = -1 if shape == (4, 4, 3) else None
    assert ssim(target, target, channel_axis=channel_axis) == pytest.approx(1.0)
    noisy = (target + 0.1 * torch.randn(shape, dtype=torch.float64)).clamp(0, 1)
    value = ssim(noisy, target, channel_axis=channel_axis)
    assert math.isfinite(value) and 0 < value < 1


def test_sides_below_three_raise_a_clear_reason() -> None:
    with pytest.raises(ValueError, match="shorter than the smallest SSIM window"):
        ssim(torch.rand(2, 8), torch.rand(2, 8))
    with pytest.raises(ValueError, match="shorter than the smallest SSIM window"):
        ssim(torch.rand(8, 8, 2), torch.rand(8, 8, 2))
    # a 3-channel axis is not spatial
    assert math.isfinite(ssim(torch.rand(3, 3, 3), torch.rand(3, 3, 3), channel_axis=-1))


def test_psnr_caps_inside_the_metric_only_when_asked() -> None:
    from norm_nerf.eval.metrics import PSNR_CAP_DB, mse_to_psnr

    x = torch.rand(4, 4, 3)
    assert psnr(x, x) == math.inf
    assert psnr(x, x, cap_db=PSNR_CAP_DB) == PSNR_CAP_DB == mse_to_psnr(0.0, cap_db=PSNR_CAP_DB)
    assert mse_to_psnr(1e-2, cap_db=PSNR_CAP_DB) == pytest.approx(20.0)
