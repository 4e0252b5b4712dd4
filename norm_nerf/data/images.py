"""Image files: which files are images, how they become floats in [0, 1], resizing, the bundled pictures.

The one image reader of the package (the image and CT tasks, the analysis, ``norm-eval-blender``).

How files become floats (:func:`read_image`):

* palette images (``P``, ``PA``) become RGB, or RGBA when the palette has transparency; CMYK, YCbCr, LAB and HSV
  become RGB (Pillow's conversion, no ICC colour management); premultiplied ``RGBa``/``La`` become ``RGBA``/``LA``;
* integer images are divided by the maximum of their type (8-bit by 255, 16-bit by 65535). Pillow reads some
  16-bit files and 32-bit integer TIFFs as 32-bit ``I`` images: those are divided by 65535 when their values lie in
  [0, 65535]. Pillow reads 16-bit PNGs and TIFFs with colour or alpha (RGB, RGBA, gray+alpha) at 8 bits, so those
  are decoded at full depth by OpenCV (PNG, a nerfstudio dependency) and tifffile (TIFF, a scikit-image one);
* float images must already lie in [0, 1]. Other ranges (and negative or over-range integer images) are refused
  with the observed minimum and maximum, unless the caller asks for min-max scaling (``out_of_range="minmax"``),
  which only CT does, where intensities are arbitrary (``norm-inr ct`` says so in a notice);
* NaN or infinite pixels, and images with a side shorter than :data:`MIN_IMAGE_SIDE`, are refused;
* TIFFs that Pillow cannot open (multi-channel float, float64) are read with tifffile when it is installed;
* other formats (OpenEXR, Radiance HDR, ...) are refused naming the format and the supported suffixes.

:func:`load_image` then composites alpha on white (the NeRF-synthetic convention), converts to gray or RGB and
area-downsamples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
"""File suffixes (any case) taken as images when a folder is listed: the formats :func:`read_image` decodes."""

_SIGNATURES = {b"\x76\x2f\x31\x01": "OpenEXR", b"#?RADIANCE": "Radiance HDR", b"#?RGBE": "Radiance HDR"}
"""Leading bytes of formats that are not decoded, for the message that refuses them."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEEP_COLOR_TYPES = {2: "RGB", 4: "gray+alpha", 6: "RGBA"}
"""PNG colour types that Pillow reads at 8 bits when their bit depth is 16 (16-bit gray it reads at full depth)."""

MIN_IMAGE_SIDE = 3
"""Smallest accepted image side in pixels: SSIM's smallest window spans 3 pixels."""
OutOfRange = Literal["refuse", "minmax"]
"""What to do with pixel values outside the rules above: refuse the image, or min-max scale it to [0, 1]."""

_FLOAT_TOLERANCE = 1e-5
"""Float pixels this far outside [0, 1] (rounding) are clipped rather than refused."""
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
_DIRECT_MODES = ("1", "L", "LA", "RGB", "RGBA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


class ImageError(ValueError):
    """A user-facing problem with an input image (names the file and the problem)."""


def pil_array(img: Any, path: Path) -> np.ndarray:
    """The pixels of a Pillow image as a numpy array, palette/CMYK/other colour spaces converted to RGB(A)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA" or mode == "RGBa":
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    elif mode in _TO_RGB_MODES:
        img = img.convert("RGB")
    elif mode not in _DIRECT_MODES:
        try:
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        except (ValueError, OSError):
            raise ImageError(f"{path}: unsupported image mode {mode}") from None
    return np.asarray(img)


def _out_of_range(arr: np.ndarray, path: Path, what: str, rule: OutOfRange, notes: list[str] | None) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if rule != "minmax":
        raise ImageError(
            f"{path}: {what} pixel values span [{lo:g}, {hi:g}], outside the accepted range; rescale the image to "
            "[0, 1] (float) or save it as 8/16-bit integers (divided by 255/65535)"
        )
    if hi <= lo:
        raise ImageError(f"{path}: image is constant ({lo:g}); nothing to scale")
    if notes is not None:
        notes.append(f"{path}: {what} pixel values in [{lo:g}, {hi:g}] min-max scaled to [0, 1]")
    return (arr.astype(np.float64) - lo) / (hi - lo)


def _to_float(
    arr: np.ndarray, path: Path, out_of_range: OutOfRange = "refuse", notes: list[str] | None = None
) -> np.ndarray:
    """Pixel values as float64 in [0, 1] by the rules in the module docstring."""
    if arr.size == 0:
        raise ImageError(f"{path}: image has no pixels (shape {arr.shape})")
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        # Pillow's "I" (int32) holds 16-bit data from some writers and 32-bit integer TIFFs: read as 16-bit
        top = 65535 if arr.dtype == np.int32 else int(np.iinfo(arr.dtype).max)
        if lo < 0 or hi > top:
            return _out_of_range(arr, path, f"{arr.dtype} integer", out_of_range, notes)
        return arr.astype(np.float64) / top
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ImageError(f"{path}: image contains {int(bad.sum())} NaN or infinite values")
        if arr.min() < -_FLOAT_TOLERANCE or arr.max() > 1 + _FLOAT_TOLERANCE:
            return _out_of_range(arr, path, "float", out_of_range, notes)
        return np.clip(arr.astype(np.float64), 0.0, 1.0)
    raise ImageError(f"{path}: unsupported pixel type {arr.dtype}")


def _read_tiff_fallback(path: Path) -> np.ndarray | None:
    """tifffile's reading of a TIFF Pillow cannot open (None when tifffile is missing or fails too)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile
    except ImportError:
        return None
    try:
        return np.asarray(tifffile.imread(path))
    except Exception:  # noqa: BLE001 - tifffile raises many types; the caller reports the file as unreadable
        return None


def _unsupported_format(path: Path) -> str | None:
    """What a file that :func:`read_image` does not decode is ("OpenEXR images", "'.xyz' files"): by its leading bytes
    (EXR, HDR), else by a suffix outside :data:`IMAGE_SUFFIXES`; None for a supported suffix (then it is broken)."""
    with path.open("rb") as f:
        head = f.read(16)
    for signature, name in _SIGNATURES.items():
        if head.startswith(signature):
            return f"{name} images"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    return f"'{path.suffix}' files" if path.suffix else "files without a suffix"


def _deep_png_color_type(path: Path) -> int | None:
    """The colour type of a 16-bit RGB, RGBA or gray+alpha PNG (read from its header), else None."""
    with path.open("rb") as f:
        head = f.read(26)
    is_png = head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) == 26
    return head[25] if is_png and head[24] == 16 and head[25] in _PNG_DEEP_COLOR_TYPES else None


