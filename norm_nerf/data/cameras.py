"""Camera placement and conventions for the synthetic scenes.

Two conventions meet here:

* OpenGL/Blender camera-to-world (the NeRF-synthetic ``transform_matrix``): the camera looks down its -z axis,
  +y is up in the image, +x right.
* OpenCV world-to-camera (the IDR/NeuS ``world_mat = K [R | t]``): +z forward, +y down, +x right.

Intrinsics ``K`` here put pixel centres at integer coordinates: pixel (row i, column j) is the point
u = j, v = i, as IDR/NeuS generate their rays. nerfstudio's Blender parser instead uses ``cx = W / 2`` with
pixel centres at j + 0.5 - the same rays, since ``cx_here = W / 2 - 0.5 = (W - 1) / 2``.
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float


def fibonacci_directions(
    n: int, min_elevation_deg: float = -90.0, max_elevation_deg: float = 90.0
) -> Float[np.ndarray, "n 3"]:
    """``n`` unit vectors spread evenly (Fibonacci spiral) over the band of elevations; +z is up."""
    if n < 1:
        raise ValueError(f"need at least one direction, got {n}")
    if not -90.0 <= min_elevation_deg < max_elevation_deg <= 90.0:
        raise ValueError(
            f"need -90 <= min_elevation < max_elevation <= 90, got {min_elevation_deg}, {max_elevation_deg}"
        )
    z0, z1 = math.sin(math.radians(min_elevation_deg)), math.sin(math.radians(max_elevation_deg))
    i = np.arange(n, dtype=np.float64)
    z = z0 + (i + 0.5) / n * (z1 - z0)  # equal-area steps in z never touch the poles
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(np.clip(1.0 - z**2, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def look_at_c2w_opengl(
    eye: Float[np.ndarray, "3"], target: Float[np.ndarray, "3"], up: Float[np.ndarray, "3"] | None = None
) -> Float[np.ndarray, "4 4"]:
    """OpenGL/Blender camera-to-world matrix of a camera at ``eye`` looking at ``target`` (camera -z forward)."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    forward = target - eye
    if np.linalg.norm(forward) == 0:
        raise ValueError("camera position equals its target")
    z_axis = -forward / np.linalg.norm(forward)
    x_axis = np.cross(up, z_axis)
    if np.linalg.norm(x_axis) < 1e-9:  # looking straight along `up`: any perpendicular will do
        x_axis = np.cross(np.array([0.0, 1.0, 0.0]), z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x_axis, y_axis, z_axis, eye
    return c2w


def opengl_c2w_to_opencv_w2c(
    c2w: Float[np.ndarray, "4 4"],
) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "3"]]:
    """World-to-camera rotation ``R`` and translation ``t`` (x_cam = R x + t) in OpenCV axes from an OpenGL c2w."""
    rot_gl = np.asarray(c2w, dtype=np.float64)[:3, :3]
    rot_cv_c2w = rot_gl * np.array([1.0, -1.0, -1.0])  # flip the camera's y and z axes
    rot = rot_cv_c2w.T
    return rot, -rot @ np.asarray(c2w, dtype=np.float64)[:3, 3]


def intrinsics(width: int, height: int, focal: float) -> Float[np.ndarray, "3 3"]:
    """Pinhole ``K`` with square pixels, principal point at the image centre, pixel centres at integers."""
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def focal_to_fit_sphere(distance: float, radius: float, pixels: int, margin: float = 1.05) -> float:
    """Focal length (pixels) so a sphere of ``radius`` seen from ``distance`` spans the ``pixels`` side, with margin."""
    if distance <= radius:
        raise ValueError(f"cameras must be outside the sphere: distance {distance} <= radius {radius}")
    half_angle = math.asin(radius / distance) * margin
    return (pixels / 2.0) / math.tan(half_angle)


def projection_matrix(
    K: Float[np.ndarray, "3 3"], R: Float[np.ndarray, "3 3"], t: Float[np.ndarray, "3"]
) -> Float[np.ndarray, "4 4"]:
    """IDR/NeuS ``world_mat``: ``K [R | t]`` padded to 4 x 4 with a last row (0, 0, 0, 1)."""
    P = np.eye(4)
    P[:3, :4] = K @ np.concatenate([R, np.asarray(t).reshape(3, 1)], axis=1)
    return P


def project(
    P: Float[np.ndarray, "4 4"], points: Float[np.ndarray, "n 3"]
) -> tuple[Float[np.ndarray, "n 2"], Float[np.ndarray, "n"]]:  # noqa: F821
    """Pixel coordinates (u = column, v = row) of world points under ``P``, and their depth sign-corrected ``w``.

    ``w > 0`` means in front of the camera (the sign of ``det P[:3, :3]`` makes this independent of P's scale).
    """
    P = np.asarray(P, dtype=np.float64)
    homo = np.asarray(points, dtype=np.float64) @ P[:3, :3].T + P[:3, 3]
    w = homo[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = homo[:, :2] / w[:, None]
    return uv, w * np.sign(np.linalg.det(P[:3, :3]))


def supersample_intrinsics(K: Float[np.ndarray, "3 3"], factor: int) -> Float[np.ndarray, "3 3"]:
    """``K`` of the image ``factor`` times finer whose ``factor`` x ``factor`` sub-pixels tile each pixel."""
    if factor < 1:
        raise ValueError(f"supersampling factor must be >= 1, got {factor}")
    shift = (factor - 1) / 2.0  # sub-pixel k of pixel j sits at u = j + (k + 0.5) / factor - 0.5
    S = np.array([[factor, 0.0, shift], [0.0, factor, shift], [0.0, 0.0, 1.0]])
    return S @ np.asarray(K, dtype=np.float64)
