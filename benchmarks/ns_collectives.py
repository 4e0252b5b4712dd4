"""Collectives per training step of norm-* in two processes (``torchrun``, gloo on CPU), counted by torch's profiler.

Each configuration trains ``norm-mipnerf`` (the settings of ``ns_distributed.py``) in two processes; rank 0 profiles
the steps after ``--warmup`` and counts the profiler's ``gloo:*`` collective events per step: the norms' all-reduces
and DDP's (its gradient buckets and, with ``find_unused_parameters``, its bitmap of unused parameters). The norms'
own sums over ranks are counted too, by wrapping ``norm_nerf.core.distributed.all_reduce_sum_`` (what every one of
them calls), with the number of bn/gn/cn layers and of their train-mode forward passes per step; between the ranks of
one machine those sums go through shared memory (``norm_nerf.core.local_sum``) and are no gloo events, unless
``--through gloo`` (``NORM_NERF_LOCAL_SUM=0``). ``--impls reference`` gives the reference expressions' counts (each
synced layer's differentiable all-reduce, forward and backward), ``auto`` the kernels'::

    .venv/bin/python benchmarks/ns_collectives.py [--norms cn bn gn none] [--impls reference auto] [--steps 8]
        [--through default gloo] [--out benchmarks/results/ns_collectives.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _report import machine_info, settings, write_report
from ns_distributed import _free_port, _scene, add_run_options


def _worker(args: argparse.Namespace) -> None:
    """One rank: train with the profiler around every step after the warm-up; rank 0 writes the counts."""
    import torch
    from nerfstudio.engine.trainer import Trainer

    import norm_nerf.core.distributed as distributed
    from norm_nerf.core.norms import RunningStatsNorm
    from norm_nerf.ns.launch import train
    from norm_nerf.ns.runs import cpu_preset, method_config

    cfg = cpu_preset(method_config("norm-mipnerf"), args.scene, args.run_dir, steps=args.steps, rays=args.rays,
                     samples=args.samples, width=args.width)  # fmt: skip
    cfg.pipeline.model.norm = args.norm
    cfg.pipeline.model.norm_impl = args.impl
    steps: list[dict] = []
    calls = {"sums": 0, "passes": 0}
    all_reduce_sum_ = distributed.all_reduce_sum_

    def counted_sum(t):
        calls["sums"] += 1
        return all_reduce_sum_(t)

    def count_pass(module, inputs, output) -> None:
        if module.training:
            calls["passes"] += 1

    iteration = Trainer.train_iteration

    def profiled(self, step: int):
        if step == 0:
            for m in self.pipeline.model.modules():
                if isinstance(m, RunningStatsNorm):
                    m.register_forward_hook(count_pass)
        if step < args.warmup:
            return iteration(self, step)
        calls.update(sums=0, passes=0)
        distributed.all_reduce_sum_ = counted_sum
        try:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                out = iteration(self, step)
        finally:
            distributed.all_reduce_sum_ = all_reduce_sum_
        events = Counter(e.name for e in prof.events() if e.name.startswith("gloo:"))
        layers = sum(isinstance(m, RunningStatsNorm) for m in self.pipeline.model.modules())
        steps.append({"gloo": dict(events), "norm_sums": calls["sums"], "norm_layers": layers,
                      "norm_forward_passes": calls["passes"]})  # fmt: skip
        return out

    Trainer.train_iteration = profiled
    train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        args.result.write_text(json.dumps(steps))


def _run(norm: str, impl: str, through: str, scene: Path, work: Path, args: argparse.Namespace) -> list[dict]:
    result = work / f"{norm}_{impl}_{through}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           __file__, "--worker", "--norm", norm, "--impl", impl, "--scene", str(scene), "--run-dir",
           str(work / "runs" / f"{norm}_{impl}_{through}"), "--result", str(result), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--rays", str(args.rays), "--samples", str(args.samples),
           "--width", str(args.width)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "NORM_NERF_LOCAL_SUM": "0" if through == "gloo" else "1"}  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent)
    if not result.is_file():
        raise RuntimeError(f"{norm} {impl} {through} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", nargs="+", default=["cn", "bn", "gn", "none"])
    parser.add_argument("--impls", nargs="+", default=["reference", "auto"])
    parser.add_argument(
        "--through",
        nargs="+",
        default=["default", "gloo"],
        choices=["default", "gloo"],
        help="the norms' sums as by default (shared memory between local ranks) or through gloo",
    )
    add_run_options(parser, steps=8, warmup=3)
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_collectives"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ns_collectives.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--norm", "--impl", "--scene", "--run-dir", "--result"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.scene, args.run_dir, args.result = Path(args.scene), Path(args.run_dir), Path(args.result)
        _worker(args)
        return
    work = args.work.resolve()
    scene = _scene(work, args.size)
    results: dict[str, dict[str, dict]] = {}
    for norm in args.norms:
        for impl in args.impls if norm != "none" else args.impls[:1]:
            for through in args.through:
                steps = _run(norm, impl, through, scene, work, args)
                last = steps[-1]
                if any(s != last for s in steps):
                    print(f"{norm} {impl} {through}: the counts differ between steps: {steps}")
                per_step = last["gloo"].get("gloo:all_reduce", 0)
                results.setdefault(norm, {}).setdefault(impl, {})[through] = {
                    **last,
                    "gloo_all_reduce_per_step": per_step,
                    "steps_counted": len(steps),
                }
                print(norm, impl, through, results[norm][impl][through])
    report = {
        "machine": machine_info(cpu_count=os.cpu_count()),
        "config": settings(args, ("norms", "impls", "through", "steps", "warmup", "rays", "samples", "width", "size")),
        "note": "norm-mipnerf in two processes (torchrun, gloo); rank 0's profiler: gloo collective events per "
        "training step (norms' all-reduces where they go through gloo + DDP's buckets and unused-parameter bitmap); "
        "norm_sums: the norms' own sums over ranks (through shared memory by default, through gloo with 'gloo').",
        "results": results,
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
