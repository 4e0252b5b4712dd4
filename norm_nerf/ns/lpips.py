"""nerfstudio's models without an LPIPS download: torchmetrics' LPIPS class swapped for :class:`LazyLPIPS`.

nerfstudio's models build torchmetrics' LPIPS in ``populate_modules``, which downloads the AlexNet weights, so
training fails offline before the first step. Inside :func:`no_lpips_download` they get
:class:`norm_nerf.eval.lpips.LazyLPIPS` instead (built on first use; NaN with a hint while the weights are missing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from norm_nerf.eval.lpips import LazyLPIPS


@contextlib.contextmanager
def no_lpips_download() -> Iterator[None]:
    """While active, nerfstudio code that builds torchmetrics' LPIPS gets a :class:`LazyLPIPS` instead."""
    import torchmetrics.image.lpip as lpip_module

    original = lpip_module.LearnedPerceptualImagePatchSimilarity
    lpip_module.LearnedPerceptualImagePatchSimilarity = LazyLPIPS  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]
