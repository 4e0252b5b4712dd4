"""Issue 14: image files load by stated rules (palette/CMYK -> RGB, integer / type max, float [0, 1] or refused),
bad pixels and tiny images are refused naming the file, same-stem images keep separate output folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from norm_nerf.data.images import ImageError, load_image, pil_array, read_image
from norm_nerf.eval.blender_eval import load_image as load_eval_image
from norm_nerf.tasks.image import ImageTaskConfig, image_output_names, run_image

RNG = np.random.default_rng(0)


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_palette_png_loads_as_rgb_not_indices(tmp_path) -> None:
    colours = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0], [255, 255, 255]], dtype=np.uint8)
    idx = RNG.integers(0, 4, (6, 5))
    rgb = colours[idx]
    pal = Image.fromarray(rgb).quantize(colors=4)
    assert pal.mode == "P"
    pal.save(tmp_path / "p.png")
    img = load_image(tmp_path / "p.png")
    assert img.shape == (6, 5, 3)
    torch.testing.assert_close(img, torch.from_numpy(rgb).float() / 255)
    np.testing.assert_allclose(load_eval_image(tmp_path / "p.png"), rgb / 255.0)


def test_palette_with_transparency_is_composited_on_white(tmp_path) -> None:
    pal = Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").convert("P")
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "t.png", transparency=0)
    img = load_image(tmp_path / "t.png")
    torch.testing.assert_close(img, torch.ones(4, 4, 3))  # fully transparent black -> white


def test_cmyk_jpeg_converts_to_rgb(tmp_path) -> None:
    rgb = np.full((8, 8, 3), (200, 40, 10), dtype=np.uint8)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=100)
    with Image.open(tmp_path / "c.jpg") as reread:
        assert reread.mode == "CMYK"
        expected = np.asarray(reread.convert("RGB")).astype(np.float32) / 255
    img = load_image(tmp_path / "c.jpg")
    assert img.shape == (8, 8, 3)  # not treated as RGBA (4 channels composited on white)
    np.testing.assert_allclose(img.numpy(), expected, atol=1e-6)
    assert abs(float(img[..., 0].mean()) - 200 / 255) < 0.05
    assert load_eval_image(tmp_path / "c.jpg").shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("mode", "channels"),
    [("PA", 4), ("LA", 2), ("La", 2), ("RGBa", 4), ("I;16", 1), ("I", 1), ("F", 1), ("YCbCr", 3), ("1", 1)],
)
def test_pil_modes_give_rgb_or_gray(tmp_path, mode: str, channels: int) -> None:
    base = Image.fromarray(_rgb(4, 4))
    if mode == "I;16":
        img = Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(np.full((4, 4), 1000, dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray(np.full((4, 4), 0.25, dtype=np.float32))
    elif mode == "PA":
        img = base.convert("P").convert("PA")
    else:
        img = base.convert(mode)
    assert img.mode == mode
    arr = pil_array(img, tmp_path / "x")
    assert (arr.shape[-1] if arr.ndim == 3 else 1) == channels


def test_16bit_and_32bit_integer_images_divide_by_16bit_max(tmp_path) -> None:
    Image.fromarray(np.full((4, 4), 1000, dtype=np.int32)).save(tmp_path / "i.tif")
    torch.testing.assert_close(load_image(tmp_path / "i.tif"), torch.full((4, 4, 1), 1000 / 65535))
    Image.fromarray(np.full((4, 4), -3, dtype=np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(ImageError, match=r"neg.tif: int32 integer pixel values span \[-3, -3\]"):
        load_image(tmp_path / "neg.tif")


def test_float_tiff_outside_unit_range_is_refused_with_its_range(tmp_path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", np.linspace(0, 1000, 20, dtype=np.float32).reshape(4, 5))
    with pytest.raises(ImageError, match=r"f.tif: float pixel values span \[0, 1000\].*rescale"):
        load_image(tmp_path / "f.tif")
    notes: list[str] = []
    scaled = load_image(tmp_path / "f.tif", out_of_range="minmax", notes=notes)
    assert float(scaled.min()) == 0.0 and float(scaled.max()) == 1.0
    assert "min-max scaled" in notes[0]
    tifffile.imwrite(tmp_path / "ok.tif", np.full((4, 5), 0.5, dtype=np.float32))
    torch.testing.assert_close(load_image(tmp_path / "ok.tif"), torch.full((4, 5, 1), 0.5))


def test_multichannel_float_tiff_via_tifffile(tmp_path) -> None:
    import tifffile

    rgb = RNG.random((4, 5, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # float64 RGB: Pillow cannot open it
    torch.testing.assert_close(load_image(tmp_path / "rgb.tif"), torch.from_numpy(rgb).float())


def test_nan_and_inf_pixels_are_refused_naming_the_file(tmp_path) -> None:
    import tifffile

    arr = np.full((4, 5), 0.5, dtype=np.float32)
    arr[1, 1], arr[2, 2] = np.nan, np.inf
    tifffile.imwrite(tmp_path / "nan.tif", arr)
    with pytest.raises(ImageError, match="nan.tif: image contains 2 NaN or infinite values"):
        load_image(tmp_path / "nan.tif")
    with pytest.raises(ImageError, match="nan.tif: image contains 2 NaN"):
        load_eval_image(tmp_path / "nan.tif")


def test_tiny_images_are_refused_naming_the_file(tmp_path) -> None:
    Image.fromarray(_rgb(1, 9)).save(tmp_path / "line.png")
    with pytest.raises(ImageError, match=r"line.png: image is 9x1 pixels; every side must be at least 3"):
        load_image(tmp_path / "line.png")
    with pytest.raises(ImageError, match="line.png: image is 9x1"):
        load_eval_image(tmp_path / "line.png")
    Image.fromarray(_rgb(4, 40)).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match=r"wide.png: image is 10x1 pixels after --resize 10 \(from 40x4\)"):
        load_image(tmp_path / "wide.png", resize=10)
    cfg = ImageTaskConfig().replace(
        image=tmp_path / "line.png", steps=1, depth=1, width=4, out=tmp_path / "o", progress=False
    )
    with pytest.raises(ImageError, match="line.png"):
        run_image(cfg)


def test_same_stem_images_get_distinct_output_folders(tmp_path) -> None:
    from pathlib import Path

    names = image_output_names([Path("a.jpg"), Path("a.png"), Path("a_png.bmp"), Path("b.png"), Path("B.tif")])
    assert names == {
        Path("a.jpg"): "a_jpg",
        Path("a.png"): "a_png",
        Path("a_png.bmp"): "a_png_2",
        Path("b.png"): "b_png",
        Path("B.tif"): "B_tif",
    }
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_rgb(8, 8)).save(folder / "a.png")
    Image.fromarray(_rgb(8, 8)).save(folder / "a.jpg")
    Image.fromarray(_rgb(8, 8)).save(folder / "c.png")
    cfg = ImageTaskConfig().replace(
        image=folder, resize=None, method="relu", depth=1, width=4, steps=2, out=tmp_path / "o"
    )
    cfg.train.progress = False
    summary = run_image(cfg)
    assert summary["images"] == 3
    outs = {name: r["out"] for name, r in summary["per_image"].items()}
    assert len(set(outs.values())) == 3
    for sub, name in {"a_png": "a.png", "a_jpg": "a.jpg", "c": "c.png"}.items():
        saved = json.loads((tmp_path / "o" / sub / "metrics.json").read_text())
        assert saved["image"] == str(folder / name)


def test_read_image_keeps_alpha_for_the_caller(tmp_path) -> None:
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (3, 3, 4)
