"""Image fitting: the network maps pixel-centre coordinates in [-1, 1]^2 to RGB (or gray) values.

Files are decoded by :func:`norm_nerf.data.image_files.read_image` (palette and CMYK become RGB, integers are divided
by their type's maximum, float images outside [0, 1] are refused with their range unless min-max scaling is asked
for, NaN/inf pixels and sides shorter than 3 pixels are refused); :func:`load_image` composites alpha on white,
converts to gray and downsamples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from norm_nerf.data.image_files import MIN_IMAGE_SIDE, ImageError, OutOfRange, check_image_size, read_image
from norm_nerf.eval.metrics import mse_to_psnr, psnr, ssim

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def pixel_grid(height: int, width: int) -> Float[Tensor, "hw 2"]:
    """Pixel-centre coordinates ``(x, y)`` in [-1, 1], row-major (row = y)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def load_image(
    path: str | Path,
    resize: int | None = None,
    gray: bool = False,
    out_of_range: OutOfRange = "refuse",
    notes: list[str] | None = None,
    resize_flag: str = "--resize",
) -> Float[Tensor, "h w c"]:
    """Read an image as float32 in [0, 1] with shape (H, W, C), C = 3 (RGB) or 1 (gray).

    Values follow :func:`read_image` (palette and CMYK become RGB, integers are divided by their type's maximum,
    float images outside [0, 1] are refused unless ``out_of_range="minmax"``); an alpha channel is composited onto
    white (the NeRF-synthetic convention). ``resize`` sets the longer side (aspect kept) and may not exceed it;
    ``resize_flag`` names the option in messages.
    """
    path = Path(path)
    if resize is not None and resize < 1:
        raise ImageError(f"{path}: {resize_flag} must be >= 1, got {resize}")
    data = read_image(path, out_of_range, notes)
    height, width = data.shape[:2]
    if resize is not None and resize > max(height, width):
        raise ImageError(
            f"{path}: {resize_flag} {resize} is larger than the image ({width}x{height}); "
            "upsampling would only add interpolated pixels"
        )
    if data.shape[-1] in (2, 4):  # gray+alpha or RGBA: composite onto white
        color, alpha = data[..., :-1], data[..., -1:]
        data = color * alpha + (1.0 - alpha)
    if gray and data.shape[-1] == 3:
        data = data @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if resize is not None and resize != max(height, width):
        h2, w2 = resized_shape(height, width, resize)
        check_image_size(h2, w2, path, after=f" after {resize_flag} {resize} (from {width}x{height})")
        tensor = resize_image(tensor, resize)
    return tensor


def default_image(size: int | None = 128) -> Float[Tensor, "h w 3"]:
    """scikit-image's bundled astronaut picture (no download), area-downsampled to ``size`` (None = 512)."""
    import skimage.data

    img = torch.from_numpy(skimage.data.astronaut()).float() / 255.0
    return resize_image(img, size) if size else img


def resized_shape(height: int, width: int, longer_side: int) -> tuple[int, int]:
    """``(height, width)`` after :func:`resize_image` to ``longer_side`` (aspect kept, each side at least 1)."""
    scale = longer_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(img: Float[Tensor, "h w c"], longer_side: int) -> Float[Tensor, "h2 w2 c"]:
    """Area-average downsampling so the longer side becomes ``longer_side``."""
    size = resized_shape(img.shape[0], img.shape[1], longer_side)
    chw = img.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(chw, size=size, mode="area")
    return out[0].permute(1, 2, 0).contiguous()


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
        return mse_to_psnr(float(loss.item()))

    def as_image(self, pred: Float[Tensor, "p c"]) -> Float[Tensor, "h w c"]:
        return pred.reshape(self.height, self.width, self.channels)

    def metrics(self, pred: Float[Tensor, "p c"]) -> dict[str, float]:
        img = self.as_image(pred.cpu())
        return {"psnr": psnr(img, self.image), "ssim": ssim(img, self.image, channel_axis=-1)}
