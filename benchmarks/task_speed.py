"""Steps per second of each signal task, and how much of a step is data handling rather than the network.

For every task the full training step (network forward + loss + backward + Adam) is timed, and so is the
"data" part alone: the task's loss (forward model such as the Radon transform or the FFT, plus its
backward) applied to a fixed prediction. The ratio data/step says whether the network dominates.

    .venv/bin/python benchmarks/task_speed.py [--methods relu pe+cn] [--tasks image ct mri shape] [--repeats 5]
        [--out benchmarks/results/task_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _report import machine_info, write_report

from norm_nerf.core import build_network
from norm_nerf.tasks.ct import CTSignal, load_ct_image
from norm_nerf.tasks.image import ImageSignal, default_image
from norm_nerf.tasks.mri import MRISignal, shepp_logan_3d
from norm_nerf.tasks.shape import OccupancySignal, default_shape
from norm_nerf.utils.console import CONSOLE
from norm_nerf.utils.cpu_memory import retain_freed_memory


def _signals() -> dict[str, tuple[object, int, int, int, int]]:
    """task -> (signal, in_dim, out_dim, depth, width) at the CPU-preset sizes."""
    return {
        "image 128^2": (ImageSignal(default_image(128)), 2, 3, 10, 28),
        "ct 128^2, 100 angles": (CTSignal(load_ct_image(None, 128), 100), 2, 1, 4, 256),
        "mri 32^3, 25%": (MRISignal(shepp_logan_3d(32), 0.25), 3, 1, 2, 256),
        "shape 64^3, batch 16384": (OccupancySignal(*default_shape(), grid=64, batch_size=16384), 3, 1, 2, 256),
    }


def _median_time(fn, repeats: int, inner: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def _time_task(signal, in_dim: int, out_dim: int, depth: int, width: int, method: str, repeats: int) -> dict:
    net = build_network(method, in_dim, out_dim, depth, width, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = getattr(signal, "batch_size", None)
    coords = signal.coords
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = None if batch is None else torch.randint(len(coords), (batch,), generator=gen)
        pred = net(coords if idx is None else coords[idx])
        loss = signal.loss(pred, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n = len(coords) if batch is None else batch
    fixed = torch.rand(n, out_dim, requires_grad=True)
    fixed_idx = None if batch is None else torch.randint(len(coords), (batch,), generator=gen)

    def data_only() -> None:
        signal.loss(fixed, fixed_idx).backward()

    t_step = _median_time(step, repeats)
    t_data = _median_time(data_only, repeats)
    return {
        "steps_per_second": 1.0 / t_step,
        "seconds_per_step": t_step,
        "data_seconds_per_step": t_data,
        "data_fraction": t_data / t_step,
        "net": f"{depth}x{width}",
        "points_per_step": n,
    }


def bench(method: str, repeats: int, tasks: tuple[str, ...]) -> dict[str, dict[str, float]]:
    results = {}
    for name, (signal, in_dim, out_dim, depth, width) in _signals().items():
        if name.split()[0] not in tasks:
            continue
        r = _time_task(signal, in_dim, out_dim, depth, width, method, repeats)
        results[name] = r
        speed, data = r["steps_per_second"], 100 * r["data_fraction"]
        CONSOLE.print(f"{name:26s} {method:8s} {speed:8.2f} steps/s   data {data:5.1f}%")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["relu", "pe+cn"])
    parser.add_argument("--tasks", nargs="+", default=["image", "ct", "mri", "shape"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/task_speed.json"))
    args = parser.parse_args()
    retain_freed_memory()  # as the norm-inr CLI does
    report = {
        "machine": machine_info(),
        "note": "median of repeats; ratios within one run are what to compare (shared, noisy machines)",
        "results": {m: bench(m, args.repeats, tuple(args.tasks)) for m in args.methods},
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
