"""Surface sampling, thinning and chamfer distances against hand-computed values and plain twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from norm_nerf.data.surface_sampling import sample_surface, surface_points, thin_points
from norm_nerf.eval.chamfer import chamfer, mesh_chamfer, nearest_distances


def _greedy_thinning(points: np.ndarray, min_dist: float, seed: int) -> np.ndarray:
    """Plain twin: the sequential loop of the reference DTU evaluation."""
    n = len(points)
    keep = np.ones(n, dtype=bool)
    for i in np.random.default_rng(seed).permutation(n):
        if keep[i]:
            close = np.linalg.norm(points - points[i], axis=1) <= min_dist
            keep[close] = False
            keep[i] = True
    return keep


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_thinning_equals_the_sequential_greedy_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.uniform(0, 1, size=(400, 3)), np.full((3, 3), 0.5)])  # with exact duplicates
    keep = thin_points(points, 0.12, seed)
    np.testing.assert_array_equal(keep, _greedy_thinning(points, 0.12, seed))
    kept = points[keep]
    gaps = np.linalg.norm(kept[:, None] - kept[None], axis=-1) + np.eye(len(kept)) * 9
    assert gaps.min() > 0.12  # kept points are more than min_dist apart
    assert nearest_distances(points[~keep], kept).max() <= 0.12  # every dropped point has a kept one close by


def test_sample_surface_density_and_placement() -> None:
    box = trimesh.creation.box(extents=(2.0, 3.0, 4.0))  # area 2 (6 + 8 + 12) = 52
    pts = sample_surface(box.vertices, box.faces, 0.05)
    assert len(pts) == pytest.approx(52 / 0.05**2, rel=0.05)  # about one point per density^2
    on_a_face = np.isclose(np.abs(pts), [1.0, 1.5, 2.0]).any(axis=1)
    assert on_a_face.all() and (np.abs(pts) <= np.array([1.0, 1.5, 2.0]) + 1e-12).all()
    np.testing.assert_array_equal(pts, sample_surface(box.vertices, box.faces, 0.05, max_candidates=1000))
    with pytest.raises(ValueError, match="density"):
        sample_surface(box.vertices, box.faces, 0.0)
    with pytest.raises(ValueError, match="right units"):  # refused before allocating anything
        sample_surface(box.vertices * 1000.0, box.faces, 0.05, max_points=10**6)


def test_nearest_distances_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(200, 3))
    brute = np.linalg.norm(a[:, None] - b[None], axis=-1).min(axis=1)
    np.testing.assert_allclose(nearest_distances(a, b), brute, rtol=1e-12)


def test_mesh_against_itself_is_zero_and_a_retriangulated_copy_is_below_the_spacing() -> None:
    sphere = trimesh.creation.icosphere(3, radius=10.0)
    assert mesh_chamfer(sphere, sphere, 0.2).overall == 0.0
    finer = sphere.subdivide()  # the same surface, other sample positions
    res = mesh_chamfer(finer, sphere, 0.2)
    assert 0.0 < res.mean_d2s < 0.2 and 0.0 < res.mean_s2d < 0.2


def test_concentric_spheres_differ_by_delta() -> None:
    r, delta = 10.0, 1.0
    inner, outer = trimesh.creation.icosphere(4, radius=r), trimesh.creation.icosphere(4, radius=r + delta)
    res = mesh_chamfer(outer, inner, 0.2)
    for value in (res.mean_d2s, res.mean_s2d, res.overall):
        assert value == pytest.approx(delta, rel=0.01)


def test_translated_cube_by_hand() -> None:
    """Cube of side L and its copy moved by t along x (t <= L / 2), uniform area sampling.

    Per face of A (each 1/6 of the area), distance from a point to the moved cube B:
    * face x = -L/2: outside B, straight onto B's face x = -L/2 + t: exactly t.
    * face x = +L/2: inside B; nearest boundary is min(t, a, b) with a = L/2 - |y|, b = L/2 - |z| uniform on
      [0, h], h = L/2: E = int_0^t (1 - s/h)^2 ds = t - t^2/h + t^3/(3 h^2) = t - 2t^2/L + 4t^3/(3L^2).
    * four side faces: on B's side face except a strip x < -L/2 + t of width t where the distance falls
      linearly from t to 0: mean over the face t^2 / (2L), four faces 2t^2/L.
    Sum / 6: (2t + 4t^3/(3L^2)) / 6 = t/3 + 2t^3/(9L^2) (the t^2 terms cancel). B -> A is the mirror case.
    """
    L, t = 10.0, 3.0
    a = trimesh.creation.box(extents=(L, L, L))
    b = a.copy()
    b.apply_translation((t, 0.0, 0.0))
    expected = t / 3 + 2 * t**3 / (9 * L**2)  # 1.06
    res = mesh_chamfer(a, b, 0.05)
    # sampling adds about +1 % (side-face samples of A and B do not coincide); t/3 alone would be -5.7 %
    for value in (res.mean_d2s, res.mean_s2d, res.overall):
        assert value == pytest.approx(expected, rel=0.025)


def test_max_dist_leaves_far_points_out() -> None:
    gt = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    data = np.array([[0.0, 0, 1.0], [10.0, 0, 2.0], [50.0, 0, 0]])  # the last is 40 away from everything
    res = chamfer(data, gt, max_dist=20.0)
    assert res.mean_d2s == pytest.approx(1.5) and res.counts["d2s_used"] == 2
    assert res.mean_s2d == pytest.approx(1.5) and res.overall == pytest.approx(1.5)
    assert chamfer(data, gt).mean_d2s == pytest.approx((1 + 2 + 40) / 3)
    assert math.isnan(chamfer(data + 100.0, gt, max_dist=20.0).mean_d2s)
    with pytest.raises(ValueError, match="non-empty"):
        chamfer(np.zeros((0, 3)), gt)


def test_surface_points_are_deterministic_and_seeded() -> None:
    sphere = trimesh.creation.icosphere(2, radius=5.0)
    a = surface_points(sphere.vertices, sphere.faces, 0.3, seed=0)
    np.testing.assert_array_equal(a, surface_points(sphere.vertices, sphere.faces, 0.3, seed=0))
    b = surface_points(sphere.vertices, sphere.faces, 0.3, seed=1)
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_nearest_distances_stop_at_max_dist() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(size=(500, 3))
    query = np.concatenate([rng.uniform(size=(50, 3)), rng.uniform(size=(50, 3)) + 10.0])
    exact = nearest_distances(query, ref)
    bounded = nearest_distances(query, ref, max_dist=2.0)
    np.testing.assert_array_equal(bounded[exact < 2.0], exact[exact < 2.0])
    assert np.isinf(bounded[exact >= 2.0]).all() and (exact >= 2.0).sum() == 50
