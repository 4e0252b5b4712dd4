"""nerfstudio's own CLIs on a trained norm-* run, on CPU: ns-render renders a camera path in eval mode."""

from __future__ import annotations

import contextlib
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


@pytest.mark.slow
def test_ns_viewer_opens_a_trained_run(mipnerf_run) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "ns-viewer"
    cmd = [str(exe), "--load-config", str(mipnerf_run), "--viewer.websocket-port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None and status != 200:
            time.sleep(2)
            with contextlib.suppress(OSError):
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
        assert status == 200, f"viewer did not serve: exit code {proc.poll()}"
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "Done loading checkpoint" in out
