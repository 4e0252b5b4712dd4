"""The convergence rule every metrics.json records and the tables check."""

import math

import pytest

from norm_nerf.tasks.trainer import CONVERGENCE_THRESHOLD, convergence


def test_a_flat_curve_converged_a_rising_one_not() -> None:
    steps = list(range(0, 1000, 10)) + [999]
    flat = [30 - 10 * math.exp(-s / 50) for s in steps]  # flat long before 90%
    rising = [10 + s / 100 for s in steps]  # +1 dB per 100 steps: +1 dB over the last 10%
    got = convergence(steps, flat, "psnr")
    assert got["converged"] is True and got["gain_last_10pct"] < 1e-3 and got["threshold"] == 0.1
    got = convergence(steps, rising, "psnr")
    assert got["converged"] is False and got["gain_last_10pct"] == pytest.approx(1.0, abs=0.05)


def test_iou_threshold_and_noise() -> None:
    steps = list(range(0, 500, 5)) + [499]
    noisy = [0.95 + (0.004 if i % 2 else -0.004) for i in range(len(steps))]  # +-0.004 batch noise, flat trend
    assert convergence(steps, noisy, "iou")["converged"] is True
    assert CONVERGENCE_THRESHOLD["iou"] == 0.002


def test_short_or_unknown_curves_give_no_verdict() -> None:
    assert convergence([0, 1], [1.0, 2.0], "psnr")["converged"] is None
    assert convergence([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], "loss")["converged"] is None
    sparse = convergence([0, 500, 1000], [10.0, 20.0, 21.0], "psnr")  # windows fall back to the nearest points
    assert sparse["converged"] is False
