"""``norm-blender``: the Blender (NeRF-synthetic) layout for nerfstudio, with the input checked first, so a broken
dataset gives one clear error naming the file (missing folder or split file, no frames, missing or unreadable images,
images of different sizes, malformed poses or intrinsics) instead of an IndexError or a tensor-stacking error deep in
training, or a silently wrong camera.

Poses must be 4x4 lists of finite numbers whose 3x3 block is a rotation: orthonormal within
``ROTATION_TOLERANCE`` (max |R^T R - I|; rounding to 4 decimals passes, any scale or shear does not) with
determinant +1.

Intrinsics (pixels; nerfstudio's convention, pixel centres at j + 0.5) come from the top-level keys that
nerfstudio's and instant-ngp's ``transforms.json`` use: ``fx = fl_x``, else ``0.5 w / tan(camera_angle_x / 2)``
(radians in (0, pi); a value that fits degrees is reported as such); ``fy = fl_y``, else from ``camera_angle_y`` and
the height, else ``fx``; ``cx``, ``cy`` default to the image centre ``w / 2``, ``h / 2``. A focal length given both
ways must agree within ``FOCAL_TOLERANCE``. ``w``/``h``, when given, must be the images' size. Lens distortion
(``k1`` ... ``p2`` non-zero), non-pinhole ``camera_model`` values and per-frame intrinsics are refused: this parser
models one pinhole camera per split, and would otherwise ignore them.

A frame's image is ``file_path`` plus ``.png`` (the NeRF-synthetic layout), or ``file_path`` itself when it already
ends in an image suffix. nerfstudio's image loader reads 8-bit gray, RGB or RGBA: images of other modes (palette,
1-bit, CMYK, 16-bit gray, float), which it would misread, are refused; 16-bit RGB(A) PNGs it reads at 8 bits.

``downscale_factor`` > 1 trains on smaller images (e.g. lego at 100x100 with 8): premultiplied-alpha block averages
are written once under ``cache_dir`` (never into the data folder), and fx, fy, cx, cy are divided by the factor, so
every ray still passes through the same scene point."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.blender_dataparser import Blender, BlenderDataParserConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from norm_nerf.data import derived
from norm_nerf.data.images import IMAGE_SUFFIXES, nerfstudio_image_size

DEFAULT_CACHE_ROOT = Path("outputs/cache/norm-blender")
ROTATION_TOLERANCE = 0.01
"""Largest |R^T R - I| entry accepted for the rotation block of a pose (Blender camera poses are rigid)."""
FOCAL_TOLERANCE = 0.005
"""Largest relative difference accepted between ``fl_x`` and the focal length from ``camera_angle_x`` (and y)."""
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV")
"""``camera_model`` values accepted (OPENCV only without distortion)."""
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", *_DISTORTION_KEYS)


class BlenderDataError(ValueError):
    """A problem with a dataset in the Blender (NeRF-synthetic) layout."""


@dataclass(frozen=True)
class BlenderSplit:
    """A checked ``transforms_{split}.json``: its images, poses and one pinhole camera."""

    meta_path: Path
    """The split file."""
    image_paths: list[Path]
    """The frames' images, in frame order."""
    poses: Float[np.ndarray, "n 4 4"]
    """OpenGL camera-to-world ``transform_matrix`` of every frame."""
    width: int
    """Image width in pixels (all images have one size)."""
    height: int
    """Image height in pixels."""
    intrinsics: tuple[float, float, float, float]
    """``(fx, fy, cx, cy)`` in pixels, nerfstudio's convention (pixel centres at j + 0.5)."""


def read_blender_split(data: Path, split: str) -> BlenderSplit:
    """Read and validate ``transforms_{split}.json``, its images and intrinsics (module docstring)."""
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
    check_intrinsics(meta, meta_path)
    paths, poses = [], []
    for i, frame in enumerate(frames):
        poses.append(_check_frame(frame, i, meta_path))
        paths.append(frame_image_path(data, frame["file_path"], f"of frame {i} in {meta_path.name}"))
    width, height = _image_size(paths, meta_path)
    intrinsics = split_intrinsics(meta, meta_path, width, height, paths[0])
    return BlenderSplit(meta_path, paths, np.stack(poses), width, height, intrinsics)


def check_blender_split(data: Path, split: str) -> list[Path]:
    """Validate ``transforms_{split}.json`` and its images; returns the image paths."""
    return read_blender_split(data, split).image_paths


