"""3-D MRI from undersampled k-space: the network predicts the volume on the voxel grid, its orthonormal
3-D FFT is compared with the measured k-space where the sampling mask is 1, metrics are in image space.

Sampling is Cartesian: the first axis is the fully sampled readout direction, the two phase-encoding axes
are undersampled with a variable-density random mask (fully sampled centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.grids import voxel_grid
from norm_nerf.eval.metrics import mse_to_psnr, psnr, ssim
from norm_nerf.eval.plots import save_panels
from norm_nerf.tasks.common import (
    NetworkOptions,
    TablePreset,
    TaskConfig,
    TrainOptions,
    check_common,
    finish_run,
    fit_signal,
    network_defaults,
    train_defaults,
)
from norm_nerf.tasks.trainer import ConfigError
from norm_nerf.utils.console import notice

# Modified 3-D Shepp-Logan (Kak & Slaney geometry, Toft's contrast): A, a, b, c, x0, y0, z0, phi (deg, about z).
_SHEPP_LOGAN_3D = np.array(
    [
        [1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0],
        [-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0],
        [-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0],
        [0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0],
        [0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0],
        [0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0],
        [0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0],
        [0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0],
        [0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0],
    ]
)


MIN_VOLUME_SIDE = 3
"""Smallest accepted volume side in voxels: SSIM's smallest window spans 3 voxels."""


class VolumeError(ValueError):
    """A user-facing problem with an input volume."""


def shepp_logan_3d(n: int) -> Float[Tensor, "n n n"]:
    """The modified 3-D Shepp–Logan phantom on an n^3 grid, values in [0, 1]."""
    if n < 4:
        raise VolumeError(f"phantom size must be >= 4, got {n}")
    coords = voxel_grid((n, n, n)).double()  # (x, y, z)
    vol = torch.zeros(n**3, dtype=torch.float64)
    for amp, a, b, c, x0, y0, z0, phi in _SHEPP_LOGAN_3D:
        t = np.deg2rad(phi)
        dx, dy, dz = coords[:, 0] - x0, coords[:, 1] - y0, coords[:, 2] - z0
        xr = np.cos(t) * dx + np.sin(t) * dy
        yr = -np.sin(t) * dx + np.cos(t) * dy
        inside = (xr / a) ** 2 + (yr / b) ** 2 + (dz / c) ** 2 <= 1.0
        vol += amp * inside
    return vol.clamp(0, 1).reshape(n, n, n).float()


def load_volume(path: Path, size: int | None, notes: list[str] | None = None) -> Float[Tensor, "d h w"]:
    """Read a NIfTI volume, check it, scale it to [0, 1] (robust max: 99.9th percentile), optionally resample.

    A complex volume (e.g. reconstructed k-space data) is replaced by its magnitude ``|z|``, the standard MRI
    magnitude image; ``notes`` (when given) records that (``norm-inr mri`` prints it and writes it to
    ``metrics.json``). Every side must be at least :data:`MIN_VOLUME_SIDE` after resampling.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"{path}: no such file")
    try:
        raw = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # nibabel raises several types for broken files
        raise VolumeError(f"{path}: not a readable NIfTI volume ({type(err).__name__}: {err})") from None
    if np.iscomplexobj(raw):
        raw = np.abs(raw)
        if notes is not None:
            notes.append(f"{path}: complex-valued volume; fitting its magnitude |z| (the usual MRI magnitude image)")
    elif not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise VolumeError(f"{path}: unsupported voxel type {raw.dtype}")
    arr = np.squeeze(np.asarray(raw, dtype=np.float64))
    if arr.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D volume, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise VolumeError(f"{path}: volume contains {int(bad.sum())} NaN/inf voxels; clean it first")
    lo, hi = float(arr.min()), float(np.percentile(arr, 99.9))
    if hi <= lo:
        raise VolumeError(f"{path}: volume is constant")
    vol = torch.from_numpy(np.clip((arr - lo) / (hi - lo), 0, 1).astype(np.float32))
    if size is not None:
        if size < 1:
            raise VolumeError(f"{path}: --size must be >= 1, got {size}")
        if size > max(vol.shape):
            raise VolumeError(f"{path}: --size {size} is larger than the volume {tuple(vol.shape)}")
        scale = size / max(vol.shape)
        new = tuple(max(1, round(s * scale)) for s in vol.shape)
        if min(new) < MIN_VOLUME_SIDE:
            raise VolumeError(
                f"{path}: --size {size} would make the volume {new} (from {tuple(vol.shape)}); every side must be "
                f"at least {MIN_VOLUME_SIDE} voxels (the smallest SSIM window)"
            )
        vol = torch.nn.functional.interpolate(vol[None, None], size=new, mode="area")[0, 0]
    if min(vol.shape) < MIN_VOLUME_SIDE:
        raise VolumeError(
            f"{path}: volume {tuple(vol.shape)} has a side shorter than {MIN_VOLUME_SIDE} voxels (the smallest SSIM "
            "window)"
        )
    return vol


def sampling_mask(shape: tuple[int, int, int], fraction: float, center: float = 0.08, seed: int = 0) -> Tensor:
    """Variable-density Cartesian mask over the phase-encoding plane (axes 1, 2), full along axis 0.

    A centred square of side ``center`` (fraction of each axis) is always sampled; other phase-encoding
    lines are drawn with probability falling off with distance from the centre, to ``fraction`` overall.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--sampling must be in (0, 1], got {fraction}")
    _, h, w = shape
    ky = torch.fft.fftfreq(h)[:, None]
    kx = torch.fft.fftfreq(w)[None, :]
    dist = torch.sqrt(ky**2 + kx**2)
    gen = torch.Generator().manual_seed(seed)
    weight = (1.0 - dist / dist.max()).clamp_min(0) ** 2 + 1e-3
    total = int(round(fraction * h * w))
    keep = torch.zeros(h * w, dtype=torch.bool)
    core = (ky.abs() <= center / 2) & (kx.abs() <= center / 2)
    keep[core.reshape(-1)] = True
    remaining = total - int(keep.sum())
    if remaining > 0:
        probs = weight.reshape(-1).clone()
        probs[keep] = 0
        keep[torch.multinomial(probs, remaining, replacement=False, generator=gen)] = True
    return keep.reshape(1, h, w).expand(shape[0], h, w).clone()


