"""norm-extract-mesh: the surface of a trained norm-neus run as a PLY mesh, on CPU (or the GPU when present).

Marching cubes (PyMCubes) on the SDF sampled in eval mode on a regular grid, in chunks; the mesh is written in the
dataset's world coordinates (NeuS/DTU scans: ``scale_mat`` applied, so ``norm-eval-dtu --mesh-in-world`` takes it)::

    norm-extract-mesh --load-config outputs/scan65/norm-neus/<time>/config.yml --resolution 256 --out mesh.ply
    norm-eval-dtu --mesh mesh.ply --mesh-in-world --scan-dir data/dtu/scan65 --gt-dir data/dtu_gt --scan 65
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from norm_nerf.ns.mesh import Bounds


@dataclass
class ExtractMeshConfig:
    """Marching cubes on the SDF of a trained norm-neus run; writes a PLY mesh."""

    load_config: Path
    """The run's config.yml (outputs/<scene>/norm-neus/<time>/config.yml)."""
    out: Path = Path("mesh.ply")
    """Output mesh (.ply)."""
    resolution: int = 256
    """Grid points per axis (memory and time grow with its cube)."""
    bounds: Bounds | None = None
    """Box to mesh in the model's coordinates, xmin ymin zmin xmax ymax zmax (default: the scene box)."""
    chunk: int = 65536
    """SDF queries per forward pass."""
    coordinates: Literal["world", "model"] = "world"
    """world: the dataset's coordinates (scale_mat or the dataparser transform undone); model: as trained."""
    overwrite: bool = False
    """Replace an existing output file."""


def run(cfg: ExtractMeshConfig) -> Path:
    """Load the run, extract and write the mesh; returns the written file."""
    from rich.console import Console

    from norm_nerf.ns.eval_render import load_pipeline
    from norm_nerf.ns.mesh import mesh_of_model

    out = Path(cfg.out)
    if out.suffix.lower() != ".ply":
        raise ValueError(f"{out}: the output must be a .ply file")
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if cfg.resolution < 2 or cfg.chunk < 1:
        raise ValueError(f"need --resolution >= 2 and --chunk >= 1, got {cfg.resolution} and {cfg.chunk}")
    console = Console()
    start = time.perf_counter()
    pipeline, ckpt, step = load_pipeline(cfg.load_config)
    console.print(f"loaded {ckpt} (step {step})")
    outputs = pipeline.datamanager.train_dataparser_outputs
    world = cfg.coordinates == "world"
    mesh = mesh_of_model(pipeline.model, outputs, cfg.resolution, cfg.bounds, cfg.chunk, world=world)
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)
    console.print(
        f"wrote [bold]{out}[/bold]: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {cfg.coordinates} "
        f"coordinates, {cfg.resolution}^3 grid ({time.perf_counter() - start:.1f} s)"
    )
    return out


def entrypoint() -> None:
    """Console script ``norm-extract-mesh``."""
    from norm_nerf.utils.cli import run_cli

    run_cli(lambda: run(tyro.cli(ExtractMeshConfig)))


if __name__ == "__main__":
    entrypoint()
