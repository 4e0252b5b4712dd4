"""The DTU protocol end to end on a generated scene, and each step against hand-made cases."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import trimesh

from norm_nerf.data.cameras import intrinsics, projection_matrix
from norm_nerf.eval.dtu import (
    DTUGroundTruth,
    NeuSViews,
    ObsVolume,
    bbox_diagonal,
    cull_vertices,
    dilate,
    dtu_chamfer,
    evaluate_dtu_mesh,
    size_mismatch,
)

RADIUS_MM = 50.0  # unit sphere -> 50 mm; the object (a sphere) has radius 0.6 -> 30 mm (tests/conftest.py)
DENSITY = 0.5  # the ground truth's point spacing in dtu_scan_protocol


@pytest.fixture(scope="module")
def scan(dtu_scan_protocol):
    """The scan folder (a 30 mm sphere, ground truth at ``DENSITY``), its views and its ground truth."""
    return dtu_scan_protocol, NeuSViews.load(dtu_scan_protocol), DTUGroundTruth.load(dtu_scan_protocol / "gt", 1)


def _object(scan_dir, name: str = "object_normalized.ply") -> trimesh.Trimesh:
    return trimesh.load(scan_dir / "gt" / name, process=False)


def _evaluate(mesh, views, gt, **kw):
    return evaluate_dtu_mesh(mesh.vertices, mesh.faces, views, gt, density=DENSITY, **kw)


def test_ground_truth_against_itself_is_zero(scan) -> None:
    scan_dir, views, gt = scan
    res, (kept_v, _) = _evaluate(_object(scan_dir), views, gt)
    assert len(kept_v) == res.counts["mesh_vertices"]  # culling keeps the object
    assert res.overall < 1e-4 and res.counts["d2s_used"] == res.counts["data"]
    world, _ = _evaluate(_object(scan_dir, "object_world.ply"), views, gt, mesh_in_world=True)
    assert world.overall < 1e-4


def test_offset_surface_gives_the_offset(scan) -> None:
    scan_dir, views, gt = scan
    mesh = _object(scan_dir)
    delta_mm = 1.0
    mesh.vertices = mesh.vertices * (30.0 + delta_mm) / 30.0  # sphere of 30 mm -> 31 mm
    res, _ = _evaluate(mesh, views, gt)
    assert res.mean_d2s == pytest.approx(delta_mm, rel=0.03)
    assert res.mean_s2d == pytest.approx(delta_mm, rel=0.03)
    assert res.overall == pytest.approx(delta_mm, rel=0.03)


def test_culling_removes_a_blob_outside_the_masks(scan) -> None:
    scan_dir, views, gt = scan
    obj = _object(scan_dir)
    blob = trimesh.creation.icosphere(2, radius=0.05)
    blob.apply_translation((0.0, 0.0, 0.85))  # 10 mm above the object's top, inside the 15 mm ObsMask margin
    mesh = trimesh.util.concatenate([obj, blob])
    res, (kept_v, _) = _evaluate(mesh, views, gt)
    assert len(kept_v) == len(obj.vertices)  # every blob vertex is gone, every object vertex stays
    blob_top_mm = 50.0 + RADIUS_MM * 0.9  # centre_z + 0.9 r
    assert kept_v[:, 2].max() < blob_top_mm - 10.0
    assert res.overall < 1e-4 and res.d2s.max() < 1e-3
    # without culling (all-foreground masks) the blob is evaluated: hundreds of points about 10-15 mm off
    no_masks = dataclasses.replace(views, masks=[np.ones_like(m) for m in views.masks])
    uncut, _ = _evaluate(mesh, no_masks, gt)
    assert uncut.counts["culled_vertices"] == len(mesh.vertices)
    assert (uncut.d2s > 9.0).sum() > 100 and uncut.mean_d2s > 0.05


def test_mesh_in_the_wrong_coordinates_is_reported(scan) -> None:
    scan_dir, views, gt = scan
    with pytest.raises(ValueError, match="mesh-in-world"):
        _evaluate(_object(scan_dir, "object_world.ply"), views, gt)  # world mesh read as normalised


def test_protocol_steps_by_hand() -> None:
    """Box [BB0 - patch, BB1 + 2 patch) for completeness, ObsMask for accuracy, plane for completeness, cap."""
    mask = np.ones((11, 11, 11), dtype=bool)
    mask[8, 8, 8] = False  # voxel centred at (3, 3, 3)
    obs = ObsVolume(np.array([[-5.0, -5, -5], [5, 5, 5]]), 1.0, mask)
    stl = np.array([[0.0, 0, 1], [1, 0, 1], [0, 0, -1]])  # the last one is below the plane z = 0
    gt = DTUGroundTruth(stl, obs, np.array([0.0, 0, 1, 0]))
    data = np.array(
        [
            [0.0, 0, 1.5],  # 0.5 from the GT
            [1.0, 0, 1.5],  # 0.5 from the GT
            [3.0, 3, 3],  # in the box, not observed: completeness only
            [4.9, 4.9, -4.9],  # observed, 8.6 from the GT: above max_dist = 5
            [20.0, 0, 0],  # in [BB0 - 10, BB1 + 20): completeness only (outside the ObsMask grid)
            [-20.0, 0, 0],  # outside the box
        ]
    )
    res = dtu_chamfer(data, gt, max_dist=5.0, patch=10.0)
    assert res.counts["data_in_box"] == 5 and res.counts["data_in_obs"] == 3
    assert res.counts["d2s_used"] == 2 and res.mean_d2s == pytest.approx(0.5)
    assert res.counts["stl_above"] == 2 and res.mean_s2d == pytest.approx(0.5)  # (0, 0, -1) would add 2.5
    assert res.overall == pytest.approx(0.5)
    assert math.isnan(dtu_chamfer(data[2:5], gt, max_dist=0.1, patch=10.0).mean_d2s)


def test_cull_vertices_by_hand() -> None:
    """Remove a vertex that lands off the mask in any view where it is strictly inside the image."""
    W, H = 10, 8
    P = projection_matrix(intrinsics(W, H, 10.0), np.eye(3), np.zeros(3))  # u = 10 x / z + 4.5, v = 10 y / z + 3.5
    mask = np.zeros((H, W), dtype=bool)
    mask[2:6, 3:7] = True
    pts = np.array(
        [
            [-0.05, -0.05, 1.0],  # (4, 3): on the mask -> keep
            [0.35, -0.05, 1.0],  # (8, 3): off the mask -> drop
            [0.9, 0.0, 1.0],  # u = 13.5: outside the image, no vote -> keep
            [0.0, 0.0, -1.0],  # behind the camera -> keep
            [-0.45, 0.0, 1.0],  # u = 0: on the border, not strictly inside -> keep
        ]
    )
    np.testing.assert_array_equal(cull_vertices(pts, P[None], [mask]), [True, False, True, True, True])
    other = np.zeros((H, W), dtype=bool)  # a second view where nothing is foreground
    np.testing.assert_array_equal(cull_vertices(pts, np.stack([P, P]), [mask, other]), [False, False, True, True, True])


@pytest.mark.parametrize("radius", [1, 3, 6])
def test_dilation_equals_skimage_disk(radius: int) -> None:
    from skimage.morphology import dilation, disk

    mask = np.random.default_rng(radius).uniform(size=(40, 50)) > 0.97
    np.testing.assert_array_equal(dilate(mask, radius), dilation(mask, disk(radius)).astype(bool))


def test_missing_and_inconsistent_inputs(scan, tmp_path) -> None:
    scan_dir, _, _ = scan
    with pytest.raises(FileNotFoundError, match=r"stl002_total\.ply"):
        DTUGroundTruth.load(scan_dir / "gt", 2)
    with pytest.raises(FileNotFoundError, match="cameras_sphere.npz"):
        NeuSViews.load(tmp_path)
    cams = dict(np.load(scan_dir / "cameras_sphere.npz"))
    np.savez(tmp_path / "cameras_sphere.npz", **cams)
    (tmp_path / "mask").mkdir()
    with pytest.raises(ValueError, match="0 mask PNGs for 5 cameras"):
        NeuSViews.load(tmp_path)


def test_wrong_coordinates_error_names_the_mesh_and_its_size(scan) -> None:
    scan_dir, views, gt = scan
    mesh = _object(scan_dir, "object_world.ply")
    with pytest.raises(ValueError, match=r"^recon\.ply: no vertex lies in the evaluation box .* the mesh looks off: "
                                         r"its bounding box .* is 50 times larger than the ground truth"):  # fmt: skip
        _evaluate(mesh, views, gt, mesh_name="recon.ply")  # world mesh (mm) read as normalised: x50 mm again


def test_size_mismatch_names_the_odd_one() -> None:
    unit = np.array([[0.0, 0, 0], [1, 1, 1]])
    assert bbox_diagonal(unit) == pytest.approx(3**0.5)
    assert size_mismatch("a.ply", unit, "b.ply", unit * 5) == ""
    both = size_mismatch("a.ply", unit, "b.ply", unit * 1000, trusted_reference=False)
    assert "the bounding box of b.ply (diagonal 1732) is 1e+03 times larger than that of a.ply (1.732)" in both
    assert "a.ply looks off" in size_mismatch("a.ply", unit * 1000, "b.ply", unit) and "1e+03 times larger" in (
        size_mismatch("a.ply", unit * 1000, "b.ply", unit)
    )
    assert "1e+03 times smaller" in size_mismatch("a.ply", unit, "b.ply", unit * 1000)
