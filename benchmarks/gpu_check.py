"""One command that checks and measures the GPU path on a CUDA machine, and says which versions it ran with.

Runs, each as its own process with a time limit, and collects one JSON plus a printed table:

1. ``tests``: the CUDA-only tests (Triton kernels against the reference on the GPU, ``--mixed-precision`` configs,
   tinycudann vs the torch hash grid where tinycudann exists);
2. ``norm_overhead``: the CUDA section of ``benchmarks/norm_overhead.py`` (reference, fast, Triton and
   ``torch.compile`` steps of 10x28 and 8x256 nets at 65 536 and 262 144 points; CUDA events, medians);
3. ``image``: ``python -m norm_nerf.tasks image`` for pe and pe+cn on a full-resolution image (``--image``, e.g. a
   Kodak picture; default the bundled 512x512 astronaut), ``--image-steps`` steps on CUDA;
4. ``nerfstudio`` (only where nerfstudio imports): ``benchmarks/ns_throughput.py`` for norm-mipnerf, norm none vs
   cn, on a generated scene.

It assumes nothing about the versions installed (the GPU machine may carry another torch or Triton than
``constraints.txt``): it records them, and a step that cannot run is recorded with its reason, not fatal::

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json    # about 5-8 minutes on one GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CUDA_TESTS = [
    "tests/core/test_triton.py::test_kernels_on_cuda",
    "tests/core/test_mixed_precision.py",
    "tests/core/test_encodings.py",
    "tests/ns/test_mixed_precision_cuda.py",
]
"""The tests that exercise CUDA where it exists (the others in these files run on the CPU as well)."""


def versions() -> dict[str, Any]:
    """Python, torch, CUDA, Triton, nerfstudio and GPU of this machine (None where absent)."""
    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "cuda": torch.version.cuda, "gpu": None, "triton": None, "nerfstudio": None}  # fmt: skip
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    for name in ("triton", "nerfstudio"):
        if importlib.util.find_spec(name) is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                found[name] = version(name)
            except PackageNotFoundError:
                found[name] = "installed (version unknown)"
    return found


def run_step(name: str, cmd: list[str], limit: float, log_dir: Path) -> dict[str, Any]:
    """Run one step; its output goes to ``log_dir/<name>.log``; returns status, seconds and the log's tail."""
    log = log_dir / f"{name}.log"
    start = time.perf_counter()
    try:
        with log.open("w") as f:
            rc = subprocess.run(
                cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=limit, check=False
            ).returncode
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {limit:.0f} s"
    tail = log.read_text(errors="replace").strip().splitlines()[-6:]
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "command": cmd, "log_tail": tail}


def image_step(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """pe and pe+cn on one image at full resolution on CUDA; the eval-mode PSNR and steps/s of each."""
    found: dict[str, Any] = {}
    for method in ("pe", "pe+cn"):
        out = work / f"image_{method.replace('+', '_')}"
        cmd = [sys.executable, "-m", "norm_nerf.tasks", "image", "--method", method, "--depth", "10", "--width", "40",
               "--steps", str(args.image_steps), "--resize", "None", "--device", "cuda", "--no-progress",
               "--out", str(out), "--overwrite"]  # fmt: skip
        if args.image is not None:
            cmd += ["--image", str(args.image)]
        step = run_step(f"image_{method}", cmd, args.limit, work)
        metrics = out / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            step.update(psnr=m.get("psnr"), steps_per_second=m.get("steps_per_second"), size=m.get("size"))
        found[method] = step
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=None, help="image for the image step (default: astronaut)")
    parser.add_argument("--image-steps", type=int, default=3000, help="training steps of the image step")
    parser.add_argument("--ns-steps", type=int, default=300, help="training steps of the nerfstudio step")
    parser.add_argument("--limit", type=float, default=240.0, help="time limit of each step in seconds")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "norm_overhead", "image", "nerfstudio"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = parser.parse_args()
    import torch

    report: dict[str, Any] = {"versions": versions(), "steps": {}}
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        steps = report["steps"]
        if "tests" not in args.skip:
            cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS]
            steps["tests"] = run_step("tests", cmd, args.limit, work)
        if "norm_overhead" not in args.skip:
            out = work / "norm_overhead.json"
            cmd = [sys.executable, "benchmarks/norm_overhead.py", "--devices", "cuda", "--out", str(out)]
            steps["norm_overhead"] = run_step("norm_overhead", cmd, args.limit, work)
            if out.is_file():
                steps["norm_overhead"]["results"] = json.loads(out.read_text())
        if "image" not in args.skip:
            steps["image"] = image_step(args, work)
        if "nerfstudio" not in args.skip:
            if report["versions"]["nerfstudio"] is None:
                steps["nerfstudio"] = {"status": "skipped: nerfstudio is not installed"}
            else:
                out = work / "ns_throughput.json"
                cmd = [sys.executable, "benchmarks/ns_throughput.py", "--methods", "norm-mipnerf", "--norms", "none",
                       "cn", "--steps", str(args.ns_steps), "--rays", "1024", "--size", "100", "--work",
                       str(work / "ns"), "--out", str(out)]  # fmt: skip
                steps["nerfstudio"] = run_step("nerfstudio", cmd, args.limit, work)
                if out.is_file():
                    steps["nerfstudio"]["results"] = json.loads(out.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["versions"]))
    for name, step in report["steps"].items():
        if "status" in step:
            print(f"{name:15s} {step['status']:28s} {step.get('seconds', '')}")
        else:
            for sub, s in step.items():
                label = f"{name} {sub}"
                print(f"{label:15s} {s['status']:28s} psnr {s.get('psnr')}  steps/s {s.get('steps_per_second')}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
