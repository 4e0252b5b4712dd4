"""Synthetic scenes with known geometry: procedural meshes, exact ray casting, Blender and NeuS/DTU writers.

Modules (import the one you need; nothing heavy is imported here):

* :mod:`norm_nerf.data.shapes` — procedural meshes and mesh files, normalised into the unit sphere.
* :mod:`norm_nerf.data.cameras` — camera placement, intrinsics, OpenGL/OpenCV conventions.
* :mod:`norm_nerf.data.raycast` — exact, deterministic ray/triangle intersection (Moller-Trumbore).
* :mod:`norm_nerf.data.texture` — high-frequency procedural 3-D texture.
* :mod:`norm_nerf.data.render` — texture x Lambertian shading, coverage and object masks.
* :mod:`norm_nerf.data.blender` / :mod:`norm_nerf.data.dtu` — the two dataset layouts.
"""