def _read_deep_png(path: Path, color_type: int) -> np.ndarray:
    """A 16-bit RGB, RGBA or gray+alpha PNG as uint16 (H, W, 3/4/2) at full depth, decoded by OpenCV."""
    try:
        import cv2
    except ImportError:
        raise ImageError(
            f"{path}: 16-bit {_PNG_DEEP_COLOR_TYPES[color_type]} PNG: reading it at full depth needs OpenCV "
            "(pip install opencv-python-headless); Pillow would read it at 8 bits"
        ) from None
    arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise ImageError(f"{path}: could not read 16-bit {_PNG_DEEP_COLOR_TYPES[color_type]} PNG")
    if color_type == 4:  # OpenCV expands gray+alpha to BGRA
        return arr[..., [0, 3]]
    return arr[..., [2, 1, 0, 3][: arr.shape[-1]]]  # BGR(A) -> RGB(A)


def _is_deep_color_tiff(img: Any) -> bool:
    """True for a TIFF with colour or alpha and more than 8 bits per sample, which Pillow reads at 8 bits."""
    if img.format != "TIFF" or img.mode not in ("RGB", "RGBA", "LA"):
        return False
    bits = img.tag_v2.get(258, 8)  # BitsPerSample: one number, or one per sample
    return max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _read_deep_tiff(path: Path) -> np.ndarray:
    """A TIFF with more than 8 bits per colour sample at full depth, read by tifffile (a scikit-image dependency)."""
    arr = _read_tiff_fallback(path)
    if arr is None:
        raise ImageError(f"{path}: colour TIFF of more than 8 bits per sample: reading it needs tifffile")
    return arr


def _read_pixels(path: Path) -> tuple[np.ndarray, str]:
    """The raw pixels of an image file and a name of how they were read (Pillow's mode, or the other reader)."""
    from PIL import Image, UnidentifiedImageError

    color_type = _deep_png_color_type(path)
    if color_type is not None:
        return _read_deep_png(path, color_type), f"16-bit {_PNG_DEEP_COLOR_TYPES[color_type]} PNG"
    try:
        with Image.open(path) as img:
            img.load()
            if _is_deep_color_tiff(img):
                return _read_deep_tiff(path), f"{img.mode} TIFF of more than 8 bits"
            return pil_array(img, path), img.mode
    except (UnidentifiedImageError, OSError) as err:
        arr = _read_tiff_fallback(path)
        if arr is not None:
            return arr, f"tifffile {arr.dtype}"
        unsupported = _unsupported_format(path)
        if unsupported is not None:
            raise ImageError(
                f"{path}: {unsupported} are not supported; supported formats: {', '.join(IMAGE_SUFFIXES)} "
                "(convert it, e.g. to a 16-bit PNG or a float TIFF in [0, 1])"
            ) from None
        if isinstance(err, UnidentifiedImageError):
            raise ImageError(f"{path}: not a readable image file") from None
        raise ImageError(f"{path}: could not read image ({err})") from None


