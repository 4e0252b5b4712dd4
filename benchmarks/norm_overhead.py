"""Cost of each normalization in a coordinate MLP: forward+backward step time as a ratio to ``none``.

For a 10x28 and an 8x256 ReLU ``NormMLP``, one training step (forward, MSE loss, backward) is timed for every norm
and implementation, and the median over repeats is taken. Configurations are interleaved within each repeat, so that
the ratios to ``none`` in one run share the machine's load; compare ratios, not absolute times, across runs.

* CPU (65 536 points by default): ``reference`` (plain autograd expressions), ``fast`` (fused kernels and custom
  autograd Functions) and, for bn/gn/cn/rms, ``compiled`` (the C++/OpenMP kernels, built before timing; left out with
  ``--no-compiled`` or when they cannot be built; on a CPU the default ``impl="auto"`` is ``compiled``). Wall-clock
  times.
* CUDA, where a GPU is present (65 536 and 262 144 points by default): ``reference``, ``fast``, ``triton`` (the
  Triton kernels, for bn/gn/cn/rms; on a GPU the default ``impl="auto"`` is ``triton``) and ``torch.compile``. Each
  step starts on an idle GPU (synchronised) and is timed with CUDA events from its first launch to its last kernel,
  so launch overhead counts as it does in training. Triton kernels are compiled (and checked) in the warm-up.

``--torch-compile`` adds, on the CPU, the whole MLP built with ``impl="reference"`` under ``torch.compile``
(compiled before timing; ``none`` too, its ratio is to the eager ``none``); on CUDA it is always timed (unless
``--no-cuda-torch-compile``). ``--eikonal`` times a NeuS-shaped step instead: a softplus MLP on 3-D points whose loss
adds an eikonal term on the gradient of its first output w.r.t. the input, so every norm is differentiated twice
(double backward; torch.compile is left out, it has no double backward). ``--devices cuda`` skips the CPU section
(and the C++ build), e.g. for a quick GPU check.

    .venv/bin/python benchmarks/norm_overhead.py [--repeats 5] [--nets 10x28 8x256] [--points 65536] [--no-compiled]
    .venv/bin/python benchmarks/norm_overhead.py --devices cuda [--cuda-points 65536 262144] [--cuda-repeats 20]
    .venv/bin/python benchmarks/norm_overhead.py --eikonal --nets 8x128 --points 16384 \
        --out benchmarks/results/norm_overhead_eikonal.json

The report (JSON, and a plot beside it) holds ``results[device]["<depth>x<width>@<points>"][norm][impl]``.
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
from norm_nerf.core.triton import triton_kernels_for
from norm_nerf.utils.cpu_memory import retain_freed_memory

TARGETS = {"bn": 1.15, "ln": 1.15, "rms": 1.15, "gn": 1.25, "cn": 1.25}
"""Issue #8 targets for the 8x256 net on the 2-core CPU (ratio to ``none``)."""
CUDA_TARGETS = {"bn": 1.10, "ln": 1.10, "rms": 1.10, "gn": 1.10, "cn": 1.15}
"""Issue #19 targets for the 8x256 net at 262 144 points on a GPU (ratio to ``none``)."""

IMPLS = ("reference", "fast", "compiled", "triton", "torch.compile")
"""``torch.compile``: the MLP built with ``impl="reference"``, wrapped in ``torch.compile``."""
KERNEL_KINDS = ("bn", "gn", "cn", "rms")
"""Norms with C++ and Triton kernels behind ``impl="compiled"`` / ``"triton"`` (for ``ln`` they equal ``fast``)."""


