"""Issue 15: one image module (data/images.py): one IMAGE_SUFFIXES in the package, one load_image serving the
tasks and norm-eval-blender, the folder listing shared by the image task, the NeuS reader and norm-eval-blender."""

from __future__ import annotations

import ast
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from norm_nerf.data.images import IMAGE_SUFFIXES, ImageError, bundled_image, list_images, load_image, read_image
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


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour): gray, gray+alpha, RGB or RGBA."""
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # filter type 0 on every row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_is_read_at_full_depth(tmp_path, channels: int) -> None:
    """Values 257 k + 1 differ from 8-bit values only in the low byte: an 8-bit reading would give k / 255."""
    k = np.random.default_rng(channels).integers(0, 255, (5, 6, channels))
    pixels = (257 * k + 1).astype(np.uint16)
    path = write_png16(tmp_path / "deep.png", pixels)
    np.testing.assert_array_equal(read_image(path, dtype=np.float64), pixels / 65535.0)
    assert load_image(path).shape == (5, 6, 1 if channels <= 2 else 3)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_color_tiff_is_read_at_full_depth(tmp_path, channels: int) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = (257 * np.random.default_rng(channels).integers(0, 255, (5, 6, channels)) + 1).astype(np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", pixels, photometric="rgb", extrasamples=["unassalpha"][: channels - 3])
    np.testing.assert_array_equal(read_image(tmp_path / "deep.tif", dtype=np.float64), pixels / 65535.0)


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("render.exr", b"\x76\x2f\x31\x01" + bytes(60), "OpenEXR images"),
        ("sky.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + bytes(64), "Radiance HDR images"),
        ("renamed.png", b"\x76\x2f\x31\x01" + bytes(60), "OpenEXR images"),
        ("scan.xyz", b"whatever", "'.xyz' files"),
    ],
    ids=["exr", "hdr", "exr-named-png", "unknown-suffix"],
)
def test_unsupported_formats_are_named_with_the_supported_ones(tmp_path, name: str, content: bytes, what: str) -> None:
    (tmp_path / name).write_bytes(content)
    supported = ", ".join(IMAGE_SUFFIXES)
    message = f"{tmp_path / name}: {what} are not supported; supported formats: {supported} "
    with pytest.raises(ImageError, match="^" + re.escape(message)):
        read_image(tmp_path / name)
