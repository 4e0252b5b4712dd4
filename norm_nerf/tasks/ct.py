"""2-D parallel-beam CT: the network predicts density on the pixel grid, a differentiable Radon transform
turns it into projections, and the loss compares them with the measured projections at a sparse set of
angles. Metrics compare the reconstructed image with the true one.

The Radon transform follows scikit-image's ``radon(image, theta, circle=True)``: the image is rotated
about pixel ``(n // 2, n // 2)`` with bilinear interpolation and summed over rows; the field of view is the
inscribed circle (values outside it are zero in the target and in the prediction).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.grids import pixel_grid
from norm_nerf.core.network import NetworkConfig
from norm_nerf.data.images import ImageError, load_image, resize_image
from norm_nerf.eval.metrics import mse_to_psnr, psnr, ssim
from norm_nerf.eval.plots import save_panels, save_spectra
from norm_nerf.tasks.common import (
    NetworkOptions,
    TablePreset,
    TaskConfig,
    check_common,
    finish_run,
    fit_signal,
    network_defaults,
)
from norm_nerf.tasks.trainer import ConfigError
from norm_nerf.utils.console import notice

PE_OCTAVES_ABOVE_NYQUIST = 2
"""Octaves of the papers' PE above the grid's Nyquist limit: their 10 at 256^2, where 8 lie at or below it."""


def nyquist_octaves(size: int) -> int:
    """PE octaves at or below the Nyquist limit of ``size`` pixels on [-1, 1]: sin/cos(2^k pi x) with 2^k <= size / 2,
    so k < floor(log2 size) (8 at 256, 7 at 128, 6 at 64)."""
    if size < 2:
        raise ValueError(f"size must be >= 2 pixels, got {size}")
    return int(math.floor(math.log2(size)))


def matched_octaves(size: int) -> int:
    """``--pe-octaves auto``: the papers' relation of PE to the grid, log2(size) + 2 octaves (10 at 256^2, 9 at
    128^2, 8 at 64^2; the top two above Nyquist, as theirs)."""
    return nyquist_octaves(size) + PE_OCTAVES_ABOVE_NYQUIST


def angles_deg(num_angles: int, max_angle: float = 180.0) -> Float[Tensor, "a"]:  # noqa: F821
    """``num_angles`` projection angles evenly spaced in [0, max_angle) degrees."""
    if num_angles < 1:
        raise ValueError(f"--angles must be >= 1, got {num_angles}")
    return torch.arange(num_angles, dtype=torch.float64) * (max_angle / num_angles)


def _rotation_grid(n: int, theta_deg: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Sampling grids (A, n, n, 2) in grid_sample's normalized coordinates for each angle."""
    center = n // 2
    t = torch.deg2rad(theta_deg.to(torch.float64)).to(device)
    cos, sin = torch.cos(t)[:, None, None], torch.sin(t)[:, None, None]
    idx = torch.arange(n, dtype=torch.float64, device=device)
    r, c = torch.meshgrid(idx - center, idx - center, indexing="ij")
    x_in = cos * c + sin * r + center
    y_in = -sin * c + cos * r + center
    grid = torch.stack([x_in, y_in], dim=-1) / (n - 1) * 2 - 1
    return grid.to(dtype)


def radon(image: Float[Tensor, "n n"], theta_deg: Float[Tensor, "a"]) -> Float[Tensor, "n a"]:  # noqa: F821
    """Differentiable parallel-beam projections of a square image (skimage's layout: detector x angle)."""
    if image.dim() != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"radon expects a square (n, n) image, got {tuple(image.shape)}")
    n = image.shape[0]
    grid = _rotation_grid(n, theta_deg, image.dtype, image.device)
    stack = image[None, None].expand(len(theta_deg), 1, n, n)
    rotated = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return rotated[:, 0].sum(dim=1).T


