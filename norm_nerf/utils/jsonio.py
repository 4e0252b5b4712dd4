"""JSON files with one policy for every ``metrics.json``/``results.json`` the package writes.

Strict JSON (``allow_nan=False``): a non-finite float (NaN, inf) is written as ``null``, never as the non-standard
``NaN``/``Infinity`` tokens or as strings, so every reader (``json``, ``jq``, JavaScript) gets the same value. A
metric that can legitimately be infinite (the PSNR of an exact match) is capped by its producer before it is written,
and the cap is stated in the file. Paths become strings, tuples lists, numpy scalars and arrays plain numbers and lists.
A file is written whole or not at all (:func:`norm_nerf.utils.atomic.write_bytes_atomically`): a full disk raises
:class:`~norm_nerf.utils.atomic.NoSpaceError` and leaves no empty or truncated file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from norm_nerf.utils.atomic import write_bytes_atomically


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` accepts under the policy above."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, str):  # numpy scalars/arrays, 0-d tensors
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` to ``path`` (indented, strict JSON, non-finite numbers as null), whole or not at all; returns
    ``path``."""
    text = json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomically(Path(path), text.encode())
