"""Speed of the DTU chamfer evaluation at one million points per side (CPU, KD-trees on all cores).

A sphere of radius 64 mm has an area of about 51 000 mm^2: about 1 M points at the DTU spacing of 0.2 mm
(0.2 mm grid per triangle, then thinning). The ground truth is that sphere; the "reconstruction" is the same
sphere with +-1 mm bumps (a realistic error: DTU chamfer figures are about 0.5-1 mm). Times each step of the
protocol after culling (sampling, thinning, ObsMask test + both nearest-neighbour directions) and writes
benchmarks/results/dtu_eval_speed.json. Nearest-neighbour queries get slower as errors grow (a query point at
distance D from a surface sampled at spacing h looks at about (D / h)^2 points).

    .venv/bin/python benchmarks/dtu_eval_speed.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from norm_nerf.data.dtu import obs_mask_volume
from norm_nerf.data.shapes import make_shape
from norm_nerf.data.surface_sampling import sample_surface, thin_points
from norm_nerf.eval.dtu import DTUGroundTruth, ObsVolume, dtu_chamfer

RADIUS_MM = 64.0
BUMP_MM = 1.0
DENSITY_MM = 0.2
OUT = Path(__file__).parent / "results" / "dtu_eval_speed.json"


def _timed(label: str, times: dict, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    times[label] = round(time.perf_counter() - start, 3)
    print(f"{label:>28}: {times[label]:7.3f} s")
    return result


def main() -> dict:
    """Run the benchmark and write the JSON report."""
    times: dict[str, float] = {}
    mesh = make_shape("sphere", 5)
    v = np.asarray(mesh.vertices)
    bumps = np.prod(np.sin(4.0 * np.pi * v), axis=1, keepdims=True)
    gt_v, data_v = v * RADIUS_MM, v * (RADIUS_MM + BUMP_MM * bumps)
    total_start = time.perf_counter()
    gt_raw = _timed("sample gt", times, sample_surface, gt_v, mesh.faces, DENSITY_MM)
    gt_pts = gt_raw[_timed("thin gt", times, thin_points, gt_raw, DENSITY_MM)]
    bb, volume = _timed("obs mask volume (setup)", times, obs_mask_volume, gt_pts, 4.0, 10.0)
    gt = DTUGroundTruth(gt_pts, ObsVolume(bb, 4.0, volume), np.array([0.0, 0.0, 1.0, RADIUS_MM * 0.5]))
    eval_start = time.perf_counter()
    data_raw = _timed("sample data", times, sample_surface, data_v, mesh.faces, DENSITY_MM)
    data_pts = data_raw[_timed("thin data", times, thin_points, data_raw, DENSITY_MM)]
    result = _timed("obs mask + d2s + s2d", times, dtu_chamfer, data_pts, gt)
    times["evaluation (sample, thin, chamfer)"] = round(time.perf_counter() - eval_start, 3)
    times["total incl. gt preparation"] = round(time.perf_counter() - total_start, 3)
    report = {
        "benchmark": "DTU chamfer evaluation, ~1M points per side",
        "points": {"gt": len(gt_pts), "data_sampled": len(data_raw), "data_thinned": len(data_pts)},
        "result": result.summary(),
        "seconds": times,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print(f"points: {report['points']}\nwritten to {OUT}")
    return report


if __name__ == "__main__":
    main()
