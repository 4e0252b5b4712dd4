"""Frequency-resolved training error: which parts of a signal's Fourier spectrum a network has learned.

The target's discrete Fourier transform is split into bands of the frequency magnitude |k| (cycles per
domain; radial |k| = sqrt(kx² + ky²) for images). Per band, the relative error is
``||F(pred - target)||_band / ||F(target)||_band``: 1 for a zero prediction, 0 for a perfect fit. A network
with spectral bias drives the low bands to 0 long before the high ones.

Networks train with the task trainer (:func:`norm_nerf.tasks.trainer.fit`, full batch, MSE): a
:class:`GridSignal` is a trainer signal, and :func:`train_full_batch` records every state through its callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from norm_nerf.core.grids import pixel_grid
from norm_nerf.data.images import bundled_image
from norm_nerf.eval.metrics import mse_to_psnr
from norm_nerf.eval.plots import pyplot, save_figure
from norm_nerf.tasks.trainer import TrainConfig, fit

SINE_FREQUENCIES = (5, 15, 25, 35, 45)
"""Frequencies (cycles over [-1, 1]) of the default 1-D spectral-bias signal, equal amplitudes."""
POWER_FLOOR = 1e-10
"""Fourier power below this fraction of the target's total energy counts as absent (for the default band range)."""


def uniform_grid(points: int) -> Float[Tensor, "p 1"]:
    """``points`` cell-centre coordinates in [-1, 1] (periodic spacing, so integer frequencies are FFT bins)."""
    if points < 2:
        raise ValueError(f"need at least 2 points, got {points}")
    return ((torch.arange(points, dtype=torch.float32) + 0.5) / points * 2 - 1)[:, None]


def multi_sine(x: Float[Tensor, "p 1"], frequencies: Sequence[float] = SINE_FREQUENCIES) -> Float[Tensor, "p 1"]:
    """Sum of equal-amplitude sines ``sin(pi f (x + 1))`` (f cycles over [-1, 1]), scaled to peak 1."""
    freqs = torch.as_tensor(frequencies, dtype=x.dtype)
    y = torch.sin(math.pi * (x + 1) * freqs).sum(dim=-1, keepdim=True)
    return y / y.abs().max()


def camera_image(size: int) -> Float[Tensor, "h w 1"]:
    """scikit-image's bundled ``camera`` picture (gray, 512²) in [0, 1], area-downsampled to ``size``²."""
    return bundled_image("camera", size)


@dataclass
class GridSignal:
    """A target sampled on a regular grid: network inputs and the values with a trailing channel axis.

    It is a signal of the task trainer (:class:`norm_nerf.tasks.trainer.Signal`): MSE loss, PSNR (peak 1: the
    targets here are scaled to a peak of 1) as its metric.
    """

    coords: Float[Tensor, "p d"]
    """All grid points in [-1, 1]^d, row-major (the order of ``values.reshape(-1, c)``)."""
    values: Float[Tensor, "*grid c"]
    """Target values on the grid: ``(n, c)`` in 1-D, ``(h, w, c)`` for images."""
    name: str
    """What the signal is, for logs and JSON."""

    @property
    def flat(self) -> Float[Tensor, "p c"]:
        """Target values in the order of ``coords``."""
        return self.values.reshape(self.coords.shape[0], -1)

    def loss(self, pred: Float[Tensor, "b c"], idx: Tensor | None = None) -> Tensor:
        """Mean squared error against the target at ``coords[idx]`` (all points when ``idx`` is None)."""
        target = self.flat.to(pred.device)
        return (pred - (target if idx is None else target[idx])).square().mean()

    def quick_metric(self, pred: Float[Tensor, "b c"], loss: Tensor, idx: Tensor | None = None) -> float:
        return mse_to_psnr(float(loss))

    def metrics(self, pred: Float[Tensor, "p c"]) -> dict[str, float]:
        return {"psnr": mse_to_psnr(float(self.loss(pred.cpu())))}


def sine_signal(points: int) -> GridSignal:
    """The default 1-D spectral-bias target: :func:`multi_sine` on :func:`uniform_grid`."""
    highest = max(SINE_FREQUENCIES)
    if points <= 2 * highest:
        raise ValueError(
            f"the 1d signal has frequencies up to {highest} cycles; need more than {2 * highest} points "
            f"(Nyquist) to represent it, got {points}"
        )
    x = uniform_grid(points)
    return GridSignal(x, multi_sine(x), f"sum of sines, frequencies {list(SINE_FREQUENCIES)}, {points} points")


def image_signal(image: Float[Tensor, "h w c"], name: str) -> GridSignal:
    """An image as a grid signal on pixel centres."""
    return GridSignal(pixel_grid(image.shape[0], image.shape[1]), image, name)


