"""What the synchronised statistics' double backward costs: a NeuS-shaped eikonal step with synced norms against
the same step on one rank.

With several ranks, the double backward of a batch-dependent norm (an eikonal loss) runs another path than on one
rank: cross norm's kernels in halves with sums over the ranks between them, batch and group norm's reference
expressions instead of their analytic ones (``norm_nerf/core/functions``). This benchmark times that difference
without the communication: it makes a
process group of ONE rank and tells the norms there are two (``distributed_world_size``), so they take the synced
path and their sums over ranks return the rank's own sums. The statistics, and so every value, are those of the
one-rank path; only the code that runs differs. Per norm, the step time of the synced path over the one-rank path,
and both over the plain (``none``) step, medians of ``--repeats`` interleaved steps::

    .venv/bin/python benchmarks/synced_eikonal.py [--norms cn bn gn] [--net 8x128] [--points 16384] [--repeats 7]
        [--out benchmarks/results/synced_eikonal.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from _report import machine_info, settings, write_report
from norm_overhead import _step_fn, _time_repeats

import norm_nerf.core.distributed as distributed
from norm_nerf.core.cpu_setup import flush_denormals
from norm_nerf.core.mlp import NormMLP
from norm_nerf.utils.cpu_memory import retain_freed_memory


class _Synced:
    """Run a step with the norms on their synced path (they see two ranks in a one-rank group)."""

    def __init__(self, step) -> None:
        self.step = step

    def __call__(self) -> None:
        saved = distributed.distributed_world_size
        distributed.distributed_world_size = lambda: 2
        try:
            self.step()
        finally:
            distributed.distributed_world_size = saved


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = [n for n in results if n != "none"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for k, path_name in enumerate(("one_rank", "synced")):
        xs = [i + k * width for i in range(len(norms))]
        ax.bar(xs, [results[n][path_name]["ratio_to_none"] for n in norms], width, label=path_name.replace("_", " "))
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks([i + width / 2 for i in range(len(norms))], norms)
    ax.set_ylabel("eikonal step time / plain step")
    ax.set_title("double backward: kernels (one rank) vs synced path")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", nargs="+", default=["cn", "bn", "gn"])
    parser.add_argument("--net", default="8x128", help="DEPTHxWIDTH of the softplus MLP")
    parser.add_argument("--points", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synced_eikonal.json"))
    args = parser.parse_args()
    depth, width = (int(v) for v in args.net.split("x"))
    torch.set_num_threads(args.threads)
    retain_freed_memory()
    flush_denormals()
    store = Path(tempfile.mkdtemp()) / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        gen = torch.Generator().manual_seed(0)
        x, target = torch.rand(args.points, 3, generator=gen) * 2 - 1, torch.rand(args.points, 3, generator=gen)
        steps = {}
        for norm in ["none", *args.norms]:
            torch.manual_seed(0)
            net = NormMLP(3, 3, depth, width, norm=norm, activation="softplus").train()
            step = _step_fn(net, x, target, eikonal=True)
            steps[(norm, "one_rank")] = step
            if norm != "none":
                steps[(norm, "synced")] = _Synced(step)
        for step in steps.values():  # warm-up: allocations, the kernels' build, the one-rank group's sums
            step()
        times = _time_repeats(steps, args.repeats, torch.device("cpu"))
    finally:
        dist.destroy_process_group()
    base = statistics.median(times[("none", "one_rank")])
    results: dict[str, dict] = {}
    for (norm, path_name), ts in times.items():
        median = statistics.median(ts)
        results.setdefault(norm, {})[path_name] = {"median_s": median, "ratio_to_none": median / base, "times_s": ts}
    for norm in args.norms:
        results[norm]["synced_over_one_rank"] = (
            results[norm]["synced"]["median_s"] / results[norm]["one_rank"]["median_s"]
        )
        print(f"{norm}: one rank {results[norm]['one_rank']['ratio_to_none']:.2f}x, synced "
              f"{results[norm]['synced']['ratio_to_none']:.2f}x the plain step "
              f"(synced / one rank {results[norm]['synced_over_one_rank']:.2f})")  # fmt: skip
    report = {
        "machine": machine_info(cpu_count=os.cpu_count()),
        "config": settings(args),
        "note": "NeuS-shaped step (softplus MLP, MSE + eikonal loss) on the CPU; 'synced': the norms' synchronised-"
        "statistics path in a one-rank gloo group (same values, no communication): cn's double backward through "
        "the kernels' halves, bn/gn's through the reference expressions; 'one_rank': cn's fused double-backward "
        "kernel, bn/gn's analytic expressions.",
        "results": results,
    }
    write_report(report, args.out, lambda path: _plot(results, path))


if __name__ == "__main__":
    main()
