"""Image fitting: the network maps pixel-centre coordinates in [-1, 1]^2 to RGB (or gray) values.

Files are read by :func:`norm_nerf.data.images.load_image` (the package's one image reader: its rules are in
:mod:`norm_nerf.data.images`); coordinates come from :func:`norm_nerf.core.grids.pixel_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor

from norm_nerf.core import count_parameters
from norm_nerf.core.grids import pixel_grid
from norm_nerf.data.images import IMAGE_SUFFIXES, MIN_IMAGE_SIDE, ImageError, bundled_image, list_images, load_image
from norm_nerf.eval.metrics import PSNR_CAP_DB, mse_to_psnr, psnr, ssim
from norm_nerf.eval.plots import save_panels, save_spectra
from norm_nerf.tasks.common import TablePreset, TaskConfig, check_common, finish_run, fit_signal, write_metrics
from norm_nerf.tasks.trainer import ConfigError


def default_image(size: int | None = 128) -> Float[Tensor, "h w 3"]:
    """The image task's default: scikit-image's bundled astronaut picture (no download), area-downsampled to
    ``size`` (None = 512)."""
    return bundled_image("astronaut", size)


class ImageSignal:
    """An image as a signal: coordinates, MSE loss, PSNR/SSIM metrics."""

    def __init__(self, image: Float[Tensor, "h w c"]) -> None:
        if image.dim() != 3 or min(image.shape[:2]) < MIN_IMAGE_SIDE:
            raise ImageError(
                f"ImageSignal expects an (H, W, C) image with sides >= {MIN_IMAGE_SIDE}, got shape {tuple(image.shape)}"
            )
        self.image = image.float()
        self.height, self.width, self.channels = image.shape
        self.coords = pixel_grid(self.height, self.width)
        self.target = self.image.reshape(-1, self.channels)

    @property
    def out_dim(self) -> int:
        return self.channels

    def loss(self, pred: Float[Tensor, "p c"], idx: Tensor | None = None) -> Tensor:
        target = self.target.to(pred.device)
        return (pred - (target if idx is None else target[idx])).square().mean()

    def quick_metric(self, pred: Float[Tensor, "p c"], loss: Tensor, idx: Tensor | None = None) -> float:
        return mse_to_psnr(float(loss.item()), cap_db=PSNR_CAP_DB)

    def as_image(self, pred: Float[Tensor, "p c"]) -> Float[Tensor, "h w c"]:
        return pred.reshape(self.height, self.width, self.channels)

    def metrics(self, pred: Float[Tensor, "p c"]) -> dict[str, float]:
        img = self.as_image(pred.cpu())
        return {"psnr": psnr(img, self.image, cap_db=PSNR_CAP_DB), "ssim": ssim(img, self.image, channel_axis=-1)}


EXP_DECAY_FLAGS = ("--schedule", "exp", "--min-lr-ratio", "0.1")
"""Exponential decay of the learning rate to 0.1x over the run (the image presets' schedule)."""


@dataclass
class ImageTaskConfig(TaskConfig):
    """Fit an image (or every image of a folder, metrics averaged) with a coordinate network."""

    task = "image"
    output_root = Path("outputs/image")
    input_field = "image"
    # exponential decay to 0.1x over the run, as in WIRE's image-fitting script that the papers compare with
    presets = {
        "cpu": TablePreset(("10x28",), 2000, ("--resize", "128", *EXP_DECAY_FLAGS)),
        "paper": TablePreset(
            ("5x20", "5x30", "10x28", "10x40", "13x49"), 100000, ("--resize", "None", *EXP_DECAY_FLAGS)
        ),
    }

    image: Path | None = None
    """Image file or folder of images; default: scikit-image's bundled astronaut picture."""
    resize: int | None = 128
    """Longer side after area downsampling (None = full size; never upsamples)."""
    gray: bool = False
    """Convert to gray before fitting."""

    def check_task(self) -> None:
        if self.resize is not None and self.resize < 1:
            raise ConfigError(f"--resize must be >= 1 (or None for full size), got {self.resize}")

    def run(self) -> dict[str, Any]:
        return run_image(self)


def _image_files(path: Path) -> list[Path]:
    """The image itself, or the images of a folder (by suffix, sorted by name)."""
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise ImageError(f"{path}: folder contains no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    return [path]


def image_output_names(files: list[Path]) -> dict[Path, str]:
    """A distinct output sub-folder name per image: the stem, or ``<stem>_<suffix>`` when stems collide.

    Collisions are found case-insensitively (``A.png`` and ``a.jpg`` would share a folder on macOS/Windows); a name
    still taken after that gets ``_2``, ``_3``, ...
    """
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.casefold()] = stems.get(f.stem.casefold(), 0) + 1
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for f in files:
        name = f.stem if stems[f.stem.casefold()] == 1 else f"{f.stem}_{f.suffix.lstrip('.')}"
        candidate, i = name, 2
        while candidate.casefold() in taken:
            candidate, i = f"{name}_{i}", i + 1
        taken.add(candidate.casefold())
        names[f] = candidate
    return names


IMAGE_MEAN_KEYS = ("psnr", "ssim", "psnr_train_mode_final", "psnr_best_train_mode", "bpp", "seconds")
"""The per-image values a folder's ``metrics.json`` averages."""


def run_image(cfg: ImageTaskConfig) -> dict[str, Any]:
    """Fit one image or a folder of images; returns the ``metrics.json`` content.

    PSNR values are capped at ``PSNR_CAP_DB`` (100 dB) per image, so an exact match counts as 100 dB, not inf; a
    folder's numbers are arithmetic means over its images of those per-image values (``means`` says so).
    """
    check_common(cfg)
    out = cfg.prepare_output()
    if cfg.image is None:
        return fit_image(cfg, None, out).summary
    files = _image_files(Path(cfg.image))
    if len(files) == 1:
        return fit_image(cfg, files[0], out).summary
    names = image_output_names(files)
    per_image = {f.name: fit_image(cfg, f, out / names[f]).summary for f in files}
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in IMAGE_MEAN_KEYS}
    net = cfg.network
    summary = {"task": "image", "method": net.method, "net": f"{net.depth}x{net.width}", "images": len(files)}
    summary.update(mean)
    summary.update(
        psnr_cap_db=PSNR_CAP_DB,
        psnr_capped=sum(r["psnr_capped"] for r in per_image.values()),
        params=next(iter(per_image.values()))["params"],
        per_image=per_image,
    )
    summary["metrics_mode"] = "mean over images of eval-mode metrics after recalibration"
    summary["means"] = (
        f"arithmetic mean over the images of the per-image values ({', '.join(IMAGE_MEAN_KEYS)}); PSNR values are "
        "capped at psnr_cap_db per image before averaging (psnr_capped counts the images at the cap)"
    )
    summary["out"] = str(out)
    write_metrics(out, summary)
    return summary


