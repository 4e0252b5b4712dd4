"""``norm-blender``: nerfstudio's Blender parser with the input checked first, so a broken dataset gives one
clear error naming the file (missing folder or split file, no frames, missing or unreadable images, images
of different sizes, malformed poses) instead of an IndexError or a tensor-stacking error deep in training.

``downscale_factor`` > 1 trains on smaller images (e.g. lego at 100x100 with 8): premultiplied-alpha block averages
are written once, with a copy of the split file, under ``cache_dir`` (never into the data folder); nerfstudio's parser
then derives the focal length from the smaller width, so every ray still passes through the same scene point."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nerfstudio.data.dataparsers.blender_dataparser import Blender, BlenderDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from norm_nerf.data import derived

DEFAULT_CACHE_ROOT = Path("outputs/cache/norm-blender")


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
    if "camera_angle_x" not in meta:
        raise BlenderDataError(f"{meta_path}: has no camera_angle_x")
    paths, sizes = [], {}
    for i, frame in enumerate(frames):
        pose = frame.get("transform_matrix")
        if not (isinstance(pose, list) and len(pose) == 4 and all(len(row) == 4 for row in pose)):
            raise BlenderDataError(f"{meta_path}: frame {i} has no 4x4 transform_matrix")
        path = data / Path(str(frame.get("file_path", "")).replace("./", "") + ".png")
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
