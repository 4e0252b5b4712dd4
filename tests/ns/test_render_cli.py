"""nerfstudio's own CLIs on a trained norm-* run, on CPU: ns-render renders a camera path in eval mode."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def _viewer(config_yml: Path) -> Iterator[tuple[int, list[str]]]:
    """``ns-viewer --load-config`` on a free port, serving (HTTP 200) within 240 s; yields the port and, once the
    block ends and the viewer is stopped, its output (in the list)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "ns-viewer"
    cmd = [str(exe), "--load-config", str(config_yml), "--viewer.websocket-port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        deadline, status = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None and status != 200:
            time.sleep(2)
            with contextlib.suppress(OSError):
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
        assert status == 200, f"viewer did not serve: exit code {proc.poll()}"
        yield port, output
    finally:
        proc.kill()
        output.append(proc.communicate()[0])


@pytest.mark.slow
def test_ns_viewer_opens_a_trained_run(mipnerf_run) -> None:
    with _viewer(mipnerf_run) as (_, output):
        pass
    assert "Done loading checkpoint" in output[0]


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no headless browser (Debian: apt-get install chromium); optional check")
def test_viewer_page_in_a_headless_browser(mipnerf_run, tmp_path) -> None:
    """A real browser (headless Chromium, software WebGL) connects to ns-viewer, which renders the run into the page:
    the panel says Connected, shows the resolution of a rendered frame (set right after nerfstudio sends the image),
    and the output dropdown is on ``rgb``; a screenshot's viewport is not blank."""
    import re

    from PIL import Image

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--window-size=1200,800", "--virtual-time-budget=30000"]  # fmt: skip

    def browse(url: str, name: str, *action: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"profile-{name}"  # a fresh profile per run
        cmd = [BROWSER, *flags, f"--user-data-dir={profile}", *action, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=240)

    def viewport(shot: Path) -> np.ndarray:
        pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
        return pixels[int(0.1 * pixels.shape[0]) : int(0.9 * pixels.shape[0]), : int(0.7 * pixels.shape[1])]

    # a page load may end (virtual time spent) before the CPU render arrives or is drawn: up to 3 loads each
    with _viewer(mipnerf_run) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        for attempt in range(3):
            dom = browse(url, f"dom{attempt}", "--dump-dom").stdout
            if re.search(r"Resolution: [1-9]\d*x[1-9]\d*px", dom):
                break
        for attempt in range(3):
            shot = tmp_path / f"viewer{attempt}.png"
            browse(url, f"shot{attempt}", f"--screenshot={shot}")
            if shot.is_file() and viewport(shot).std() > 1.0:
                break
    assert "Connected" in dom, dom[-2000:]
    resolution = re.search(r"Resolution: (\d+)x(\d+)px", dom)
    assert resolution is not None and min(map(int, resolution.groups())) > 0  # a frame was sent ("0x0px" until then)
    label = re.search(r'<label for="([^"]+)">Output type</label>', dom)
    assert label is not None, "no 'Output type' dropdown in the page"
    value = re.search(rf'<input[^>]*id="{re.escape(label.group(1))}"[^>]*value="([^"]*)"', dom)
    assert value is not None and value.group(1) == "rgb"
    assert viewport(shot).std() > 1.0  # the rendered image in the viewport, not the empty scene
