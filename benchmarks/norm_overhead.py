"""Cost of each normalization in a coordinate MLP: forward+backward step time as a ratio to ``none``.

For a 10x28 and an 8x256 ReLU ``NormMLP`` on 65 536 points, one training step (forward, MSE loss, backward)
is timed for every norm and implementation (``reference``: plain autograd expressions; ``fast``: fused
kernels and custom autograd Functions; for bn/gn/cn/rms also ``compiled``: the C++/OpenMP kernels, built
before timing, left out with ``--no-compiled`` or when they cannot be built; on a CPU the default
``impl="auto"`` is ``compiled``). Configurations are interleaved within each repeat
and the median over repeats is taken, so that the ratios to ``none`` in one run share the machine's load;
compare ratios, not absolute times, across runs. A CUDA section runs the same when a GPU is present.

``--torch-compile`` adds the whole MLP built with ``impl="reference"`` under ``torch.compile`` (compiled before
timing; ``none`` too, its ratio is to the eager ``none``). ``--eikonal`` times a NeuS-shaped step instead: a
softplus MLP on 3-D points whose loss adds an eikonal term on the gradient of its first output w.r.t. the
input, so every norm is differentiated twice (double backward).

    .venv/bin/python benchmarks/norm_overhead.py [--repeats 5] [--nets 10x28 8x256] [--points 65536] [--no-compiled]
    .venv/bin/python benchmarks/norm_overhead.py --eikonal --nets 8x128 --points 16384 \
        --out benchmarks/results/norm_overhead_eikonal.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _report import machine_info, write_report

from norm_nerf.core.cpu_kernels import cpu_kernels
from norm_nerf.core.cpu_setup import flush_denormals
from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import NORM_KINDS
from norm_nerf.utils.cpu_memory import retain_freed_memory

TARGETS = {"bn": 1.15, "ln": 1.15, "rms": 1.15, "gn": 1.25, "cn": 1.25}
"""Issue #8 targets for the 8x256 net on the 2-core CPU (ratio to ``none``)."""


IMPLS = ("reference", "fast", "compiled", "torch.compile")
"""``torch.compile``: the MLP built with ``impl="reference"``, wrapped in ``torch.compile`` (``--torch-compile``)."""
COMPILED_KINDS = ("bn", "gn", "cn", "rms")
"""Norms with C++ kernels behind ``impl="compiled"`` (for the others it is the same as ``fast``)."""


def _configs(compiled: bool, torch_compile: bool) -> list[tuple[str, str]]:
    """(norm, impl) pairs; ``none`` runs eager (``fast``) and, with ``torch_compile``, compiled."""
    wanted = {"reference", "fast", *(["compiled"] if compiled else []), *(["torch.compile"] if torch_compile else [])}
    return (
        [("none", "fast")]
        + [("none", "torch.compile")] * torch_compile
        + [
            (kind, impl)
            for kind in NORM_KINDS
            if kind != "none"
            for impl in IMPLS
            if impl in wanted and (impl != "compiled" or kind in COMPILED_KINDS)
        ]
    )


def _step_fn(net: NormMLP, x: torch.Tensor, target: torch.Tensor, eikonal: bool) -> Callable[[], None]:
    def step() -> None:
        net.zero_grad(set_to_none=True)
        if not eikonal:
            torch.nn.functional.mse_loss(net(x), target).backward()
            return
        xi = x.detach().requires_grad_(True)
        out = net(xi)
        (normal,) = torch.autograd.grad(out[:, :1].sum(), xi, create_graph=True)
        eik = (normal.norm(dim=-1) - 1.0).square().mean()
        (torch.nn.functional.mse_loss(out, target) + eik).backward()

    return step


