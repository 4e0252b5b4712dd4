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

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


@dataclass
class EvalBlenderConfig:
    """Novel-view metrics of a trained run (--load-config) or of two image folders (--pred-dir, --gt-dir)."""

    load_config: Path | None = None
    """config.yml of a trained nerfstudio run: its eval images are rendered and scored."""
    pred_dir: Path | None = None
    """Folder of predicted images (matched to --gt-dir by file name)."""
    gt_dir: Path | None = None
    """Folder of ground-truth images (RGBA is composited on white)."""
    out: Path | None = None
    """Output folder (default: outputs/eval_blender/<time>)."""
    split: Literal["test", "val"] = "test"
    """Split of the run's data to render (with --load-config)."""
    rays_per_chunk: int | None = None
    """Rays per forward pass when rendering (default: the run's eval_num_rays_per_chunk)."""
    panels: bool = True
    """Write a prediction | ground truth | error panel per image."""
    overwrite: bool = False
    """Allow writing into a non-empty --out folder."""

    def mode(self) -> str:
        """'run' or 'folders'; ValueError when the arguments fit neither."""
        folders = (self.pred_dir, self.gt_dir)
        if self.load_config is not None:
            if any(f is not None for f in folders):
                raise ValueError("give either --load-config or --pred-dir/--gt-dir, not both")
            return "run"
        if any(f is None for f in folders):
            raise ValueError("give --load-config CONFIG.yml, or both --pred-dir and --gt-dir")
        return "folders"


def run(cfg: EvalBlenderConfig) -> dict:
    """Evaluate, write the results and return the metrics.json content."""
    from rich.console import Console

    from norm_nerf.eval.blender_eval import PSNR_CAP_DB, evaluate, folder_items, pair_images
    from norm_nerf.utils.outputs import prepare_output_dir

    console = Console()
    mode = cfg.mode()
    if mode == "folders":
        pairs = pair_images(cfg.pred_dir, cfg.gt_dir)  # checks names and sizes before anything is written
        out = prepare_output_dir(cfg.out, Path("outputs/eval_blender"), cfg.overwrite)
        source = {"mode": mode, "pred_dir": str(cfg.pred_dir), "gt_dir": str(cfg.gt_dir)}
        summary = evaluate(folder_items(pairs), out, source, total=len(pairs), panels=cfg.panels)
    else:
        from norm_nerf.ns.eval_render import eval_images, load_pipeline

        pipeline, ckpt, step = load_pipeline(cfg.load_config, cfg.split, cfg.rays_per_chunk)
        out = prepare_output_dir(cfg.out, Path("outputs/eval_blender"), cfg.overwrite)
        source = {"mode": mode, "config": str(cfg.load_config), "checkpoint": str(ckpt), "step": step,
                  "split": cfg.split, "model_mode": "eval"}  # fmt: skip
        total, items = eval_images(pipeline)
        summary = evaluate(items, out, source, total=total, panels=cfg.panels)
    mean = summary["mean"]
    fmt = {k: "n/a" if mean[k] is None else f"{mean[k]:.4f}" for k in mean}
    console.print(
        f"{summary['count']} images: PSNR [bold]{fmt['psnr']}[/bold] dB, SSIM {fmt['ssim']}, LPIPS {fmt['lpips']}"
    )
    if summary["psnr_capped"]:
        console.print(f"PSNR capped at {PSNR_CAP_DB:g} dB for {summary['psnr_capped']} image(s) (exact matches)")
    if summary["lpips_missing_reason"]:
        console.print(f"[yellow]LPIPS not computed:[/yellow] {summary['lpips_missing_reason']}")
    console.print(f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, table.md, panels/)")
    return summary


def entrypoint() -> None:
    """Console script ``norm-eval-blender``."""
    from norm_nerf.utils.cli import run_cli

    run_cli(lambda: run(tyro.cli(EvalBlenderConfig)))


if __name__ == "__main__":
    entrypoint()
