"""nerfstudio's own CLIs on a trained norm-* run, on CPU: ns-render renders a camera path in eval mode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.skipif(  # ns-render refuses to start without it, even for image output
    shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH (./bin/test links one into .venv from imageio-ffmpeg)"
)
def test_ns_render_interpolate_on_cpu(mipnerf_run, tmp_path) -> None:
    exe = Path(sys.executable).parent / "ns-render"
    out = tmp_path / "frames"
    cmd = [str(exe), "interpolate", "--load-config", str(mipnerf_run), "--output-path", str(out), "--output-format",
           "images", "--pose-source", "train", "--interpolation-steps", "1", "--frame-rate", "2"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    frames = sorted(out.glob("*.jpg")) + sorted(out.glob("*.png"))
    assert len(frames) >= 2
    from PIL import Image

    img = np.asarray(Image.open(frames[0]))
    assert img.shape[:2] == (16, 16) and img.std() > 0  # a real rendering of the tiny scene, not a blank frame