@dataclass
class ImageFit:
    """One fitted image: its ``metrics.json`` content and the pictures (H, W, C) in [0, 1]."""

    summary: dict[str, Any]
    target: np.ndarray
    prediction: np.ndarray


def fit_image(cfg: ImageTaskConfig, path: Path | None, out: Path) -> ImageFit:
    """Fit one image (``path`` None: the default picture) and write its results into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    img = default_image(cfg.resize) if path is None else load_image(path, resize=cfg.resize, gray=cfg.gray)
    signal = ImageSignal(img)
    label = f"{cfg.network.method} {path.name if path else 'astronaut'}"
    net, result = fit_signal(cfg, signal, 2, signal.out_dim, label=label)
    pred = signal.as_image(result.prediction).numpy()
    target = signal.image.numpy()
    save_panels({"target": target, "reconstruction": pred}, out / "reconstruction.png", ("reconstruction", "target"))
    save_spectra(target, pred, out / "spectrum.png")
    params = count_parameters(net)
    extra = {
        "image": str(path or "skimage.data.astronaut"),
        "size": list(img.shape),
        "bpp": params * 32 / (signal.height * signal.width),
        "bits_per_param": 32,
        "psnr_cap_db": PSNR_CAP_DB,  # the image signal's PSNR values are capped there (an exact match)
        "psnr_capped": int(result.metrics["psnr"] >= PSNR_CAP_DB),
    }
    summary = finish_run(cfg, out, net, result, extra)
    return ImageFit(summary, target, pred)
