"""Occupancy labels (parity vote), IoU on known shapes, bad meshes, end to end with mesh export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from norm_nerf.tasks.shape import MeshError, ShapeTaskConfig, grid_axes, iou, load_shape, occupancy, run_shape


def _analytic(axes, fn):
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return fn(x, y, z)


def test_sphere_labels_match_analytic_and_sphere_cube_iou() -> None:
    axes = grid_axes(40)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.7)
    occ = occupancy(sphere.vertices, sphere.faces, axes)
    truth = _analytic(axes, lambda x, y, z: x**2 + y**2 + z**2 <= 0.7**2)
    assert iou(torch.from_numpy(occ), torch.from_numpy(truth)) > 0.97
    cube = trimesh.creation.box(extents=(1.4, 1.4, 1.4))
    occ_cube = occupancy(cube.vertices, cube.faces, axes)
    truth_cube = _analytic(axes, lambda x, y, z: (np.abs(x) < 0.7) & (np.abs(y) < 0.7) & (np.abs(z) < 0.7))
    assert np.array_equal(occ_cube, truth_cube)
    # inscribed sphere vs cube: volume ratio pi/6 (up to grid and polyhedron error)
    assert iou(torch.from_numpy(truth), torch.from_numpy(truth_cube)) == pytest.approx(np.pi / 6, abs=0.02)


def test_open_mesh_warns_and_still_labels(tmp_path) -> None:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1], process=False)  # one triangle missing
    path = tmp_path / "open.obj"
    open_box.export(path)
    with pytest.warns(UserWarning, match="not watertight"):
        v, f = load_shape(path)
    occ = occupancy(v, f, grid_axes(16))
    assert occ.mean() > 0.5  # the normalised box fills most of the cube; the vote absorbs the hole


def test_bad_meshes(tmp_path) -> None:
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(MeshError, match="points.obj: the file holds no triangle faces"):
        load_shape(points_only)
    with pytest.raises(MeshError, match="not found"):
        load_shape(tmp_path / "nope.obj")


def test_run_shape_end_to_end(tmp_path) -> None:
    cfg = ShapeTaskConfig().replace(grid=12, batch_size=512, steps=5, export_resolution=16, method="pe+cn", width=32)
    cfg.out, cfg.train.progress = tmp_path / "s", False
    s = run_shape(cfg)
    assert 0.0 <= s["iou"] <= 1.0 and "iou_best_train_mode" in s and 0.0 <= s["iou_train_grid"] <= 1.0
    assert (tmp_path / "s" / "surface.ply").is_file() and (tmp_path / "s" / "slices.png").is_file()


def test_train_grid_metrics_score_the_training_labels() -> None:
    from norm_nerf.tasks.shape import OccupancySignal

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    signal = OccupancySignal(np.asarray(sphere.vertices), np.asarray(sphere.faces), grid=10, batch_size=64)
    exact = signal.labels * 2 - 1  # logits of the labels themselves: a perfect fit of the training grid
    assert signal.train_grid_metrics(exact) == {"iou_train_grid": 1.0, "accuracy_train_grid": 1.0}
    half = exact.clone()
    inside = torch.nonzero(signal.labels[:, 0] > 0.5)[:, 0]
    half[inside[: len(inside) // 2]] = -1.0  # half the inside points missed
    got = signal.train_grid_metrics(half)
    assert got["iou_train_grid"] == pytest.approx((len(inside) - len(inside) // 2) / len(inside))


def _mesh_file(path, mesh):
    mesh.export(path)
    return path


def test_a_mesh_file_runs_and_records_both_ious(tmp_path) -> None:
    path = _mesh_file(tmp_path / "ball.obj", trimesh.creation.icosphere(subdivisions=2, radius=1.0))
    cfg = ShapeTaskConfig().replace(mesh=path, grid=8, batch_size=128, steps=3, export_resolution=8, width=16)
    cfg.out, cfg.train.progress = tmp_path / "s", False
    s = run_shape(cfg)
    assert s["mesh"] == str(path) and 0.0 <= s["iou_train_grid"] <= 1.0 and 0.0 <= s["accuracy_train_grid"] <= 1.0


def test_table_of_mesh_inputs_averages_and_shows_the_training_grid_iou(tmp_path) -> None:
    import json

    from norm_nerf.tasks.table import TableConfig, build_cells, collect

    meshes = (
        _mesh_file(tmp_path / "ball.obj", trimesh.creation.icosphere(subdivisions=2)),
        _mesh_file(tmp_path / "box.stl", trimesh.creation.box()),
    )
    cfg = TableConfig("shape", methods=("pe", "pe+cn"), nets=("1x8",), inputs=meshes, out=tmp_path / "t")
    cells = build_cells(cfg)
    assert sorted({c.input for c in cells}) == ["ball", "box"]
    assert all(c.command[c.command.index("--mesh") + 1] == str(c.input_path) for c in cells)
    for i, c in enumerate(cells):  # stand-in metrics.json: held-out IoU and training-grid IoU per cell
        c.out.mkdir(parents=True)
        record = {
            "iou": 0.9 + 0.01 * i,
            "iou_train_grid": 0.95 + 0.01 * i,
            "curve": {"step": [0], "train_mode_iou": [0]},
        }
        (c.out / "metrics.json").write_text(json.dumps(record))
    results = collect(cfg, cells)
    pe = results["nets"]["1x8"]["pe"]  # cells: ball/pe, ball/pe+cn, box/pe, box/pe+cn
    assert pe["inputs"] == 2 and pe["iou"] == pytest.approx(0.91) and pe["iou_train_grid"] == pytest.approx(0.96)
    assert results["second_metric"] == "iou_train_grid"
    table = (tmp_path / "t" / "table.md").read_text()
    assert "1x8 IoU on the training grid" in table and "| pe | 0.9100 | 0.9600 |" in table
