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
  where our code runs before that), stops such an export first with a message that names ``norm-extract-mesh``.
"""

from __future__ import annotations

import sys
from typing import Any

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


def running_nerfstudio_exporter(name: str) -> Any | None:
    """The instance of nerfstudio's exporter class ``name`` (e.g. ``ExportMarchingCubesMesh``) whose method is on the
    call stack, or None (also when nerfstudio's exporter module is not imported: then no export is running)."""
    module = sys.modules.get("nerfstudio.scripts.exporter")
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        return None
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, cls):
            return candidate
        frame = frame.f_back
    return None


def check_marching_cubes_device() -> None:
    """Raise :class:`NeedsCudaError` (pointing at ``norm-extract-mesh``) when ``ns-export marching-cubes`` is loading
    a run on a machine without CUDA; nothing otherwise."""
    if torch.cuda.is_available():
        return
    exporter = running_nerfstudio_exporter("ExportMarchingCubesMesh")
    if exporter is not None:
        raise NeedsCudaError(MARCHING_CUBES_NEEDS_CUDA.format(config=getattr(exporter, "load_config", "CONFIG")))
