"""Procedural shapes, mesh loading errors, camera placement and conventions."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from norm_nerf.data.cameras import (
    fibonacci_directions,
    intrinsics,
    look_at_c2w_opengl,
    opengl_c2w_to_opencv_w2c,
    project,
    projection_matrix,
    supersample_intrinsics,
)
from norm_nerf.data.shapes import SHAPES, ground_plane, load_mesh, make_shape, scene_object


@pytest.mark.parametrize("name", SHAPES)
def test_shapes_fill_the_unit_sphere(name: str) -> None:
    mesh = make_shape(name, detail=2)
    v = np.asarray(mesh.vertices)
    assert len(mesh.faces) > 0
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(0.5 * (v.min(0) + v.max(0)), 0.0, atol=1e-12)


def test_unknown_shape_and_bad_detail() -> None:
    with pytest.raises(ValueError, match="unknown shape 'teapot'"):
        make_shape("teapot")
    with pytest.raises(ValueError, match="detail"):
        make_shape("sphere", detail=9)


def test_load_mesh_normalises_and_reports_bad_files(tmp_path) -> None:
    box = trimesh.creation.box(extents=(20.0, 10.0, 4.0))
    box.apply_translation((100.0, -5.0, 3.0))
    box.export(tmp_path / "box.obj")
    obj = scene_object(mesh=tmp_path / "box.obj")
    assert np.linalg.norm(obj.vertices, axis=1).max() == pytest.approx(1.0)

    missing = tmp_path / "nope.obj"
    with pytest.raises(FileNotFoundError, match="nope.obj"):
        load_mesh(missing)
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(10, 3))).export(tmp_path / "cloud.ply")
    with pytest.raises(ValueError, match=r"cloud\.ply.*no triangle faces"):
        load_mesh(tmp_path / "cloud.ply")
    (tmp_path / "garbage.obj").write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="garbage.obj"):
        load_mesh(tmp_path / "garbage.obj")


def test_ground_plane_faces_up() -> None:
    v, f = ground_plane(-0.5, 2.0, cells=3)
    normals = trimesh.Trimesh(v, f, process=False).face_normals
    np.testing.assert_allclose(normals, np.tile([0.0, 0.0, 1.0], (len(f), 1)), atol=1e-12)
    assert len(f) == 18 and np.all(v[:, 2] == -0.5)


def test_fibonacci_directions_band() -> None:
    d = fibonacci_directions(50, 20.0, 65.0)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    elev = np.degrees(np.arcsin(d[:, 2]))
    assert elev.min() > 20.0 and elev.max() < 65.0
    with pytest.raises(ValueError):
        fibonacci_directions(0)


def test_camera_conventions_by_projection() -> None:
    """A look-at camera sees its target at the principal point, world up as image up, camera right as +u."""
    eye, target = np.array([3.0, -2.0, 1.5]), np.array([0.2, 0.1, -0.3])
    c2w = look_at_c2w_opengl(eye, target)
    rot = c2w[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    # OpenGL: the camera looks down its -z axis
    np.testing.assert_allclose(-rot[:, 2], (target - eye) / np.linalg.norm(target - eye))
    R, t = opengl_c2w_to_opencv_w2c(c2w)
    np.testing.assert_allclose(R @ eye + t, 0.0, atol=1e-12)
    K = intrinsics(40, 30, 50.0)
    P = projection_matrix(K, R, t)
    pts = np.stack([target, target + [0, 0, 0.1], target + 0.1 * rot[:, 0], eye + (eye - target)])
    uv, depth = project(P, pts)
    np.testing.assert_allclose(uv[0], [19.5, 14.5], atol=1e-9)  # integer pixel centres: (W-1)/2, (H-1)/2
    assert uv[1, 1] < uv[0, 1]  # world up is image up (v grows downwards)
    assert uv[2, 0] > uv[0, 0] and uv[2, 1] == pytest.approx(uv[0, 1])  # camera right is +u
    assert depth[0] > 0 and depth[3] < 0  # behind the camera
    _, flipped = project(-P, pts)  # the sign of P does not change what is in front
    np.testing.assert_allclose(np.sign(flipped), np.sign(depth))


def test_supersampled_pixels_tile_each_pixel() -> None:
    K = intrinsics(10, 8, 12.0)
    K3 = supersample_intrinsics(K, 3)
    x = np.array([0.3, -0.2, 1.0])
    u, u3 = K @ x, K3 @ x
    # sub-pixel index k3 = 3 j + k maps back to u = j + (k + 0.5) / 3 - 0.5
    np.testing.assert_allclose((u3[:2] - 1.0) / 3.0, u[:2])
