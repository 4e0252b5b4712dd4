"""Chamfer distance of a mesh file, by the DTU protocol or against a reference mesh, with its output files.

What ``norm-eval-dtu`` runs (and :func:`norm_nerf.ns.compare.chamfer_of_run` after meshing a run):

* DTU mode (``scan_dir``, ``gt_dir``, ``scan``): cameras and masks of the NeuS-layout scan, DTU-layout ground truth,
  the protocol of :mod:`norm_nerf.eval.dtu`; also writes the culled mesh ``mesh_culled_world.ply``.
* plain mode (``gt_mesh``): both meshes sampled and thinned alike, symmetric chamfer (:mod:`norm_nerf.eval.chamfer`),
  no masks or observation volume.

Writes ``metrics.json`` and coloured error clouds (``vis_d2s.ply``: the reconstruction coloured by its distance to
the ground truth; ``vis_s2d.ply``: the ground truth coloured by its distance to the reconstruction; white = 0, red >=
``vis_dist``, green >= ``max_dist``, blue = not evaluated).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from norm_nerf.data.shapes import load_mesh
from norm_nerf.data.surface_sampling import surface_points
from norm_nerf.eval.chamfer import chamfer
from norm_nerf.eval.dtu import DTUGroundTruth, NeuSViews, error_clouds, evaluate_dtu_mesh, size_mismatch
from norm_nerf.eval.pointclouds import error_colors, write_colored_cloud
from norm_nerf.utils.jsonio import jsonable, write_json
from norm_nerf.utils.outputs import prepare_output_dir

DEFAULT_OUTPUT_ROOT = Path("outputs/eval_dtu")


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


Clouds = list[tuple[str, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MeshEvaluation:
    """What :func:`evaluate_mesh_file` wrote: the metrics (as in ``metrics.json``) and the output folder."""

    metrics: dict
    """The content of ``metrics.json``."""
    out: Path
    """The output folder."""
    problem: str | None
    """Why the figures are meaningless (no distance below ``max_dist``: other units or coordinates), or None."""

    def checked(self) -> dict:
        """The metrics; ValueError with :attr:`problem` when there is one."""
        if self.problem is not None:
            raise ValueError(self.problem)
        return self.metrics


def _plain(cfg: EvalDTUConfig, mesh) -> tuple[dict, Clouds, str]:
    """Symmetric chamfer against ``gt_mesh`` (both sampled and thinned alike, as ``mesh_chamfer`` does); also returns
    a hint naming the mesh that looks off when their sizes differ by more than 10x."""
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


def _dtu(cfg: EvalDTUConfig, mesh, out: Path) -> tuple[dict, Clouds, str]:
    """The DTU protocol; also writes the culled mesh, and returns a hint when the mesh's size (in world
    coordinates) differs from the ground truth's by more than 10x."""
    import trimesh

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


def evaluate_mesh_file(cfg: EvalDTUConfig) -> MeshEvaluation:
    """Evaluate ``cfg.mesh``; write ``metrics.json`` and the error clouds into the output folder.

    Argument and input errors raise before anything is written. When no distance is below ``max_dist`` the files are
    still written (they show what was compared) and :attr:`MeshEvaluation.problem` says why the figures are missing.
    """
    mode = cfg.mode()
    mesh = load_mesh(cfg.mesh)
    out = prepare_output_dir(cfg.out, DEFAULT_OUTPUT_ROOT, cfg.overwrite)
    start = time.perf_counter()
    summary, clouds, hint = _plain(cfg, mesh) if mode == "plain" else _dtu(cfg, mesh, out)
    for name, points, colors in clouds:
        write_colored_cloud(out / name, points, colors)
    metrics = jsonable({
        "mode": mode,
        "mesh": str(cfg.mesh),
        "reference": str(cfg.gt_mesh) if mode == "plain" else f"{cfg.gt_dir} (scan {cfg.scan})",
        **{k: summary[k] for k in ("mean_d2s", "mean_s2d", "overall")},
        "counts": summary["counts"],
        "params": {
            "density": cfg.density, "max_dist": cfg.max_dist, "patch": cfg.patch, "dilation": cfg.dilation,
            "mesh_in_world": cfg.mesh_in_world, "seed": cfg.seed,
        },
        "seconds": round(time.perf_counter() - start, 2),
    })  # fmt: skip
    write_json(out / "metrics.json", metrics)  # non-finite figures (no distance below max_dist) are null
    problem = None
    if metrics["overall"] is None:
        where = "(see --mesh-in-world)" if mode == "dtu" else "as --gt-mesh"
        problem = (
            f"{cfg.mesh}: no distances below max_dist {cfg.max_dist} (counts: {summary['counts']}): is the mesh in the "
            f"right units and coordinates {where}?{hint} The clouds in {out} show what was compared"
        )
    return MeshEvaluation(metrics, out, problem)
