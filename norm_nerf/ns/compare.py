"""Train one of our methods with a given norm on CPU-sized settings, score it on the test views, and time its steps.

Used by ``norm-demo nerf`` (normalized vs base method on a scene) and ``benchmarks/ns_throughput.py``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


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
) -> dict[str, Any]:
    """Train ``method`` with ``norm`` (``none`` = the base method) and return its test-view metrics and speed.

    The run goes to ``out/runs/<method>-<norm>/``, renders and per-view metrics to ``out/renders_<method>-<norm>/``.
    Speed: the median wall time of a training iteration after the first 5 (``train_rays_per_second`` = rays per
    batch / that median); ``train_seconds`` is the whole training call including setup and checkpoints.
    """
    from norm_nerf.ns.evaluate import evaluate_run
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    name = f"{method}-{norm}"
    config = cpu_preset(method_config(method), data, out / "runs", steps, rays, samples, width)
    config.pipeline.model.norm = norm
    for key, value in (dataparser_options or {}).items():
        setattr(config.pipeline.datamanager.dataparser, key, value)
    for key, value in (model_options or {}).items():
        setattr(config.pipeline.model, key, value)
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
    """Mesh a trained surface run (``norm-extract-mesh``, world coordinates) and score it with the DTU protocol
    (``norm-eval-dtu``) against ``gt_dir``; returns the evaluation's metrics (chamfer in mm)."""
    from norm_nerf.scripts.eval_dtu import EvalDTUConfig
    from norm_nerf.scripts.eval_dtu import run as eval_dtu
    from norm_nerf.scripts.extract_mesh import ExtractMeshConfig
    from norm_nerf.scripts.extract_mesh import run as extract_mesh

    mesh = extract_mesh(ExtractMeshConfig(load_config=Path(config_yml), out=out / "mesh.ply", resolution=resolution,
                                          overwrite=True))  # fmt: skip
    return eval_dtu(EvalDTUConfig(mesh=mesh, out=out / "chamfer", scan_dir=scan_dir, gt_dir=gt_dir, scan=scan,
                                  mesh_in_world=True, overwrite=True))  # fmt: skip