class MRISignal:
    """A volume observed through an undersampled orthonormal 3-D FFT."""

    def __init__(self, volume: Float[Tensor, "d h w"], fraction: float = 0.25, seed: int = 0) -> None:
        if volume.dim() != 3 or min(volume.shape) < MIN_VOLUME_SIDE:
            raise VolumeError(f"MRI volume must be 3-D with every side >= {MIN_VOLUME_SIDE}, got {tuple(volume.shape)}")
        self.volume = volume.float()
        self.shape = tuple(volume.shape)
        self.mask = sampling_mask(self.shape, fraction, seed=seed)
        self.kspace = torch.fft.fftn(self.volume, norm="ortho") * self.mask
        self.coords = voxel_grid(self.shape)
        self.fraction = float(self.mask.float().mean())

    def as_volume(self, pred: Float[Tensor, "p 1"]) -> Float[Tensor, "d h w"]:
        return pred.reshape(self.shape)

    def loss(self, pred: Float[Tensor, "p 1"], idx: Tensor | None = None) -> Tensor:
        k = torch.fft.fftn(self.as_volume(pred), norm="ortho")
        diff = (k - self.kspace.to(pred.device)) * self.mask.to(pred.device)
        return diff.abs().square().sum() / self.mask.sum()

    def quick_metric(self, pred: Float[Tensor, "p 1"], loss: Tensor, idx: Tensor | None = None) -> float:
        err = (self.as_volume(pred).clamp(0, 1) - self.volume.to(pred.device)).square().mean()
        return mse_to_psnr(float(err.item()))

    def metrics(self, pred: Float[Tensor, "p 1"]) -> dict[str, float]:
        vol = self.as_volume(pred.cpu())
        return {"psnr": psnr(vol, self.volume), "ssim": ssim(vol, self.volume)}

    def zero_filled(self) -> Float[Tensor, "d h w"]:
        """The naive reconstruction (inverse FFT of the masked k-space), for reference."""
        return torch.fft.ifftn(self.kspace, norm="ortho").real


@dataclass
class MRITaskConfig(TaskConfig):
    """3-D MRI: fit the volume so that its undersampled k-space matches the measurement."""

    task = "mri"
    output_root = Path("outputs/mri")
    input_field = "volume"
    presets = {
        # 16^3 (25 % of the k-space lines): 2000 cosine-decayed steps, about 1-2 min per cell on one thread
        "cpu": TablePreset(("2x256",), 2000, ("--size", "16", "--schedule", "cosine")),
        "paper": TablePreset(("2x256", "4x256"), 1000, ("--size", "128")),
    }

    network: NetworkOptions = network_defaults(depth=4, width=256)
    """The coordinate network (default 4x256)."""
    train: TrainOptions = train_defaults(steps=1000)
    """Optimisation (default 1000 steps)."""
    volume: Path | None = None
    """NIfTI volume (.nii/.nii.gz); default: a generated 3-D Shepp-Logan phantom."""
    size: int = 32
    """Longer side of the volume after resampling (phantom: its side)."""
    sampling: float = 0.25
    """Fraction of phase-encoding k-space lines sampled (variable density, full centre)."""

    def check_task(self) -> None:
        smallest = MIN_VOLUME_SIDE if self.volume is not None else 4  # the phantom needs 4
        if self.size < smallest:
            raise ConfigError(f"--size must be >= {smallest}, got {self.size}")
        if not 0.0 < self.sampling <= 1.0:
            raise ConfigError(f"--sampling must be in (0, 1], got {self.sampling}")

    def run(self) -> dict[str, Any]:
        return run_mri(self)


def run_mri(cfg: MRITaskConfig) -> dict[str, Any]:
    """3-D MRI from undersampled k-space; returns the ``metrics.json`` content."""
    check_common(cfg)
    notices: list[str] = []
    volume = shepp_logan_3d(cfg.size) if cfg.volume is None else load_volume(cfg.volume, cfg.size, notes=notices)
    signal = MRISignal(volume, cfg.sampling, seed=cfg.train.seed)
    out = cfg.prepare_output()
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.network.method} mri")
    pred = signal.as_volume(result.prediction)
    zero_filled = signal.zero_filled()
    mid = volume.shape[0] // 2
    save_panels(
        {"target": volume[mid].numpy(), "reconstruction": pred[mid].numpy(), "zero-filled": zero_filled[mid].numpy()},
        out / "reconstruction.png",
        ("reconstruction", "target"),
    )
    extra = {
        "volume": str(cfg.volume or "shepp_logan_3d"),
        "shape": list(volume.shape),
        "sampling_fraction": signal.fraction,
        "zero_filled_psnr": psnr(zero_filled, volume),
        "notices": notices,
    }
    return finish_run(cfg, out, net, result, extra)