def frequency_magnitude(grid: Sequence[int]) -> Float[Tensor, "*grid"]:
    """|k| of every DFT coefficient of a signal on ``grid`` (cycles per domain, radial for d > 1)."""
    axes = [torch.fft.fftfreq(n, d=1.0 / n) for n in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(sum(k.square() for k in mesh))


def _power(signal: Float[Tensor, "*grid c"]) -> Float[Tensor, "*grid"]:
    dims = tuple(range(signal.dim() - 1))
    return torch.fft.fftn(signal.double(), dim=dims).abs().square().sum(dim=-1)


def band_edges(target: Float[Tensor, "*grid c"], num_bands: int, max_freq: float | None = None) -> Float[Tensor, " b"]:
    """Equal-width band edges over [0, max_freq]; the last band also holds every |k| above ``max_freq``.

    Default ``max_freq``: the highest |k| at which the target has power above ``POWER_FLOOR`` of its energy
    (so bands cover the target's spectrum, e.g. one sine per band for the default 1-D signal).
    """
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    if target.dim() < 2:
        raise ValueError(f"expected a signal of shape (*grid, channels), got {tuple(target.shape)}")
    if max_freq is None:
        power = _power(target)
        k = frequency_magnitude(target.shape[:-1])
        present = k[power > POWER_FLOOR * power.sum()]
        max_freq = float(present.max()) if present.numel() else 0.0
    return torch.linspace(0.0, max(float(max_freq), 1.0), num_bands + 1, dtype=torch.float64)


def band_relative_error(
    pred: Float[Tensor, "*grid c"], target: Float[Tensor, "*grid c"], num_bands: int, max_freq: float | None = None
) -> Float[Tensor, " num_bands"]:
    """Per-band relative Fourier error ``||F(pred - target)||_band / ||F(target)||_band`` (float64).

    ``pred`` and ``target`` are signals on a grid with a trailing channel axis: ``(n, c)`` in 1-D, ``(h, w, c)``
    for images; channels are summed in the norms. Bands are from :func:`band_edges`; a band in which the
    target has no energy (below ``POWER_FLOOR`` of its total, i.e. round-off) gives NaN.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    edges = band_edges(target, num_bands, max_freq)
    k = frequency_magnitude(target.shape[:-1]).to(edges.dtype)
    band = torch.bucketize(k, edges[1:-1], right=True).flatten()
    err = torch.zeros(num_bands, dtype=torch.float64).index_add_(0, band, _power(pred - target).flatten().cpu())
    ref = torch.zeros(num_bands, dtype=torch.float64).index_add_(0, band, _power(target).flatten().cpu())
    present = ref > POWER_FLOOR * ref.sum()
    return torch.where(present, err.sqrt() / ref.sqrt(), torch.full_like(ref, math.nan))


def train_full_batch(
    net: nn.Module,
    x: Float[Tensor, "p d"],
    y: Float[Tensor, "p c"],
    steps: int,
    lr: float,
    callback: Callable[[int, Tensor, float], None],
    label: str = "train",
) -> None:
    """Adam on the MSE, full batch, in train mode, by the task trainer; ``callback(step, pred, loss)`` sees every state.

    ``step`` counts the updates already applied (0 = initialisation, ``steps`` = final), ``pred`` is the
    train-mode output of those parameters (detached). The callback runs after the backward pass and before
    the update, so it may inspect ``net`` (e.g. compute its NTK) at exactly the parameters of ``pred``
    (:func:`norm_nerf.tasks.trainer.fit`, constant learning rate, on ``x.device``).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    signal = GridSignal(x, y, "training target")
    cfg = TrainConfig(steps=steps, schedule="constant", device=str(x.device), progress=False)  # the NTK setting
    fit(net, signal, cfg, lr, label, callback=callback)


def _cell_edges(steps: list[int]) -> list[float]:
    """Cell boundaries around the recorded steps (midpoints; the first and last cells are symmetric)."""
    if len(steps) == 1:
        return [steps[0] - 0.5, steps[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(steps[:-1], steps[1:])]
    return [2 * steps[0] - mids[0], *mids, 2 * steps[-1] - mids[-1]]


def plot_band_errors(
    curves: dict[str, tuple[list[int], Float[Tensor, "t b"]]], edges: Float[Tensor, " e"], path: Path, title: str = ""
) -> Path:
    """Heat maps (band x iteration) of the relative band error, one panel per method, shared colour scale."""
    plt = pyplot()
    cols = max(len(curves), 1)
    fig, axes = plt.subplots(1, cols, figsize=(2.6 * cols + 1.2, 3.4), sharey=True, squeeze=False)
    image = None
    for ax, (method, (steps, err)) in zip(axes[0], curves.items()):
        image = ax.pcolormesh(_cell_edges(steps), range(err.shape[1] + 1), err.T.numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("iteration")
    labels = [f"{lo:.0f}-{hi:.0f}" for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist())]
    labels[-1] = f">={edges[-2]:.0f}"
    axes[0, 0].set_yticks([i + 0.5 for i in range(len(labels))], labels, fontsize=8)
    axes[0, 0].set_ylabel("band of |k| [cycles per domain]")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="relative error in band", fraction=0.03)
    fig.suptitle(title or "relative Fourier error per frequency band during training")
    return save_figure(fig, path, dpi=110, bbox_inches="tight")