def _configs(impls: set[str]) -> list[tuple[str, str]]:
    """(norm, impl) pairs; ``none`` runs eager (``fast``) and, with ``torch.compile`` among ``impls``, compiled."""
    return (
        [("none", "fast")]
        + [("none", "torch.compile")] * ("torch.compile" in impls)
        + [
            (kind, impl)
            for kind in NORM_KINDS
            if kind != "none"
            for impl in IMPLS
            if impl in impls and (impl not in ("compiled", "triton") or kind in KERNEL_KINDS)
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


def _time_repeats(
    steps: dict[tuple[str, str], Callable[[], None]], repeats: int, device: torch.device
) -> dict[tuple[str, str], list[float]]:
    """Seconds per step for every configuration, ``repeats`` times, interleaved. On CUDA each step starts on an idle
    GPU and is timed by CUDA events (read after each round, so the timing itself adds no sync inside a step)."""
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        if device.type != "cuda":
            for key, step in steps.items():
                start = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - start)
            continue
        events = []
        for key, step in steps.items():
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            begin.record()
            step()
            end.record()
            events.append((key, begin, end))
        torch.cuda.synchronize(device)
        for key, begin, end in events:
            times[key].append(begin.elapsed_time(end) / 1000.0)
    return times


def bench_net(
    depth: int,
    width: int,
    points: int,
    repeats: int,
    device: torch.device,
    impls: set[str],
    eikonal: bool = False,
    warmup: int = 1,
) -> dict[str, dict]:
    """Median step time and ratio to ``none`` for every (norm, impl) of ``impls`` on one net size."""
    gen = torch.Generator().manual_seed(0)
    in_dim, activation = (3, "softplus") if eikonal else (2, "relu")
    x = (torch.rand(points, in_dim, generator=gen) * 2 - 1).to(device)
    target = torch.rand(points, 3, generator=gen).to(device)
    steps = {}
    for kind, impl in _configs(impls):
        torch.manual_seed(0)
        opts = {"impl": "reference" if impl == "torch.compile" else impl}
        net = NormMLP(in_dim, 3, depth, width, norm=kind, activation=activation, norm_opts=opts).to(device).train()
        steps[(kind, impl)] = _step_fn(torch.compile(net) if impl == "torch.compile" else net, x, target, eikonal)
    for _ in range(warmup):  # allocations, lazy init, torch.compile and Triton compilation
        for step in steps.values():
            step()
    times = _time_repeats(steps, repeats, device)
    base = statistics.median(times[("none", "fast")])
    results: dict[str, dict] = {}
    for (kind, impl), ts in times.items():
        median = statistics.median(ts)
        results.setdefault(kind, {})[impl] = {"median_s": median, "ratio_to_none": median / base, "times_s": ts}
    return results


def _print_table(name: str, results: dict[str, dict]) -> None:
    impls = [impl for impl in IMPLS if any(impl in by_impl for by_impl in results.values())]
    print(f"\n{name}: step time / none (eager)")
    print("  " + " " * 6 + "".join(f"{impl:>15s}" for impl in impls))
    for kind, by_impl in results.items():
        cells = [f"{by_impl[impl]['ratio_to_none']:14.2f}x" if impl in by_impl else " " * 15 for impl in impls]
        print(f"  {kind:6s}" + "".join(cells))


def plot(report: dict, path: Path) -> None:
    """Grouped bars (one per impl) per norm, one panel per device, net and number of points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(dev, key, res) for dev, nets in report["results"].items() for key, res in nets.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (dev, key, res) in zip(axes[0], panels):
        kinds = [k for k in res if k != "none"]
        impls = [impl for impl in IMPLS if any(impl in res[k] for k in kinds)]
        width = 0.8 / max(len(impls), 1)
        for i, impl in enumerate(impls):
            offset = (i - (len(impls) - 1) / 2) * width
            idx = [j for j, k in enumerate(kinds) if impl in res[k]]
            ratios = [res[kinds[j]][impl]["ratio_to_none"] for j in idx]
            bars = ax.bar([j + offset for j in idx], ratios, width=width, label=impl)
            ax.bar_label(bars, fmt="%.2f", fontsize=6)
        net, points = key.split("@")
        targets = TARGETS if dev == "cpu" else CUDA_TARGETS
        if net == "8x256" and not report.get("eikonal") and (dev == "cpu" or points == "262144"):
            ax.scatter(range(len(kinds)), [targets[k] for k in kinds], marker="_", s=400, c="k", label="target")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xticks(range(len(kinds)), kinds)
        step = "eikonal step" if report.get("eikonal") else "step"
        ax.set_title(f"{dev}, {net} MLP, {points} points, {step}", fontsize=9)
        ax.set_ylabel("fwd+bwd step time / none")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _versions() -> dict[str, str | None]:
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - not installed or broken
        triton_version = None
    return {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "triton": triton_version}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["10x28", "8x256"], help="depth x width")
    parser.add_argument("--points", nargs="+", type=int, default=[65536], help="points per step on the CPU")
    parser.add_argument("--cuda-points", nargs="+", type=int, default=[65536, 262144], help="points per step on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cuda-repeats", type=int, default=20)
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=["cpu", "cuda"],
                        help="sections to run (cuda only where a GPU is present)")  # fmt: skip
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled (C++) kernels")
    parser.add_argument("--eikonal", action="store_true", help="NeuS-shaped step: softplus net + eikonal loss")
    parser.add_argument("--torch-compile", action="store_true", help="also torch.compile(reference MLP) on the CPU")
    parser.add_argument("--no-cuda-torch-compile", action="store_true", help="skip torch.compile on CUDA")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator alone (default: retain freed memory, as our CLIs)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON report (default benchmarks/results/norm_overhead.json, "
                             "norm_overhead_cuda.json with --devices cuda)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.eikonal and args.torch_compile:
        parser.error("--torch-compile cannot be combined with --eikonal: torch.compile has no double backward")
    run_cpu = "cpu" in args.devices
    run_cuda = "cuda" in args.devices and torch.cuda.is_available()
    if "cuda" in args.devices and not run_cuda:
        print("no CUDA device: the CUDA section is skipped")
    out = args.out or Path(f"benchmarks/results/norm_overhead{'' if run_cpu else '_cuda'}.json")
    retained = flushed = compiled = False
    if run_cpu:
        retained = False if args.default_allocator else retain_freed_memory()
        compiled = not args.no_compiled and cpu_kernels() is not None  # builds it now, outside the timings
        flushed = flush_denormals()  # as CPU nerfstudio runs (NORM_NERF_FLUSH_DENORMALS=0 opts out)
    sections: list[tuple[torch.device, int, list[int], set[str], int]] = []
    if run_cpu:
        cpu_impls = {"reference", "fast", *(["compiled"] * compiled), *(["torch.compile"] * args.torch_compile)}
        sections.append((torch.device("cpu"), args.repeats, args.points, cpu_impls, 1))
    triton_ok = False
    if run_cuda:
        cuda = torch.device("cuda")
        triton_ok = triton_kernels_for(torch.zeros(2, 2, device=cuda)) is not None  # loads and checks them
        cuda_impls = {"reference", "fast", *(["triton"] * triton_ok)}
        if not (args.eikonal or args.no_cuda_torch_compile):
            cuda_impls.add("torch.compile")
        sections.append((cuda, args.cuda_repeats, args.cuda_points, cuda_impls, 3))
    results: dict[str, dict] = {}
    for device, repeats, points_list, impls, warmup in sections:
        for points in points_list:
            for net in args.nets:
                depth, width = (int(v) for v in net.split("x"))
                res = bench_net(depth, width, points, repeats, device, impls, args.eikonal, warmup)
                results.setdefault(device.type, {})[f"{net}@{points}"] = res
                _print_table(f"{device.type} {net}, {points} points", res)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    report = {
        "machine": machine_info(
            cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            malloc_env={k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            retain_freed_memory=retained,
            flush_denormal_threads=flushed,
            versions=_versions(),
            triton_kernels=triton_ok if run_cuda else None,
            env={k: os.environ[k] for k in ("NORM_NERF_TRITON", "NORM_NERF_COMPILED") if k in os.environ},
        ),
        "note": (
            "median of interleaved repeats of one fwd+bwd step (CPU: wall clock; CUDA: CUDA events from an idle "
            "GPU); ratios to 'none' within one run are what to compare (shared, noisy machines). Targets: 8x256 on "
            "the CPU bn/ln/rms <= 1.15, gn/cn <= 1.25; 8x256 at 262144 points on a GPU cn <= 1.15, others <= 1.10."
        ),
        "points": {device.type: points_list for device, _, points_list, _, _ in sections},
        "eikonal": args.eikonal,
        "repeats": {device.type: repeats for device, repeats, _, _, _ in sections},
        "targets_8x256_cpu": TARGETS,
        "targets_8x256_262144_cuda": CUDA_TARGETS,
        "results": results,
    }
    write_report(report, out, lambda path: plot(report, path))


if __name__ == "__main__":
    main()
