"""Train one of our methods with a given norm on CPU-sized settings, score it on the test views, and time its steps.

Used by ``norm-demo nerf`` (normalized vs base method on a scene) and ``benchmarks/ns_throughput.py``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from norm_nerf.eval.mesh_eval import EvalDTUConfig, evaluate_mesh_file
from norm_nerf.ns.evaluate import evaluate_run
from norm_nerf.ns.mesh import ExtractMeshConfig, export_run_mesh
from norm_nerf.ns.runs import cpu_preset, method_config, train


def train_and_score(
    method: str,
    norm: str,
    data: Path,
    out: Path,
    steps: int,
    rays: int,
    samples: int,
    width: int,
    dataparser_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    lr: float | None = None,
) -> dict[str, Any]:
    """Train ``method`` with ``norm`` (``none`` = the base method) and return its test-view metrics and speed.

    ``lr`` replaces the initial learning rate of every optimizer group (None keeps the method's own).

    The run goes to ``out/runs/<method>-<norm>/``, renders and per-view metrics to ``out/renders_<method>-<norm>/``.
    Speed: the median wall time of a training iteration after the first 5 (``train_rays_per_second`` = rays per
    batch / that median); ``train_seconds`` is the whole training call including setup and checkpoints.
    """
    name = f"{method}-{norm}"
    config = cpu_preset(method_config(method), data, out / "runs", steps, rays, samples, width)
    config.pipeline.model.norm = norm
    for key, value in (dataparser_options or {}).items():
        setattr(config.pipeline.datamanager.dataparser, key, value)
    for key, value in (model_options or {}).items():
        setattr(config.pipeline.model, key, value)
    if lr is not None:
        for group in config.optimizers.values():
            group["optimizer"].lr = lr
    config.experiment_name = name
    step_seconds: list[float] = []
    start = time.perf_counter()
    config_yml = train(config, step_seconds)
    total = time.perf_counter() - start
    result = evaluate_run(config_yml, out / f"renders_{name}")
    steady = step_seconds[5:] if len(step_seconds) > 10 else step_seconds
    median = statistics.median(steady)
    result.update(
        method=method,
        norm=norm,
        steps=steps,
        rays_per_batch=rays,
        train_seconds=round(total, 2),
        step_seconds_median=median,
        train_rays_per_second=rays / median,
    )
    return result


def chamfer_of_run(config_yml: Path, scan_dir: Path, gt_dir: Path, scan: int, out: Path, resolution: int = 128) -> dict:
    """Mesh a trained surface run (world coordinates, :func:`norm_nerf.ns.mesh.export_run_mesh`) and score it with the
    DTU protocol (:func:`norm_nerf.eval.mesh_eval.evaluate_mesh_file`) against ``gt_dir``; returns the evaluation's
    metrics (chamfer in mm). Writes ``out/mesh.ply`` and ``out/chamfer/``, as ``norm-extract-mesh`` and
    ``norm-eval-dtu`` would."""
    mesh = out / "mesh.ply"
    export_run_mesh(ExtractMeshConfig(load_config=Path(config_yml), out=mesh, resolution=resolution, overwrite=True))
    evaluation = evaluate_mesh_file(EvalDTUConfig(mesh=mesh, out=out / "chamfer", scan_dir=scan_dir, gt_dir=gt_dir,
                                                  scan=scan, mesh_in_world=True, overwrite=True))  # fmt: skip
    return evaluation.checked()
