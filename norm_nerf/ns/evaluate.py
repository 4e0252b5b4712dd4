"""Novel-view metrics of a trained run (rendered in eval mode) or of two image folders: what ``norm-eval-blender``
runs, and :func:`evaluate_run` for the comparison helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from norm_nerf.eval.blender_eval import evaluate, folder_items, pair_images
from norm_nerf.ns.eval_render import eval_images, load_pipeline
from norm_nerf.utils.outputs import prepare_output_dir

DEFAULT_OUTPUT_ROOT = Path("outputs/eval_blender")


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


def evaluate_blender(cfg: EvalBlenderConfig) -> tuple[dict, Path]:
    """Score the run's eval images (rendered in eval mode) or the image folders; writes ``metrics.json``, ``table.md``
    and the panels (:func:`norm_nerf.eval.blender_eval.evaluate`). Returns the summary and the output folder.

    The arguments, the folders' names and sizes, or the run (:func:`norm_nerf.ns.eval_render.load_pipeline`) are
    checked before anything is written.
    """
    mode = cfg.mode()
    if mode == "folders":
        pairs = pair_images(cfg.pred_dir, cfg.gt_dir)
        out = prepare_output_dir(cfg.out, DEFAULT_OUTPUT_ROOT, cfg.overwrite)
        source = {"mode": mode, "pred_dir": str(cfg.pred_dir), "gt_dir": str(cfg.gt_dir)}
        return evaluate(folder_items(pairs), out, source, total=len(pairs), panels=cfg.panels), out
    pipeline, ckpt, step = load_pipeline(cfg.load_config, cfg.split, cfg.rays_per_chunk)
    out = prepare_output_dir(cfg.out, DEFAULT_OUTPUT_ROOT, cfg.overwrite)
    source = {"mode": mode, "config": str(cfg.load_config), "checkpoint": str(ckpt), "step": step,
              "split": cfg.split, "model_mode": "eval"}  # fmt: skip
    total, items = eval_images(pipeline)
    return evaluate(items, out, source, total=total, panels=cfg.panels), out


def evaluate_run(config_yml: Path, out: Path) -> dict[str, Any]:
    """Mean test-view PSNR/SSIM/LPIPS of a run; writes metrics.json, table.md and panels into ``out``.

    LPIPS is None (with the reason in ``out/metrics.json``) when its offline weights are missing.
    """
    summary, _ = evaluate_blender(EvalBlenderConfig(load_config=Path(config_yml), out=Path(out), overwrite=True))
    return {"config": str(config_yml), "views": summary["count"], **summary["mean"]}
