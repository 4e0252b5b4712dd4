"""norm-eval-dtu: chamfer distance of a reconstructed mesh, by the DTU protocol or between two meshes.

DTU protocol (NeuS layout for cameras and masks, DTU layout for the ground truth)::

    norm-eval-dtu --mesh mesh.ply --scan-dir data/dtu/scan65 --gt-dir data/dtu_gt --scan 65 --out eval/scan65

Plain chamfer between two meshes (same sampling, thinning and KD-trees, no masks or observation volume)::

    norm-eval-dtu --mesh a.ply --gt-mesh b.ply --out eval/a_vs_b

Writes metrics.json and coloured error clouds (vis_d2s.ply: reconstruction coloured by its distance to the
ground truth; vis_s2d.ply: ground truth coloured by its distance to the reconstruction; white = 0, red >=
vis_dist, green >= max_dist, blue = not evaluated).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tyro

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EvalDTUConfig:
    """Chamfer distance of a mesh: the DTU protocol (with --scan-dir/--gt-dir/--scan) or against --gt-mesh."""

    mesh: Path
    """Reconstructed mesh to evaluate (PLY/OBJ/...)."""
    out: Path | None = None
    """Output folder (default: outputs/eval_dtu/<time>)."""
    scan_dir: Path | None = None
    """Scan folder in the NeuS layout (cameras_sphere.npz, mask/*.png) - DTU mode."""
    gt_dir: Path | None = None
    """DTU ground-truth folder (Points/stl/stl<scan>_total.ply, ObsMask/{ObsMask<scan>_10,Plane<scan>}.mat)."""
    scan: int | None = None
    """Scan number (names the ground-truth files) - DTU mode."""
    gt_mesh: Path | None = None
    """Reference mesh for a plain symmetric chamfer (instead of the DTU protocol)."""
    mesh_in_world: bool = False
    """The mesh is in world (mm) coordinates; default: normalised unit-sphere coordinates, as NeuS exports."""
    density: float = 0.2
    """Surface sampling spacing and thinning distance (0.2 mm in DTU)."""
    max_dist: float = 20.0
    """Distances of this much or more are left out of the means (20 mm in DTU; inf keeps all)."""
    patch: float = 60.0
    """Margin around the ObsMask bounding box for the completeness points (60 mm in DTU)."""
    dilation: int | None = None
    """Mask dilation radius in pixels (default: 24 px at 1600 px width, scaled to the mask width)."""
    vis_dist: float = 10.0
    """Distance shown as full red in the error clouds."""
    seed: int = 0
    """Seed of the random visiting order of the thinning step."""
    overwrite: bool = False
    """Allow writing into a non-empty --out folder."""

    def mode(self) -> str:
        """'plain' or 'dtu'; raises ValueError when the arguments fit neither."""
        if self.density <= 0 or self.max_dist <= 0 or self.vis_dist <= 0:
            raise ValueError("density, max_dist and vis_dist must be positive")
        dtu_args = (self.scan_dir, self.gt_dir, self.scan)
        if self.gt_mesh is not None:
            if any(a is not None for a in dtu_args):
                raise ValueError("give either --gt-mesh (plain chamfer) or --scan-dir/--gt-dir/--scan (DTU), not both")
            return "plain"
        if any(a is None for a in dtu_args):
            raise ValueError("DTU mode needs --scan-dir, --gt-dir and --scan (or give --gt-mesh for a plain chamfer)")
        return "dtu"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


Clouds = list[tuple[str, "np.ndarray", "np.ndarray"]]


def _run_plain(cfg: EvalDTUConfig, mesh, out: Path) -> tuple[dict, Clouds, str]:
    """Symmetric chamfer against --gt-mesh (both sampled and thinned alike, as ``mesh_chamfer`` does); also returns
    a hint naming the mesh that looks off when their sizes differ by more than 10x."""
    from norm_nerf.data.shapes import load_mesh
    from norm_nerf.eval.chamfer import chamfer, surface_points
    from norm_nerf.eval.dtu import size_mismatch
    from norm_nerf.eval.pointclouds import error_colors

    gt_mesh = load_mesh(cfg.gt_mesh)
    hint = size_mismatch(f"--mesh {cfg.mesh}", mesh.vertices, f"--gt-mesh {cfg.gt_mesh}", gt_mesh.vertices, False)
    points = []
    for path, m in ((cfg.mesh, mesh), (cfg.gt_mesh, gt_mesh)):
        try:
            points.append(surface_points(m.vertices, m.faces, cfg.density, cfg.seed))
        except ValueError as err:  # the sampling limit: usually a mesh in other units
            raise ValueError(f"{path}: {err}{hint}") from None
    res = chamfer(points[0], points[1], cfg.max_dist)
    clouds = [
        ("vis_d2s.ply", res.data, error_colors(res.d2s, cfg.vis_dist, cfg.max_dist)),
        ("vis_s2d.ply", res.gt, error_colors(res.s2d, cfg.vis_dist, cfg.max_dist)),
    ]
    return res.summary(), clouds, hint


def _run_dtu(cfg: EvalDTUConfig, mesh, out: Path) -> tuple[dict, Clouds, str]:
    """The DTU protocol; also writes the culled mesh, and returns a hint when the mesh's size (in world
    coordinates) differs from the ground truth's by more than 10x."""
    import trimesh

    from norm_nerf.eval.dtu import DTUGroundTruth, NeuSViews, error_clouds, evaluate_dtu_mesh, size_mismatch

    views = NeuSViews.load(cfg.scan_dir)
    gt = DTUGroundTruth.load(cfg.gt_dir, cfg.scan)
    res, (kept_v, kept_f) = evaluate_dtu_mesh(
        mesh.vertices, mesh.faces, views, gt, cfg.mesh_in_world, cfg.density, cfg.max_dist, cfg.patch, cfg.dilation,
        cfg.seed, mesh_name=str(cfg.mesh),
    )  # fmt: skip
    trimesh.Trimesh(kept_v, kept_f, process=False).export(out / "mesh_culled_world.ply")
    (data, data_colors), (stl, stl_colors) = error_clouds(res, gt, cfg.vis_dist, cfg.max_dist)
    hint = size_mismatch(f"--mesh {cfg.mesh}", kept_v, f"the ground truth of scan {cfg.scan} (mm)", gt.stl)
    return res.summary(), [("vis_d2s.ply", data, data_colors), ("vis_s2d.ply", stl, stl_colors)], hint


def run(cfg: EvalDTUConfig) -> dict:
    """Evaluate, write metrics.json and the error clouds, and return the metrics."""
    from rich.console import Console

    from norm_nerf.data.shapes import load_mesh
    from norm_nerf.eval.pointclouds import write_colored_cloud
    from norm_nerf.utils.outputs import prepare_output_dir

    mode = cfg.mode()
    mesh = load_mesh(cfg.mesh)
    out = prepare_output_dir(cfg.out, Path("outputs/eval_dtu"), cfg.overwrite)
    start = time.perf_counter()
    summary, clouds, hint = (_run_plain if mode == "plain" else _run_dtu)(cfg, mesh, out)
    for name, points, colors in clouds:
        write_colored_cloud(out / name, points, colors)
    metrics = {
        "mode": mode,
        "mesh": str(cfg.mesh),
        "reference": str(cfg.gt_mesh) if mode == "plain" else f"{cfg.gt_dir} (scan {cfg.scan})",
        **{k: _finite(summary[k]) for k in ("mean_d2s", "mean_s2d", "overall")},
        "counts": summary["counts"],
        "params": {
            "density": cfg.density, "max_dist": _finite(cfg.max_dist), "patch": cfg.patch, "dilation": cfg.dilation,
            "mesh_in_world": cfg.mesh_in_world, "seed": cfg.seed,
        },
        "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    console = Console()
    fmt = {k: "n/a" if metrics[k] is None else f"{metrics[k]:.4f}" for k in ("mean_d2s", "mean_s2d", "overall")}
    console.print(
        f"[bold]{mode}[/bold] chamfer: accuracy (d2s) {fmt['mean_d2s']}, completeness (s2d) {fmt['mean_s2d']}, "
        f"overall [bold]{fmt['overall']}[/bold]  ({metrics['seconds']} s)"
    )
    console.print(f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, vis_d2s.ply, vis_s2d.ply)")
    if metrics["overall"] is None:
        where = "(see --mesh-in-world)" if mode == "dtu" else "as --gt-mesh"
        raise ValueError(
            f"{cfg.mesh}: no distances below max_dist {cfg.max_dist} (counts: {summary['counts']}): is the mesh in the "
            f"right units and coordinates {where}?{hint} The clouds in {out} show what was compared"
        )
    return metrics


def entrypoint() -> None:
    """Console script ``norm-eval-dtu``."""
    from norm_nerf.utils.cli import run_cli

    run_cli(lambda: run(tyro.cli(EvalDTUConfig)))


if __name__ == "__main__":
    entrypoint()
