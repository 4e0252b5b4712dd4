"""Image fitting: the network maps pixel-centre coordinates in [-1, 1]^2 to RGB (or gray) values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from norm_nerf.eval.metrics import mse_to_psnr, psnr, ssim

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageError(ValueError):
    """A user-facing problem with an input image (names the file and the problem)."""


def pixel_grid(height: int, width: int) -> Float[Tensor, "hw 2"]:
    """Pixel-centre coordinates ``(x, y)`` in [-1, 1], row-major (row = y)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def _to_float(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype in (np.uint16, np.int32) and arr.size:
        top = 65535.0 if arr.max() > 255 or arr.dtype == np.uint16 else 255.0
        return arr.astype(np.float32) / top
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{path}: image contains NaN or infinite values")
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    raise ImageError(f"{path}: unsupported pixel type {arr.dtype}")


def load_image(path: str | Path, resize: int | None = None, gray: bool = False) -> Float[Tensor, "h w c"]:
    """Read an image as float32 in [0, 1] with shape (H, W, C), C = 3 (RGB) or 1 (gray).

    8- and 16-bit images are scaled by their bit depth; an alpha channel is composited onto white (the
    NeRF-synthetic convention). ``resize`` sets the longer side (aspect kept) and may not exceed it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if resize is not None:
                if resize < 1:
                    raise ImageError(f"{path}: --resize must be >= 1, got {resize}")
                if resize > max(img.size):
                    raise ImageError(
                        f"{path}: --resize {resize} is larger than the image ({img.size[0]}x{img.size[1]}); "
                        "upsampling would only add interpolated pixels"
                    )
            arr = np.asarray(img)
            mode = img.mode
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image file") from None
    except OSError as err:
        raise ImageError(f"{path}: could not read image ({err})") from None
    data = _to_float(arr, path)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(f"{path}: unsupported image shape {arr.shape} (mode {mode})")
    if data.shape[-1] in (2, 4):  # gray+alpha or RGBA: composite onto white
        color, alpha = data[..., :-1], data[..., -1:]
        data = color * alpha + (1.0 - alpha)
    if gray and data.shape[-1] == 3:
        data = data @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
    tensor = torch.from_numpy(np.ascontiguousarray(data))
    if resize is not None and resize != max(tensor.shape[:2]):
        tensor = resize_image(tensor, resize)
    return tensor


def default_image(size: int | None = 128) -> Float[Tensor, "h w 3"]:
    """scikit-image's bundled astronaut picture (no download), area-downsampled to ``size`` (None = 512)."""
    import skimage.data

    img = torch.from_numpy(skimage.data.astronaut()).float() / 255.0
    return resize_image(img, size) if size else img


def resize_image(img: Float[Tensor, "h w c"], longer_side: int) -> Float[Tensor, "h2 w2 c"]:
    """Area-average downsampling so the longer side becomes ``longer_side``."""
    h, w = img.shape[:2]
    scale = longer_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    chw = img.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(chw, size=size, mode="area")
    return out[0].permute(1, 2, 0).contiguous()


class ImageSignal:
    """An image as a signal: coordinates, MSE loss, PSNR/SSIM metrics."""

    def __init__(self, image: Float[Tensor, "h w c"]) -> None:
        if image.dim() != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError(f"ImageSignal expects an (H, W, C) image, got shape {tuple(image.shape)}")
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