def _check_frame(frame: Any, i: int, meta_path: Path) -> np.ndarray:
    """Frame ``i``'s pose; BlenderDataError unless it is an object with a file_path, a rigid pose and no intrinsics."""
    if not isinstance(frame, dict):
        raise BlenderDataError(f"{meta_path}: frame {i} is {_short(frame)}, not an object")
    if not isinstance(frame.get("file_path"), str):
        raise BlenderDataError(f"{meta_path}: frame {i} has no file_path (a string like ./train/r_{i})")
    where = f"{meta_path}: frame {i} ({frame['file_path']})"
    own = [key for key in _INTRINSIC_KEYS if key in frame]
    if own:
        raise BlenderDataError(
            f"{where}: has its own {', '.join(own)}: per-frame intrinsics are not supported (norm-blender models one "
            "camera per split); give them once at the top level"
        )
    return check_pose(frame.get("transform_matrix"), where)


def frame_image_path(data: Path, file_path: str, what: str) -> Path:
    """The image of a frame: ``data / file_path``, plus ``.png`` unless it already ends in an image suffix
    (:data:`~norm_nerf.data.images.IMAGE_SUFFIXES`); FileNotFoundError (``what`` names the frame) when missing."""
    given = Path(data) / file_path
    path = given if given.suffix.lower() in IMAGE_SUFFIXES else given.with_name(given.name + ".png")
    if path.is_file():
        return path
    if given.is_file():
        raise BlenderDataError(
            f"{given}: image {what}: '{given.suffix}' files are not supported; supported formats: "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    raise FileNotFoundError(f"{path}: image {what} not found")


def _image_size(paths: list[Path], meta_path: Path) -> tuple[int, int]:
    """The (width, height) shared by all images; ImageError for unreadable images and modes nerfstudio's loader
    misreads (:func:`~norm_nerf.data.images.nerfstudio_image_size`), BlenderDataError for different sizes."""
    sizes: dict[tuple[int, int], Path] = {}
    for path in paths:
        sizes.setdefault(nerfstudio_image_size(path), path)
    if len(sizes) > 1:
        (s1, p1), (s2, p2) = list(sizes.items())[:2]
        raise BlenderDataError(f"images of different sizes in {meta_path.name}: {p1} is {s1}, {p2} is {s2}")
    return next(iter(sizes))


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
    """BlenderDataError unless the intrinsics keys are well formed: a focal length (``camera_angle_x`` or ``fl_x``),
    angles finite radians in (0, pi), focal lengths finite and > 0, ``cx``/``cy`` finite, ``w``/``h`` whole numbers
    > 0, a pinhole ``camera_model`` without distortion."""
    if "camera_angle_x" not in meta and "fl_x" not in meta:
        raise BlenderDataError(f"{meta_path}: has no camera_angle_x or fl_x (the horizontal focal length)")
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
    rules = {
        "fl_x": ("a focal length in pixels must be a finite number > 0", lambda v: math.isfinite(v) and v > 0),
        "fl_y": ("a focal length in pixels must be a finite number > 0", lambda v: math.isfinite(v) and v > 0),
        "cx": ("the principal point (pixels) must be a finite number", math.isfinite),
        "cy": ("the principal point (pixels) must be a finite number", math.isfinite),
        "w": ("the image width must be a whole number > 0", lambda v: v > 0 and float(v).is_integer()),
        "h": ("the image height must be a whole number > 0", lambda v: v > 0 and float(v).is_integer()),
    }
    for key, (rule, ok) in rules.items():
        if key in meta and not (_is_number(meta[key]) and ok(meta[key])):
            raise BlenderDataError(f"{meta_path}: {key} is {_short(meta[key])}: {rule}")
    _check_pinhole(meta, meta_path)


def _check_pinhole(meta: dict, meta_path: Path) -> None:
    """BlenderDataError for a ``camera_model`` outside :data:`PINHOLE_MODELS` or non-zero lens distortion."""
    model = meta.get("camera_model", "PINHOLE")
    if model not in PINHOLE_MODELS:
        raise BlenderDataError(
            f"{meta_path}: camera_model {_short(model)} is not supported: norm-blender reads pinhole cameras "
            f"({', '.join(PINHOLE_MODELS)} without distortion)"
        )
    bent = {key: meta[key] for key in _DISTORTION_KEYS if key in meta and meta[key] != 0}
    if bent:
        values = ", ".join(f"{key} = {_short(value)}" for key, value in bent.items())
        raise BlenderDataError(
            f"{meta_path}: lens distortion ({values}) is not supported: norm-blender reads pinhole cameras; undistort "
            "the images first"
        )


def split_intrinsics(
    meta: dict, meta_path: Path, width: int, height: int, image: Path
) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of a checked split file whose images (e.g. ``image``) are ``width`` x ``height``."""
    for key, size in (("w", width), ("h", height)):
        if key in meta and int(meta[key]) != size:
            raise BlenderDataError(
                f"{meta_path}: w x h is {meta.get('w', width)}x{meta.get('h', height)}, but the images are "
                f"{width}x{height} ({image})"
            )
    fx = _focal(meta, meta_path, "x", width)
    fy = _focal(meta, meta_path, "y", height)
    cx, cy = float(meta.get("cx", width / 2.0)), float(meta.get("cy", height / 2.0))
    return fx, fy if fy is not None else fx, cx, cy


def _focal(meta: dict, meta_path: Path, axis: str, side: int) -> float | None:
    """``fl_<axis>``, else the focal length from ``camera_angle_<axis>`` over ``side`` pixels, else None;
    BlenderDataError when both are given and differ by more than :data:`FOCAL_TOLERANCE`."""
    fl_key, angle_key = f"fl_{axis}", f"camera_angle_{axis}"
    from_angle = 0.5 * side / math.tan(0.5 * meta[angle_key]) if angle_key in meta else None
    if fl_key not in meta:
        return from_angle
    focal = float(meta[fl_key])
    if from_angle is not None and abs(focal - from_angle) > FOCAL_TOLERANCE * from_angle:
        raise BlenderDataError(
            f"{meta_path}: {fl_key} is {focal:g} but {angle_key} {meta[angle_key]:g} gives {from_angle:.6g} "
            f"(0.5 * {side} px / tan({angle_key} / 2)), {100 * abs(focal / from_angle - 1):.3g}% apart (more than "
            f"{100 * FOCAL_TOLERANCE:g}%); give one, or make them agree"
        )
    return focal


def downscaled_images(split: BlenderSplit, data: Path, factor: int, cache_dir: Path) -> list[Path]:
    """The split's images downscaled by ``factor``, written once under ``cache_dir``; returns their paths."""
    if split.width % factor or split.height % factor:
        raise BlenderDataError(
            f"{split.image_paths[0]}: {split.width}x{split.height} images do not divide by downscale_factor {factor} "
            "(the principal point would move); use a factor that divides both sides"
        )
    root = Path(data).resolve()
    pairs = [(p, cache_dir / p.resolve().relative_to(root)) for p in split.image_paths]
    name = split.meta_path.stem.removeprefix("transforms_")
    return derived.cache_files(
        pairs, lambda s, d: derived.write_downscaled(s, d, factor, "rgba"), f"norm-blender: {name} images x{factor}"
    )


class NormBlender(Blender):
    """The Blender layout after :func:`read_blender_split`, with its intrinsics, optionally on downscaled copies."""

    config: NormBlenderDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:
        factor = self.config.downscale_factor
        if factor < 1:
            raise ValueError(f"downscale_factor must be >= 1, got {factor}")
        checked = read_blender_split(self.config.data, split)
        images = checked.image_paths
        if factor > 1:
            cache = self.config.cache_dir or derived.default_cache_dir(DEFAULT_CACHE_ROOT, self.config.data)
            images = downscaled_images(checked, self.config.data, factor, Path(cache) / f"x{factor}")
        metadata = {}
        if self.config.ply_path is not None:
            metadata.update(self._load_3D_points(self.config.data / self.config.ply_path))
        return DataparserOutputs(
            image_filenames=images,
            cameras=self._cameras(checked, factor),
            alpha_color=self.alpha_color_tensor,
            scene_box=SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]], dtype=torch.float32)),
            dataparser_scale=self.scale_factor,
            metadata=metadata,
        )

    def _cameras(self, checked: BlenderSplit, factor: int) -> Cameras:
        """nerfstudio cameras of the split (nerfstudio's Blender parser's: scene box, scale), intrinsics / factor."""
        c2w = torch.from_numpy(checked.poses[:, :3].astype(np.float32))
        c2w[..., 3] *= self.scale_factor
        fx, fy, cx, cy = (value / factor for value in checked.intrinsics)
        return Cameras(
            camera_to_worlds=c2w,
            fx=np.float64(fx),  # float64 focal lengths, as nerfstudio's Blender parser (same rays, bit for bit)
            fy=np.float64(fy),
            cx=cx,
            cy=cy,
            width=checked.width // factor,
            height=checked.height // factor,
            camera_type=CameraType.PERSPECTIVE,
        )


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
