"""Image fitting: the network maps pixel-centre coordinates in [-1, 1]^2 to RGB (or gray) values.

Files are read by :func:`norm_nerf.data.images.load_image` (the package's one image reader: its rules are in
:mod:`norm_nerf.data.images`); coordinates come from :func:`norm_nerf.core.grids.pixel_grid`.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.grids import pixel_grid
from norm_nerf.data.images import MIN_IMAGE_SIDE, ImageError, bundled_image
from norm_nerf.eval.metrics import PSNR_CAP_DB, mse_to_psnr, psnr, ssim


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
