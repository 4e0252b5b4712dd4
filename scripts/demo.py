"""norm-demo: the main job on an embedded default — fit a 128x128 image with plain and normalized networks.

Uses scikit-image's bundled ``astronaut`` picture (no download), trains each method full-batch, recalibrates
the norms' running statistics and reports eval-mode PSNR/SSIM, and writes pictures, curves and JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class DemoConfig:
    """Fit one image with several methods and compare them (eval-mode metrics)."""

    methods: tuple[str, ...] = ("relu", "pe", "relu+cn", "pe+cn")
    """Methods to compare (see README: relu, pe, siren, wire, mfn, relu+bn, pe+cn, ...)."""
    image: Path | None = None
    """Image to fit; default: scikit-image's bundled astronaut picture."""
    size: int = 128
    """Longer image side after downsampling."""
    depth: int = 10
    """Hidden layers."""
    width: int = 28
    """Hidden features."""
    steps: int = 300
    """Training steps per method (full batch)."""
    out: Path | None = None
    """Output folder (default: outputs/demo/<time>)."""
    overwrite: bool = False
    """Allow writing into a non-empty --out folder."""
    seed: int = 0
    """Seed for the network initialisation."""
    progress: bool = True
    """Show progress bars."""


def _default_image(size: int):
    import skimage.data
    import torch

    from norm_nerf.tasks.image import resize_image

    img = torch.from_numpy(skimage.data.astronaut()).float() / 255.0
    return resize_image(img, size)


def run(cfg: DemoConfig) -> dict:
    """Run the demo and return the results dictionary (also written to ``metrics.json``)."""
    from rich.console import Console
    from rich.table import Table

    from norm_nerf.core import NetworkConfig, count_parameters
    from norm_nerf.eval.plots import save_curves, save_image_grid
    from norm_nerf.outputs import prepare_output_dir
    from norm_nerf.tasks.image import ImageSignal, load_image
    from norm_nerf.tasks.trainer import TrainConfig, default_lr, fit

    console = Console()
    out = prepare_output_dir(cfg.out, Path("outputs/demo"), cfg.overwrite)
    image = _default_image(cfg.size) if cfg.image is None else load_image(cfg.image, resize=cfg.size)
    signal = ImageSignal(image)
    train = TrainConfig(steps=cfg.steps, seed=cfg.seed, progress=cfg.progress)
    results, preds, curves = {}, {}, {}
    for method in cfg.methods:
        net = NetworkConfig(method=method, depth=cfg.depth, width=cfg.width, seed=cfg.seed).setup(2, signal.out_dim)
        lr = default_lr(method)
        res = fit(net, signal, train, lr=lr, label=f"{method:>8}")
        results[method] = {
            **res.metrics,
            "psnr_train_mode_final": res.train_mode_metrics["psnr"],
            "psnr_best_train_mode": res.best_train_mode_metric,
            "params": count_parameters(net),
            "lr": lr,
            "steps": res.steps,
            "seconds": round(res.seconds, 2),
        }
        preds[method] = signal.as_image(res.prediction).numpy()
        curves[method] = (res.curve_steps, res.curve_metric)
    summary = {
        "task": "image",
        "image": str(cfg.image or "skimage.data.astronaut"),
        "size": list(image.shape),
        "net": f"{cfg.depth}x{cfg.width}",
        "note": "psnr/ssim are eval-mode metrics of the final model after recalibrating running statistics",
        "results": results,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    titles = {m: f"{m}: {r['psnr']:.2f} dB" for m, r in results.items()}
    save_image_grid(image.numpy(), preds, out / "reconstructions.png", titles)
    save_curves(curves, out / "curves.png")
    for method, pred in preds.items():
        from PIL import Image

        from norm_nerf.eval.metrics import to_uint8

        Image.fromarray(to_uint8(pred.squeeze())).save(out / f"recon_{method.replace('+', '_')}.png")
    table = Table(title=f"image fit, {cfg.depth}x{cfg.width}, {cfg.steps} steps (eval mode after recalibration)")
    for col in ("method", "PSNR", "SSIM", "train-mode final", "best train-mode", "s"):
        table.add_column(col, justify="right")
    for m, r in results.items():
        table.add_row(
            m, f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['psnr_train_mode_final']:.2f}",
            f"{r['psnr_best_train_mode']:.2f}", f"{r['seconds']:.1f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, reconstructions.png, curves.png)")
    return summary


def entrypoint() -> None:
    """Console script ``norm-demo``."""
    from norm_nerf.cli import run_cli

    run_cli(lambda: run(tyro.cli(DemoConfig)))


if __name__ == "__main__":
    entrypoint()
