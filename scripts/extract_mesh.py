"""norm-extract-mesh: the surface of a trained norm-neus run as a PLY mesh, on CPU (or the GPU when present).

Marching cubes (PyMCubes) on the SDF sampled in eval mode on a regular grid, in chunks; the mesh is written in the
dataset's world coordinates (NeuS/DTU scans: ``scale_mat`` applied, so ``norm-eval-dtu --mesh-in-world`` takes it)::

    norm-extract-mesh --load-config outputs/scan65/norm-neus/<time>/config.yml --resolution 256 --out mesh.ply
    norm-eval-dtu --mesh mesh.ply --mesh-in-world --scan-dir data/dtu/scan65 --gt-dir data/dtu_gt --scan 65
"""

from __future__ import annotations

from pathlib import Path

import tyro

from norm_nerf.ns.mesh import ExtractMeshConfig, export_run_mesh
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE


def run(cfg: ExtractMeshConfig) -> Path:
    """Extract and write the mesh (:func:`norm_nerf.ns.mesh.export_run_mesh`), printing what it does; returns the
    written file."""
    export_run_mesh(cfg, log=CONSOLE.print)
    return Path(cfg.out)


def entrypoint() -> None:
    """Console script ``norm-extract-mesh``."""
    run_cli(lambda: run(tyro.cli(ExtractMeshConfig)))


if __name__ == "__main__":
    entrypoint()
