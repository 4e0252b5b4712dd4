"""``norm-blender``: nerfstudio's Blender parser with the input checked first, so a broken dataset gives one
clear error naming the file (missing folder or split file, no frames, missing or unreadable images, images
of different sizes, malformed poses) instead of an IndexError or a tensor-stacking error deep in training.

Poses must be 4x4 lists of finite numbers whose 3x3 block is a rotation: orthonormal within
``ROTATION_TOLERANCE`` (max |R^T R - I|; rounding to 4 decimals passes, any scale or shear does not) with
determinant +1. ``camera_angle_x`` (and ``camera_angle_y`` when present) must be finite radians in (0, pi); a value
that fits degrees is reported as such. ``fl_x``/``fl_y``, when present, must be finite and > 0 (pixels; nerfstudio's
Blender parser uses only ``camera_angle_x``).

``downscale_factor`` > 1 trains on smaller images (e.g. lego at 100x100 with 8): premultiplied-alpha block averages
are written once, with a copy of the split file, under ``cache_dir`` (never into the data folder); nerfstudio's parser
then derives the focal length from the smaller width, so every ray still passes through the same scene point."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nerfstudio.data.dataparsers.blender_dataparser import Blender, BlenderDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from norm_nerf.data import derived

DEFAULT_CACHE_ROOT = Path("outputs/cache/norm-blender")
ROTATION_TOLERANCE = 0.01
"""Largest |R^T R - I| entry accepted for the rotation block of a pose (Blender camera poses are rigid)."""


class BlenderDataError(ValueError):
    """A problem with a dataset in the Blender (NeRF-synthetic) layout."""


def check_blender_split(data: Path, split: str) -> list[Path]:
    """Validate ``transforms_{split}.json`` and its images; returns the image paths."""
    from PIL import Image, UnidentifiedImageError

    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: data folder not found")
    meta_path = data / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing (the Blender layout needs transforms_{{train,val,test}}.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BlenderDataError(f"{meta_path}: not valid JSON ({err})") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not frames:
        raise BlenderDataError(f"{meta_path}: has no frames")
    if not isinstance(frames, list):
        raise BlenderDataError(f"{meta_path}: frames must be a list, got {type(frames).__name__}")
    if "camera_angle_x" not in meta:
        raise BlenderDataError(f"{meta_path}: has no camera_angle_x")
    check_intrinsics(meta, meta_path)
    paths, sizes = [], {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise BlenderDataError(f"{meta_path}: frame {i} is {_short(frame)}, not an object")
        if not isinstance(frame.get("file_path"), str):
            raise BlenderDataError(f"{meta_path}: frame {i} has no file_path (a string like ./train/r_{i})")
        check_pose(frame.get("transform_matrix"), f"{meta_path}: frame {i} ({frame['file_path']})")
        path = data / Path(frame["file_path"].replace("./", "") + ".png")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of frame {i} in {meta_path.name} not found")
        try:
            with Image.open(path) as img:
                sizes.setdefault(img.size, path)
        except (UnidentifiedImageError, OSError):
            raise BlenderDataError(f"{path}: not a readable image") from None
        paths.append(path)
    if len(sizes) > 1:
        (s1, p1), (s2, p2) = list(sizes.items())[:2]
        raise BlenderDataError(f"images of different sizes in {meta_path.name}: {p1} is {s1}, {p2} is {s2}")
    return paths


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_pose(pose: Any, where: str) -> np.ndarray:
    """A frame's ``transform_matrix`` as a float array; BlenderDataError (prefixed with ``where``) unless it is a
    4x4 list of finite numbers whose 3x3 block is a rotation (orthonormal within ``ROTATION_TOLERANCE``, det +1)."""
    if not (isinstance(pose, list) and len(pose) == 4 and all(isinstance(r, list) and len(r) == 4 for r in pose)):
        raise BlenderDataError(f"{where}: transform_matrix must be a 4x4 list of numbers, got {_short(pose)}")
    for r, row in enumerate(pose):
        for c, value in enumerate(row):
            if not _is_number(value):
                raise BlenderDataError(f"{where}: transform_matrix[{r}][{c}] is {_short(value)}, not a number")
    matrix = np.asarray(pose, dtype=np.float64)
    if not np.isfinite(matrix).all():
        bad = [f"[{r}][{c}]" for r, c in zip(*np.nonzero(~np.isfinite(matrix)))]
        raise BlenderDataError(f"{where}: transform_matrix has non-finite values (NaN/inf) at {', '.join(bad[:4])}")
    rotation = matrix[:3, :3]
    error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    det = float(np.linalg.det(rotation))
    if error > ROTATION_TOLERANCE:
        raise BlenderDataError(
            f"{where}: the rotation (3x3 block) of transform_matrix is not orthonormal (max |R^T R - I| = {error:.3g} "
            f"> {ROTATION_TOLERANCE}, det {det:.3g}): Blender camera poses are rigid, without scale or shear"
        )
    if det < 0:
        raise BlenderDataError(
            f"{where}: the rotation (3x3 block) of transform_matrix has determinant {det:.3g}: a reflection, not a "
            "camera rotation"
        )
    return matrix


def check_intrinsics(meta: dict, meta_path: Path) -> None:
    """BlenderDataError unless ``camera_angle_x`` (and ``camera_angle_y``) are finite radians in (0, pi) and
    ``fl_x``/``fl_y``, when present, are finite focal lengths > 0."""
    for key in ("camera_angle_x", "camera_angle_y"):
        if key not in meta:
            continue
        value = meta[key]
        if not _is_number(value):
            raise BlenderDataError(f"{meta_path}: {key} is {_short(value)}, not a number (radians)")
        if not (math.isfinite(value) and 0 < value < math.pi):
            hint = ""
            if math.pi <= value < 180:
                hint = f"; it looks like degrees ({value:g} degrees = {math.radians(value):.4f} rad)"
            raise BlenderDataError(f"{meta_path}: {key} is {value:g}: it must be in radians, in (0, pi){hint}")
    for key in ("fl_x", "fl_y"):
        if key in meta and not (_is_number(meta[key]) and math.isfinite(meta[key]) and meta[key] > 0):
            raise BlenderDataError(
                f"{meta_path}: {key} is {_short(meta[key])}: a focal length in pixels must be a finite number > 0"
            )


def downscaled_split(data: Path, split: str, factor: int, cache_dir: Path) -> Path:
    """Write ``transforms_{split}.json`` and its images downscaled by ``factor`` under ``cache_dir``; returns it."""
    paths = check_blender_split(data, split)
    from PIL import Image

    with Image.open(paths[0]) as img:
        width, height = img.size
    if width % factor or height % factor:
        raise BlenderDataError(
            f"{paths[0]}: {width}x{height} images do not divide by downscale_factor {factor} (the principal point "
            "would move); use a factor that divides both sides"
        )
    root = Path(data).resolve()
    pairs = [(p, cache_dir / p.resolve().relative_to(root)) for p in paths]
    derived.cache_files(
        pairs, lambda s, d: derived.write_downscaled(s, d, factor, "rgba"), f"norm-blender: {split} images x{factor}"
    )
    meta = cache_dir / f"transforms_{split}.json"
    meta.write_text((Path(data) / f"transforms_{split}.json").read_text())
    return cache_dir


class NormBlender(Blender):
    """nerfstudio's Blender parser after :func:`check_blender_split`, optionally on downscaled copies."""

    config: NormBlenderDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train"):
        factor = self.config.downscale_factor
        if factor < 1:
            raise ValueError(f"downscale_factor must be >= 1, got {factor}")
        if factor == 1:
            check_blender_split(self.config.data, split)
            return super()._generate_dataparser_outputs(split)
        cache = self.config.cache_dir or derived.default_cache_dir(DEFAULT_CACHE_ROOT, self.config.data)
        self.data = downscaled_split(self.config.data, split, factor, Path(cache) / f"x{factor}")
        try:
            return super()._generate_dataparser_outputs(split)
        finally:
            self.data = self.config.data


@dataclass
class NormBlenderDataParserConfig(BlenderDataParserConfig):
    """Blender (NeRF-synthetic) layout, checked before loading, optionally downscaled."""

    _target: type = field(default_factory=lambda: NormBlender)
    """Target class to instantiate."""
    downscale_factor: int = 1
    """Integer image downscale (premultiplied-alpha block average; must divide the image size), cached in cache_dir."""
    cache_dir: Path | None = None
    """Folder for the downscaled copies; default outputs/cache/norm-blender/<scene>-<hash>."""


norm_blender = DataParserSpecification(
    config=NormBlenderDataParserConfig(), description="Blender (NeRF-synthetic) layout with input checks"
)
