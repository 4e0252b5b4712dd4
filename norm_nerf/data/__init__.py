"""Inputs and synthetic scenes with known geometry: image and mesh files, exact ray casting, scene writers.

Modules (import the one you need; nothing heavy is imported here):

* :mod:`norm_nerf.data.images` — the image reader (which files are images, floats in [0, 1], resizing, bundled
  pictures).
* :mod:`norm_nerf.data.shapes` — procedural meshes and the mesh-file reader, normalised into the unit sphere.
* :mod:`norm_nerf.data.cameras` — camera placement, intrinsics, OpenGL/OpenCV conventions.
* :mod:`norm_nerf.data.raycast` — exact, deterministic ray/triangle intersection (Moller-Trumbore).
* :mod:`norm_nerf.data.texture` — high-frequency procedural 3-D texture.
* :mod:`norm_nerf.data.render` — texture x Lambertian shading, coverage and object masks.
* :mod:`norm_nerf.data.surface_sampling` — points on a mesh surface.
* :mod:`norm_nerf.data.blender` / :mod:`norm_nerf.data.dtu` — the two dataset layouts;
  :mod:`norm_nerf.data.neus_layout` reads the NeuS one, :mod:`norm_nerf.data.derived` caches downscaled images.
"""
