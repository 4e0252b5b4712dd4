"""Exact ray casting: hand-computed hits, binned camera casting equals brute force, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from norm_nerf.data.cameras import focal_to_fit_sphere, intrinsics, look_at_c2w_opengl, opengl_c2w_to_opencv_w2c
from norm_nerf.data.raycast import cast_camera, cast_rays, pixel_directions
from norm_nerf.data.shapes import ground_plane, make_shape


def _camera(eye, width, height):
    R, t = opengl_c2w_to_opencv_w2c(look_at_c2w_opengl(np.asarray(eye, dtype=float), np.zeros(3)))
    K = intrinsics(width, height, focal_to_fit_sphere(float(np.linalg.norm(eye)), 1.0, min(width, height)))
    return K, R, t


def test_single_triangle_by_hand() -> None:
    v = np.array([[0.0, 0.0, 5.0], [2.0, 0.0, 5.0], [0.0, 2.0, 5.0]])
    f = np.array([[0, 1, 2]])
    origins = np.zeros((3, 3))
    dirs = np.array([[0.5, 0.5, 5.0], [3.0, 3.0, 5.0], [-0.5, -0.5, -5.0]])  # hit, miss (outside), miss (behind)
    hits = cast_rays(origins, dirs, v, f)
    assert hits.face.tolist() == [0, -1, -1]
    assert hits.t[0] == pytest.approx(1.0)  # o + 1 * d = (0.5, 0.5, 5)
    np.testing.assert_allclose(hits.bary[0], [0.25, 0.25])  # (0.5, 0.5) = 0.25 e1 + 0.25 e2
    assert np.isinf(hits.t[1:]).all()


def test_depth_of_a_box_face_facing_the_camera() -> None:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    K, R, t = _camera([3.0, 0.0, 0.0], 21, 21)
    hits = cast_camera(box.vertices, box.faces, K, R, t, 21, 21)
    depth = hits.t.reshape(21, 21)
    assert depth[10, 10] == pytest.approx(2.5)  # face x = 0.5 seen from x = 3
    assert np.isinf(depth[0, 0])  # corner pixels look past the box
    covered = np.isfinite(depth)
    np.testing.assert_allclose(depth[covered], 2.5)  # a face perpendicular to the axis: constant z-depth


@pytest.mark.parametrize("eye", [(2.2, -1.5, 1.0), (0.0, 0.3, -3.0), (1.4, 1.4, 0.2)])
def test_binned_camera_casting_equals_brute_force(eye) -> None:
    torus = make_shape("torus", detail=2)
    plane_v, plane_f = ground_plane(-0.4, 1.8, cells=3)  # large triangles, some crossing the image border
    vertices = np.concatenate([torus.vertices, plane_v])
    faces = np.concatenate([torus.faces, plane_f + len(torus.vertices)])
    W, H = 23, 17
    K, R, t = _camera(eye, W, H)
    fast = cast_camera(vertices, faces, K, R, t, W, H)
    slow = cast_rays(-R.T @ t, pixel_directions(K, R, W, H), vertices, faces)
    assert fast.hit.sum() > 50
    np.testing.assert_array_equal(fast.face, slow.face)
    np.testing.assert_array_equal(fast.t, slow.t)
    np.testing.assert_array_equal(fast.bary, slow.bary)
    # chunking does not change anything (ties go to the lower face index)
    tiny_chunks = cast_camera(vertices, faces, K, R, t, W, H, max_pairs=97)
    np.testing.assert_array_equal(tiny_chunks.face, fast.face)
    np.testing.assert_array_equal(tiny_chunks.t, fast.t)


def test_triangles_behind_and_across_the_camera() -> None:
    """A plane through the camera's position is partly behind it; binning must not lose its hits."""
    v, f = ground_plane(0.0, 10.0, cells=2)
    R, t = opengl_c2w_to_opencv_w2c(look_at_c2w_opengl(np.array([0.0, -1.0, 1.0]), np.array([0.0, 3.0, 0.0])))
    K = intrinsics(16, 12, 10.0)
    fast = cast_camera(v, f, K, R, t, 16, 12)
    slow = cast_rays(-R.T @ t, pixel_directions(K, R, 16, 12), v, f)
    np.testing.assert_array_equal(fast.face, slow.face)
    assert 0 < fast.hit.sum() < 16 * 12  # the ground is seen below the horizon only


def test_a_few_thousand_faces_at_200px_take_well_under_seconds() -> None:
    sphere = make_shape("bumpy", detail=4)  # 5120 faces
    K, R, t = _camera([0.5, -3.5, 1.5], 200, 200)
    cast_camera(sphere.vertices, sphere.faces, K, R, t, 8, 8)  # warm-up
    start = time.perf_counter()
    hits = cast_camera(sphere.vertices, sphere.faces, K, R, t, 200, 200)
    assert time.perf_counter() - start < 3.0
    again = cast_camera(sphere.vertices, sphere.faces, K, R, t, 200, 200)
    np.testing.assert_array_equal(hits.t, again.t)