def _timer(device: torch.device) -> Callable[[Callable[[], None]], float]:
    """Seconds for one call, synchronising the GPU around it when timing CUDA."""

    def timed(fn: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return timed


def bench_net(
    depth: int,
    width: int,
    points: int,
    repeats: int,
    device: torch.device,
    compiled: bool,
    eikonal: bool = False,
    torch_compile: bool = False,
) -> dict[str, dict]:
    """Median step time and ratio to ``none`` for every (norm, impl) on one net size."""
    gen = torch.Generator().manual_seed(0)
    in_dim, activation = (3, "softplus") if eikonal else (2, "relu")
    x = (torch.rand(points, in_dim, generator=gen) * 2 - 1).to(device)
    target = torch.rand(points, 3, generator=gen).to(device)
    steps = {}
    for kind, impl in _configs(compiled and device.type == "cpu", torch_compile):
        torch.manual_seed(0)
        opts = {"impl": "reference" if impl == "torch.compile" else impl}
        net = NormMLP(in_dim, 3, depth, width, norm=kind, activation=activation, norm_opts=opts).to(device).train()
        steps[(kind, impl)] = _step_fn(torch.compile(net) if impl == "torch.compile" else net, x, target, eikonal)
    timed = _timer(device)
    for step in steps.values():  # warm-up (allocations, lazy init)
        step()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(repeats):  # interleaved: every configuration once per repeat
        for key, step in steps.items():
            times[key].append(timed(step))
    base = statistics.median(times[("none", "fast")])
    results: dict[str, dict] = {}
    for (kind, impl), ts in times.items():
        median = statistics.median(ts)
        results.setdefault(kind, {})[impl] = {"median_s": median, "ratio_to_none": median / base, "times_s": ts}
    return results


def _print_table(name: str, results: dict[str, dict]) -> None:
    print(f"\n{name}: step time / none (eager)")
    print("  " + " " * 6 + "".join(f"{impl:>15s}" for impl in IMPLS))
    for kind, by_impl in results.items():
        cells = [f"{by_impl[impl]['ratio_to_none']:14.2f}x" if impl in by_impl else " " * 15 for impl in IMPLS]
        print(f"  {kind:6s}" + "".join(cells))


def plot(report: dict, path: Path) -> None:
    """Grouped bars (reference vs fast) per norm, one panel per device and net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(dev, net, res) for dev, nets in report["results"].items() for net, res in nets.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (dev, net, res) in zip(axes[0], panels):
        kinds = [k for k in res if k != "none"]
        for offset, impl in zip((-0.3, -0.1, 0.1, 0.3), IMPLS):
            idx = [i for i, k in enumerate(kinds) if impl in res[k]]
            if idx:
                ratios = [res[kinds[i]][impl]["ratio_to_none"] for i in idx]
                bars = ax.bar([i + offset for i in idx], ratios, width=0.2, label=impl)
                ax.bar_label(bars, fmt="%.2f", fontsize=6)
        if dev == "cpu" and net == "8x256" and not report.get("eikonal"):
            ax.scatter(range(len(kinds)), [TARGETS[k] for k in kinds], marker="_", s=400, c="k", label="target")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xticks(range(len(kinds)), kinds)
        step = "eikonal step" if report.get("eikonal") else "step"
        ax.set_title(f"{dev}, {net} MLP, {report['points']} points, {step}")
        ax.set_ylabel("fwd+bwd step time / none")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["10x28", "8x256"], help="depth x width")
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cuda-repeats", type=int, default=20)
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled (C++) kernels")
    parser.add_argument("--eikonal", action="store_true", help="NeuS-shaped step: softplus net + eikonal loss")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile(reference MLP)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator alone (default: retain freed memory, as our CLIs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/norm_overhead.json"))
    args = parser.parse_args()
    if args.eikonal and args.torch_compile:
        parser.error("--torch-compile cannot be combined with --eikonal: torch.compile has no double backward")
    retained = False if args.default_allocator else retain_freed_memory()
    compiled = not args.no_compiled and cpu_kernels() is not None  # builds it now, outside the timings
    flushed = flush_denormals()  # as CPU nerfstudio runs (NORM_NERF_FLUSH_DENORMALS=0 opts out)
    devices = [(torch.device("cpu"), args.repeats)]
    if torch.cuda.is_available():
        devices.append((torch.device("cuda"), args.cuda_repeats))
    results: dict[str, dict] = {}
    for device, repeats in devices:
        for net in args.nets:
            depth, width = (int(v) for v in net.split("x"))
            res = bench_net(depth, width, args.points, repeats, device, compiled, args.eikonal, args.torch_compile)
            results.setdefault(device.type, {})[net] = res
            _print_table(f"{device.type} {net}", res)
    report = {
        "machine": machine_info(
            cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            malloc_env={k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            retain_freed_memory=retained,
            flush_denormal_threads=flushed,
        ),
        "note": (
            "median of interleaved repeats of one fwd+bwd step; ratios to 'none' within one run are what to "
            "compare (shared, noisy machines). Targets (8x256, CPU): bn/ln/rms <= 1.15, gn/cn <= 1.25."
        ),
        "points": args.points,
        "eikonal": args.eikonal,
        "repeats": args.repeats,
        "targets_8x256_cpu": TARGETS,
        "results": results,
    }
    write_report(report, args.out, lambda path: plot(report, path))


if __name__ == "__main__":
    main()
