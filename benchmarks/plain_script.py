"""What a user's own script pays for a norm layer: no norm-nerf CLI, no process settings, a plain training step.

Each configuration runs in a fresh Python process (the allocator setting is process state) that builds, as a user
would, ``Sequential(Linear, norm, ReLU, ...)`` nets of depth x width with ``build_norm`` (or torch's own
``BatchNorm1d``), and times one training step (forward, MSE loss, backward, SGD step) on ``points`` random inputs for
``none`` and every norm, interleaved, median over repeats. Reported: each norm's step time as a ratio to ``none`` in
the same process.

Variants (one process each):

* ``default``: glibc's allocator as the user's process has it (``NORM_NERF_RETAIN_MEMORY=0``);
* ``retain``: as it is when a norm layer is built on the CPU without that variable: freed memory is kept for reuse
  (:func:`norm_nerf.utils.cpu_memory.retain_freed_memory`).

    .venv/bin/python benchmarks/plain_script.py [--points 65536] [--net 8x256] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import machine_info, write_report

NORMS = ("none", "bn", "cn", "torch-bn")
VARIANTS = {"default": {"NORM_NERF_RETAIN_MEMORY": "0"}, "retain": {}}
TARGETS = {"bn": 1.10, "cn": 1.15}
"""The targets of a plain script (ratio to ``none``)."""


def _net(norm: str, depth: int, width: int):
    import torch
    from torch import nn

    from norm_nerf.core.norms import build_norm

    layers, features = [], 3
    for _ in range(depth):
        norm_layer = nn.BatchNorm1d(width) if norm == "torch-bn" else build_norm(norm, width)
        layers += [nn.Linear(features, width), norm_layer, nn.ReLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, 3)).train(), torch.optim.SGD


def measure(points: int, depth: int, width: int, repeats: int, threads: int) -> dict[str, float]:
    """In this process: median step seconds per norm (run as ``--child``)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = torch.randn(points, 3), torch.randn(points, 3)
    steps = {}
    for norm in NORMS:
        net, optim = _net(norm, depth, width)
        opt = optim(net.parameters(), lr=1e-3)

        def step(net=net, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()

        steps[norm] = step
    for step in steps.values():  # warm-up: allocations, the C++ kernels' first call
        step()
        step()
    times: dict[str, list[float]] = {norm: [] for norm in NORMS}
    for _ in range(repeats):
        for norm, step in steps.items():
            start = time.perf_counter()
            step()
            times[norm].append(time.perf_counter() - start)
    return {norm: statistics.median(t) for norm, t in times.items()}


def _child(args: argparse.Namespace, variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NORM_NERF_RETAIN_MEMORY"} | VARIANTS[variant]
    cmd = [sys.executable, __file__, "--child", "--points", str(args.points), "--net", args.net,
           "--repeats", str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plot(report: dict):
    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        norms = [n for n in NORMS if n != "none"]
        for k, (variant, result) in enumerate(report["results"].items()):
            ax.bar([i + 0.38 * k for i in range(len(norms))], [result["ratio"][n] for n in norms], width=0.38,
                   label=variant)  # fmt: skip
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.19 for i in range(len(norms))], norms)
        ax.set_ylabel("step time / none")
        ax.set_title(f"plain script, {report['net']} @ {report['points']} points, {report['threads']} thread(s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return plot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--net", default="8x256", help="DEPTHxWIDTH")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/plain_script.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    depth, width = (int(v) for v in args.net.lower().split("x"))
    if args.child:
        print(json.dumps(measure(args.points, depth, width, args.repeats, args.threads)))
        return
    results = {}
    for variant in VARIANTS:
        seconds = _child(args, variant)
        ratio = {norm: seconds[norm] / seconds["none"] for norm in NORMS}
        results[variant] = {"seconds": seconds, "ratio": ratio}
        print(variant + ": " + ", ".join(f"{n} {ratio[n]:.2f}x" for n in NORMS if n != "none")
              + f" (none {seconds['none'] * 1e3:.0f} ms)")  # fmt: skip
    report = {"net": args.net, "points": args.points, "threads": args.threads, "repeats": args.repeats,
              "targets": TARGETS, "results": results, "machine": machine_info()}  # fmt: skip
    write_report(report, args.out, _plot(report))


if __name__ == "__main__":
    main()
