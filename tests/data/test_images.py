"""Issue 15: one image module (data/images.py): one IMAGE_SUFFIXES in the package, one load_image serving the
tasks and norm-eval-blender, the folder listing shared by the image task, the NeuS reader and norm-eval-blender."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from norm_nerf.data.images import IMAGE_SUFFIXES, bundled_image, list_images, load_image
from norm_nerf.eval.blender_eval import composite
from norm_nerf.eval.blender_eval import load_image as load_eval_image

PACKAGE = Path(__file__).resolve().parents[2] / "norm_nerf"


def test_one_image_suffix_list_in_the_package() -> None:
    defined = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined += [path for t in targets if isinstance(t, ast.Name) and t.id == "IMAGE_SUFFIXES"]
    assert [p.relative_to(PACKAGE).as_posix() for p in defined] == ["data/images.py"]


def test_list_images_by_suffix_any_case_sorted(tmp_path) -> None:
    for name in ("b.PNG", "a.jpg", "c.tif", "notes.txt", "d.webp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tif", "d.webp"]
    assert all(p.suffix.lower() in IMAGE_SUFFIXES for p in list_images(tmp_path))


def test_eval_loader_is_the_one_reader_in_rgb_float64(tmp_path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    gray = np.random.default_rng(1).integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    for name, raw in (("a.png", rgba / 255.0), ("g.png", gray[..., None] / 255.0)):
        loaded = load_eval_image(tmp_path / name)
        assert loaded.dtype == np.float64 and loaded.shape == (5, 6, 3)
        np.testing.assert_array_equal(loaded, composite(raw))  # RGBA on white, gray repeated to RGB
    tensor = load_image(tmp_path / "a.png")
    assert tensor.dtype == torch.float32 and tensor.shape == (5, 6, 3)
    np.testing.assert_allclose(tensor.numpy(), load_eval_image(tmp_path / "a.png"), atol=1e-6)
    assert load_image(tmp_path / "g.png").shape == (5, 6, 1) and load_image(tmp_path / "g.png", rgb=True).shape[-1] == 3


def test_bundled_pictures() -> None:
    assert bundled_image("astronaut", 16).shape == (16, 16, 3)
    camera = bundled_image("camera", 8)
    assert camera.shape == (8, 8, 1) and float(camera.min()) >= 0 and float(camera.max()) <= 1
