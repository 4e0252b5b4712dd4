"""norm-make-scene: synthetic scenes with known geometry, in the Blender or the NeuS/DTU layout.

    norm-make-scene blender --out data/sphere --shape torus --views 100 --size 200
    norm-make-scene dtu --out data/dtu_torus --shape torus --views 49 --size 400

``blender`` writes transforms_{train,val,test}.json + RGBA PNGs (nerfstudio's ``blender-data`` reads them);
``dtu`` writes image/, mask/, cameras_sphere.npz (NeuS) and gt/ in the DTU evaluation layout.
"""

from __future__ import annotations

from pathlib import Path

import tyro

from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene
from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE


def run(cfg: BlenderSceneConfig | DTUSceneConfig) -> Path:
    """Write the scene described by ``cfg``; returns its folder."""
    out = write_blender_scene(cfg) if isinstance(cfg, BlenderSceneConfig) else write_dtu_scene(cfg)
    CONSOLE.print(f"Scene written to [bold]{out.resolve()}[/bold]")
    return out


def entrypoint() -> None:
    """Console script ``norm-make-scene`` (subcommands ``blender`` and ``dtu``)."""

    def main() -> None:
        cfg = tyro.extras.subcommand_cli_from_dict(
            {"blender": BlenderSceneConfig, "dtu": DTUSceneConfig},
            description="Write a synthetic scene with known geometry (Blender or NeuS/DTU layout).",
        )
        run(cfg)

    run_cli(main)


if __name__ == "__main__":
    entrypoint()