def circle_mask(n: int) -> Float[Tensor, "n n"]:
    """1 inside the circle inscribed in the n x n grid (skimage's ``circle=True`` field of view)."""
    idx = torch.arange(n, dtype=torch.float64) - n // 2
    r2 = idx[:, None] ** 2 + idx[None, :] ** 2
    return (r2 <= (n // 2) ** 2).to(torch.float32)


def load_ct_image(path: Path | None, size: int, notes: list[str] | None = None) -> Float[Tensor, "n n"]:
    """The CT target in [0, 1], ``size`` x ``size``: a PNG/JPEG/TIFF (gray) or a DICOM slice; default Shepp–Logan.

    CT intensities are arbitrary, so a file whose values do not fit the image rules of
    :func:`norm_nerf.data.images.read_image` (float outside [0, 1], negative integers) is min-max scaled to [0, 1],
    and a DICOM slice always is. A non-square image is centre-cropped to a square (the Radon transform here works on
    a square grid) before area-downsampling to ``size``. Both changes are appended to ``notes`` when given.
    """
    if path is None:
        from skimage.data import shepp_logan_phantom

        img = torch.from_numpy(shepp_logan_phantom().astype(np.float32))[..., None]
        return resize_image(img, size)[..., 0]
    path = Path(path)
    if size < 1:
        raise ImageError(f"{path}: --size must be >= 1, got {size}")
    if path.suffix.lower() == ".dcm":
        img = _read_dicom(path)
        if notes is not None:
            notes.append(f"{path}: DICOM values min-max scaled to [0, 1]")
    else:
        img = load_image(path, gray=True, out_of_range="minmax", notes=notes, resize_flag="--size")[..., 0]
    h, w = img.shape
    if h != w:
        img = _square(img)
        if notes is not None:
            notes.append(
                f"{path}: non-square image {w}x{h} centre-cropped to {img.shape[0]}x{img.shape[0]} "
                "(CT here reconstructs a square grid)"
            )
    n = img.shape[0]
    if size > n:
        cropped = f" after centre-cropping {w}x{h} to a square" if h != w else ""
        raise ImageError(f"{path}: --size {size} is larger than the image ({n}x{n}{cropped})")
    return img if size == n else resize_image(img[..., None], size)[..., 0]


def _read_dicom(path: Path) -> Tensor:
    import pydicom

    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        arr = pydicom.dcmread(path).pixel_array.astype(np.float64)
    except Exception as err:  # pydicom raises many types for broken files
        raise ImageError(f"{path}: not a readable DICOM image ({type(err).__name__}: {err})") from None
    if arr.ndim != 2:
        raise ImageError(f"{path}: expected a single 2-D slice, got pixel array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ImageError(f"{path}: DICOM contains NaN or infinite values")
    lo, hi = arr.min(), arr.max()
    if hi <= lo:
        raise ImageError(f"{path}: DICOM image is constant")
    return torch.from_numpy(((arr - lo) / (hi - lo)).astype(np.float32))


def _square(img: Tensor) -> Tensor:
    """The centred largest square of a 2-D image."""
    h, w = img.shape
    n = min(h, w)
    top, left = (h - n) // 2, (w - n) // 2
    return img[top : top + n, left : left + n]


class CTSignal:
    """Sparse-view CT of a square image inside its inscribed circle.

    A non-square ``image`` is centre-cropped to a square; ``notes`` then says so (``norm-inr ct`` prints it and
    records it in ``metrics.json``).
    """

    def __init__(self, image: Float[Tensor, "h w"], num_angles: int = 100) -> None:
        if image.dim() != 2:
            raise ImageError(f"CT image must be 2-D (H, W), got shape {tuple(image.shape)}")
        img = _square(image.float())
        self.n = img.shape[0]
        if self.n < 8:
            raise ImageError(f"CT image must be at least 8x8 pixels, got {tuple(image.shape)}")
        h, w = image.shape
        self.notes: list[str] = []
        """What was changed about the input (a centre crop of a non-square image)."""
        if h != w:
            self.notes.append(f"non-square CT image {w}x{h} centre-cropped to {self.n}x{self.n}")
        self.mask = circle_mask(self.n)
        self.image = img * self.mask
        self.theta = angles_deg(num_angles)
        self.sinogram = radon(self.image.double(), self.theta).float()
        self.coords = pixel_grid(self.n, self.n)
        self.channels = 1

    def as_image(self, pred: Float[Tensor, "p 1"]) -> Float[Tensor, "n n"]:
        return pred.reshape(self.n, self.n) * self.mask.to(pred.device)

    def loss(self, pred: Float[Tensor, "p 1"], idx: Tensor | None = None) -> Tensor:
        sino = radon(self.as_image(pred), self.theta)
        return (sino - self.sinogram.to(pred.device)).square().mean()

    def quick_metric(self, pred: Float[Tensor, "p 1"], loss: Tensor, idx: Tensor | None = None) -> float:
        err = (self.as_image(pred).clamp(0, 1) - self.image.to(pred.device)).square().mean()
        return mse_to_psnr(float(err.item()))

    def metrics(self, pred: Float[Tensor, "p 1"]) -> dict[str, float]:
        img = self.as_image(pred.cpu())
        return {"psnr": psnr(img, self.image), "ssim": ssim(img, self.image)}

    def projection_psnr(self, pred: Float[Tensor, "p 1"]) -> float:
        """PSNR of the predicted projections against the measured ones (relative to their peak)."""
        sino = radon(self.as_image(pred.cpu()), self.theta)
        peak = float(self.sinogram.abs().max())
        return mse_to_psnr(float((sino - self.sinogram).square().mean()) / peak**2)


@dataclass
class CTTaskConfig(TaskConfig):
    """Sparse-view parallel-beam CT: fit density so that its Radon transform matches the projections."""

    task = "ct"
    output_root = Path("outputs/ct")
    input_field = "image"
    presets = {
        # 64^2 with 25 angles keeps the papers' ratio of angles to pixels (100 angles at 256^2); 8000 cosine-decayed
        # steps, 1-4 min per cell on one thread (docs/signal_tasks.md: budget sweeps)
        "cpu": TablePreset(("2x128",), 8000, ("--size", "64", "--angles", "25", "--schedule", "cosine")),
        "paper": TablePreset(("2x128", "2x256", "4x128", "4x256"), 20000, ("--size", "256", "--schedule", "cosine")),
    }

    network: NetworkOptions = network_defaults(depth=4, width=256)
    """The coordinate network (default 4x256)."""
    image: Path | None = None
    """Gray image or DICOM slice (.dcm); default: the Shepp-Logan phantom."""
    size: int = 128
    """Image side in pixels (the papers use 256)."""
    angles: int = 100
    """Number of projection angles in [0, 180) degrees used for supervision."""
    pe_octaves: int | Literal["auto"] | None = None
    """PE octaves L: auto = log2(size) + 2 (the papers' 10 at 256^2, 9 at 128^2), a number sets L, None keeps
    --num-frequencies."""

    def check_task(self) -> None:
        if self.size < 8:
            raise ConfigError(f"--size must be >= 8 pixels, got {self.size}")
        if self.angles < 1:
            raise ConfigError(f"--angles must be >= 1, got {self.angles}")
        if isinstance(self.pe_octaves, int) and self.pe_octaves < 0:
            raise ConfigError(f"--pe-octaves must be >= 0 or auto, got {self.pe_octaves}")
        if self.pe_octaves is not None and self.network.num_frequencies != NetworkConfig.num_frequencies:
            raise ConfigError(
                f"--pe-octaves {self.pe_octaves} and --num-frequencies {self.network.num_frequencies} both set the "
                "PE octaves; give one of them"
            )

    def octaves(self) -> int:
        """The PE octaves the network gets: ``--pe-octaves`` resolved against ``--size``, else ``--num-frequencies``."""
        if self.pe_octaves is None:
            return self.network.num_frequencies
        return matched_octaves(self.size) if self.pe_octaves == "auto" else self.pe_octaves

    def fit_config(self) -> CTTaskConfig:
        """A copy whose network has :meth:`octaves` octaves (the recorded config keeps the options as given)."""
        return dataclasses.replace(self, network=dataclasses.replace(self.network, num_frequencies=self.octaves()))

    def run(self) -> dict[str, Any]:
        return run_ct(self)


def run_ct(cfg: CTTaskConfig) -> dict[str, Any]:
    """Sparse-view CT reconstruction; returns the ``metrics.json`` content."""
    check_common(cfg)
    notices: list[str] = []
    signal = CTSignal(load_ct_image(cfg.image, cfg.size, notes=notices), cfg.angles)
    notices += signal.notes
    out = cfg.prepare_output()
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg.fit_config(), signal, 2, 1, label=f"{cfg.network.method} ct")
    pred = signal.as_image(result.prediction).numpy()
    target = signal.image.numpy()
    sino = signal.sinogram.numpy()
    save_panels(
        {"target": target, "reconstruction": pred, "sinogram (measured)": sino / sino.max()},
        out / "reconstruction.png",
        ("reconstruction", "target"),
    )
    save_spectra(target, pred, out / "spectrum.png")
    extra = {
        "image": str(cfg.image or "skimage.data.shepp_logan_phantom"),
        "size": signal.n,
        "angles": cfg.angles,
        "pe_octaves_used": cfg.octaves(),
        "nyquist_octaves": nyquist_octaves(signal.n),
        "projection_psnr": signal.projection_psnr(result.prediction),
        "notices": notices,
    }
    return finish_run(cfg, out, net, result, extra)