def read_image(
    path: str | Path,
    out_of_range: OutOfRange = "refuse",
    notes: list[str] | None = None,
    dtype: type[np.floating] = np.float32,
) -> Float[np.ndarray, "h w c"]:
    """Read an image file as floats (H, W, C) in [0, 1], C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).

    Conversions and refusals follow the module docstring; ``notes`` (when given) collects what was changed. Values
    are computed in float64 and returned as ``dtype``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    arr, mode = _read_pixels(path)
    data = _to_float(arr, path, out_of_range, notes)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(f"{path}: unsupported image shape {arr.shape} (mode {mode}); expected (H, W) or (H, W, 1-4)")
    check_image_size(data.shape[0], data.shape[1], path)
    return data.astype(dtype, copy=False)


def check_image_size(height: int, width: int, path: Path | str, after: str = "") -> None:
    """Refuse images with a side shorter than :data:`MIN_IMAGE_SIDE` (``after`` says e.g. which resize made it)."""
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageError(
            f"{path}: image is {width}x{height} pixels{after}; every side must be at least {MIN_IMAGE_SIDE} pixels "
            "(the smallest SSIM window)"
        )


NERFSTUDIO_MODES = ("L", "RGB", "RGBA")
"""Pillow modes that nerfstudio's image loader reads correctly (it takes Pillow's pixels as 8-bit arrays)."""


def nerfstudio_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image that nerfstudio's image loader reads correctly; ImageError naming the file when it
    is unreadable or of a Pillow mode outside :data:`NERFSTUDIO_MODES`, which that loader misreads (palette indices
    as gray, 16-bit gray modulo 256, 1-bit as 0/1, CMYK as RGBA). 16-bit RGB(A) PNGs pass: Pillow gives their high
    bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
    except (UnidentifiedImageError, OSError):
        raise ImageError(f"{path}: not a readable image") from None
    if mode not in NERFSTUDIO_MODES:
        raise ImageError(
            f"{path}: Pillow mode {mode}: nerfstudio's image loader reads only 8-bit gray, RGB or RGBA images and "
            "would misread this one; save it as an 8-bit RGB or RGBA PNG"
        )
    return size


def list_images(folder: Path | str) -> list[Path]:
    """The image files of ``folder`` (by :data:`IMAGE_SUFFIXES`, any case), sorted by name; empty when none."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(
    path: str | Path,
    resize: int | None = None,
    gray: bool = False,
    out_of_range: OutOfRange = "refuse",
    notes: list[str] | None = None,
    resize_flag: str = "--resize",
    rgb: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "h w c"]:
    """Read an image as floats in [0, 1] with shape (H, W, C), C = 3 (RGB) or 1 (gray).

    Values follow :func:`read_image` (palette and CMYK become RGB, integers are divided by their type's maximum,
    float images outside [0, 1] are refused unless ``out_of_range="minmax"``); an alpha channel is composited onto
    white (the NeRF-synthetic convention). ``gray`` converts RGB to gray (ITU-R 601 luma), ``rgb`` repeats a gray
    image into three channels. ``resize`` sets the longer side (aspect kept) and may not exceed it; ``resize_flag``
    names the option in messages. Values are computed in float64 when ``dtype`` is ``torch.float64``, else float32.
    """
    path = Path(path)
    if resize is not None and resize < 1:
        raise ImageError(f"{path}: {resize_flag} must be >= 1, got {resize}")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    data = read_image(path, out_of_range, notes, dtype=np_dtype)
    height, width = data.shape[:2]
    if resize is not None and resize > max(height, width):
        raise ImageError(
            f"{path}: {resize_flag} {resize} is larger than the image ({width}x{height}); "
            "upsampling would only add interpolated pixels"
        )
    if data.shape[-1] in (2, 4):  # gray+alpha or RGBA: composite onto white
        color, alpha = data[..., :-1], data[..., -1:]
        data = color * alpha + (1.0 - alpha)
    if gray and data.shape[-1] == 3:
        data = data @ np.array([0.299, 0.587, 0.114], dtype=np_dtype)[:, None]
    if rgb and data.shape[-1] == 1:
        data = np.repeat(data, 3, axis=-1)
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np_dtype)).to(dtype)
    if resize is not None and resize != max(height, width):
        h2, w2 = resized_shape(height, width, resize)
        check_image_size(h2, w2, path, after=f" after {resize_flag} {resize} (from {width}x{height})")
        tensor = resize_image(tensor, resize)
    return tensor


def resized_shape(height: int, width: int, longer_side: int) -> tuple[int, int]:
    """``(height, width)`` after :func:`resize_image` to ``longer_side`` (aspect kept, each side at least 1)."""
    scale = longer_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(img: Float[Tensor, "h w c"], longer_side: int) -> Float[Tensor, "h2 w2 c"]:
    """Area-average downsampling so the longer side becomes ``longer_side``."""
    size = resized_shape(img.shape[0], img.shape[1], longer_side)
    chw = img.permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(chw, size=size, mode="area")
    return out[0].permute(1, 2, 0).contiguous()


BundledImage = Literal["astronaut", "camera"]
"""Pictures that ship with scikit-image (no download): astronaut (RGB, 512^2) and camera (gray, 512^2)."""


def bundled_image(name: BundledImage, size: int | None = None) -> Float[Tensor, "h w c"]:
    """One of scikit-image's bundled pictures as float32 (H, W, C) in [0, 1], area-downsampled to ``size``.

    ``size`` None (or 0) keeps the full 512 x 512 picture.
    """
    import skimage.data

    pixels = getattr(skimage.data, name)()
    img = torch.from_numpy(pixels).float() / 255.0
    if img.dim() == 2:
        img = img[..., None]
    return resize_image(img, size) if size else img
