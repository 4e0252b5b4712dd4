"""Score a trained run on its test views in eval mode (the ``norm-eval-blender`` path, as a function)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_run(config_yml: Path, out: Path) -> dict[str, Any]:
    """Mean test-view PSNR/SSIM/LPIPS of a run; writes metrics.json, table.md and panels into ``out``.

    LPIPS is None (with the reason in ``out/metrics.json``) when its offline weights are missing.
    """
    from norm_nerf.eval.blender_eval import evaluate
    from norm_nerf.ns.eval_render import eval_images, load_pipeline

    pipeline, ckpt, step = load_pipeline(Path(config_yml))
    total, items = eval_images(pipeline)
    summary = evaluate(items, Path(out), {"config": str(config_yml), "checkpoint": str(ckpt), "step": step}, total)
    return {"config": str(config_yml), "views": summary["count"], **summary["mean"]}
