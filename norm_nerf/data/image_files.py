"""Image files as float arrays in [0, 1], by stated rules (shared by the image/CT tasks and norm-eval-blender).

How files become floats (:func:`read_image`):

* palette images (``P``, ``PA``) become RGB, or RGBA when the palette has transparency; CMYK, YCbCr, LAB and HSV
  become RGB (Pillow's conversion, no ICC colour management); premultiplied ``RGBa``/``La`` become ``RGBA``/``LA``;
* integer images are divided by the maximum of their type (8-bit by 255, 16-bit by 65535). Pillow reads some
  16-bit files and 32-bit integer TIFFs as 32-bit ``I`` images: those are divided by 65535 when their values lie in
  [0, 65535];
* float images must already lie in [0, 1]. Other ranges (and negative or over-range integer images) are refused
  with the observed minimum and maximum, unless the caller asks for min-max scaling (``out_of_range="minmax"``),
  which only CT does, where intensities are arbitrary (``norm-inr ct`` says so in a notice);
* NaN or infinite pixels, and images with a side shorter than :data:`MIN_IMAGE_SIDE`, are refused;
* TIFFs that Pillow cannot open (multi-channel float, float64) are read with tifffile when it is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from jaxtyping import Float

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
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = pil_array(img, path)
    except (UnidentifiedImageError, OSError) as err:
        arr = _read_tiff_fallback(path)
        if arr is None:
            if isinstance(err, UnidentifiedImageError):
                raise ImageError(f"{path}: not a readable image file") from None
            raise ImageError(f"{path}: could not read image ({err})") from None
        mode = f"tifffile {arr.dtype}"
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
