"""norm-eval-blender: PSNR / SSIM / LPIPS of novel views, as Blender-benchmark tables report them.

From a trained nerfstudio run (renders every test image on CPU, or CUDA when present, in eval mode)::

    norm-eval-blender --load-config outputs/lego/norm-mipnerf/<time>/config.yml --out eval/lego

From two folders of images with matching names (RGBA ground truth is composited on white)::

    norm-eval-blender --pred-dir renders/ --gt-dir data/lego/test --out eval/lego

Writes metrics.json (per image and mean; LPIPS null with lpips_missing_reason when the AlexNet weights are
missing - see norm-lpips-weights), table.md and panels/<name>.png (prediction | ground truth | |error|).
PSNR is capped at 100 dB per image (an exact match; psnr_capped counts them) and the mean is that of the capped
per-image values. A rendering or image with NaN/inf pixels, or a run whose checkpoint holds NaN/inf weights, is
refused with an error naming the file, never scored.
"""

from __future__ import annotations

import tyro

from norm_nerf.eval.metrics import PSNR_CAP_DB
from norm_nerf.ns.evaluate import EvalBlenderConfig, evaluate_blender
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE


def run(cfg: EvalBlenderConfig) -> dict:
    """Evaluate (:func:`norm_nerf.ns.evaluate.evaluate_blender`), print the means and return the metrics.json
    content."""
    summary, out = evaluate_blender(cfg)
    mean = summary["mean"]
    fmt = {k: "n/a" if mean[k] is None else f"{mean[k]:.4f}" for k in mean}
    CONSOLE.print(
        f"{summary['count']} images: PSNR [bold]{fmt['psnr']}[/bold] dB, SSIM {fmt['ssim']}, LPIPS {fmt['lpips']}"
    )
    if summary["psnr_capped"]:
        CONSOLE.print(f"PSNR capped at {PSNR_CAP_DB:g} dB for {summary['psnr_capped']} image(s) (exact matches)")
    if summary["lpips_missing_reason"]:
        CONSOLE.print(f"[yellow]LPIPS not computed:[/yellow] {summary['lpips_missing_reason']}")
    CONSOLE.print(f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, table.md, panels/)")
    return summary


def entrypoint() -> None:
    """Console script ``norm-eval-blender``."""
    run_cli(lambda: run(tyro.cli(EvalBlenderConfig)))


if __name__ == "__main__":
    entrypoint()
