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

import tyro

from norm_nerf.eval.mesh_eval import EvalDTUConfig, evaluate_mesh_file
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE


def run(cfg: EvalDTUConfig) -> dict:
    """Evaluate (:func:`norm_nerf.eval.mesh_eval.evaluate_mesh_file`), print the figures and return the metrics."""
    result = evaluate_mesh_file(cfg)
    metrics = result.metrics
    fmt = {k: "n/a" if metrics[k] is None else f"{metrics[k]:.4f}" for k in ("mean_d2s", "mean_s2d", "overall")}
    CONSOLE.print(
        f"[bold]{metrics['mode']}[/bold] chamfer: accuracy (d2s) {fmt['mean_d2s']}, completeness (s2d) "
        f"{fmt['mean_s2d']}, overall [bold]{fmt['overall']}[/bold]  ({metrics['seconds']} s)"
    )
    CONSOLE.print(f"Results written to [bold]{result.out.resolve()}[/bold] (metrics.json, vis_d2s.ply, vis_s2d.ply)")
    return result.checked()


def entrypoint() -> None:
    """Console script ``norm-eval-dtu``."""
    run_cli(lambda: run(tyro.cli(EvalDTUConfig)))


if __name__ == "__main__":
    entrypoint()
