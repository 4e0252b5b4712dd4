"""What nerfstudio's ``ns-export`` needs from the norm-* models, and the one exporter that needs CUDA.

* ``pointcloud``, ``poisson``, ``tsdf``: the ``rgb``, ``accumulation`` and ``depth`` outputs every norm-* model has
  (:func:`norm_nerf.ns.base_model.with_fine_aliases`: the fine pass of NeRF / Mip-NeRF). Our NeRF models have no
  normals output, so these exporters need ``--normal-method open3d`` (normals estimated from the point cloud); with
  the default ``model_output`` nerfstudio stops with "Normal output 'normals' not found".
* ``marching-cubes`` (norm-neus, norm-neus-facto): ``model.config.sdf_field`` and ``model.field.forward_geonetwork``
  (:meth:`norm_nerf.ns.sdf_field.NormSDFField.forward_geonetwork`). nerfstudio's multi-resolution marching cubes
  (``nerfstudio/exporter/marching_cubes.py``) moves its grid points to the GPU with ``.cuda()`` unconditionally,
  before it calls the field, so without CUDA it fails inside nerfstudio with torch's "not compiled with CUDA" /
  "no NVIDIA driver". :func:`check_marching_cubes_device`, called while the surface models are built (the last point
  where our code runs before that), stops such an export first with a message that names ``norm-extract-mesh``. It
  recognises the export by the command line of the process (``ns-export marching-cubes …``), not by inspecting
  its callers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

MARCHING_CUBES_NEEDS_CUDA = (
    "error: nerfstudio's marching-cubes exporter (ns-export marching-cubes) needs CUDA: its multi-resolution marching "
    "cubes (nerfstudio/exporter/marching_cubes.py) moves the grid to the GPU with .cuda(), and torch sees no CUDA "
    "device here. Mesh the run on CPU with norm-extract-mesh instead (eval-mode SDF on a grid, marching cubes, mesh "
    "in the dataset's world coordinates):\n  norm-extract-mesh --load-config {config} --resolution 256 --out mesh.ply"
)


class NeedsCudaError(SystemExit):
    """A nerfstudio tool that cannot run on this machine without CUDA: exits with status 1 and the message, no
    traceback (a ``SystemExit``, as nerfstudio's own exporter checks exit)."""


def marching_cubes_export(argv: Sequence[str] | None = None) -> str | None:
    """When this process is ``ns-export marching-cubes`` (or ``python -m nerfstudio.scripts.exporter
    marching-cubes``): the ``--load-config`` it was given (``"CONFIG"`` if none); None otherwise."""
    args = list(sys.argv if argv is None else argv)
    if len(args) < 2 or Path(args[0]).name not in ("ns-export", "exporter.py") or args[1] != "marching-cubes":
        return None
    for i, arg in enumerate(args):
        if arg.startswith("--load-config="):
            return arg.split("=", 1)[1]
        if arg in ("--load-config", "--load_config") and i + 1 < len(args):
            return args[i + 1]
    return "CONFIG"


def check_marching_cubes_device() -> None:
    """Raise :class:`NeedsCudaError` (pointing at ``norm-extract-mesh``) when ``ns-export marching-cubes`` is loading
    a run on a machine without CUDA; nothing otherwise."""
    if torch.cuda.is_available():
        return
    config = marching_cubes_export()
    if config is not None:
        raise NeedsCudaError(MARCHING_CUBES_NEEDS_CUDA.format(config=config))
