"""Training throughput of norm-* in one process and in several (``torchrun`` + ``norm_nerf.scripts.train``, gloo).

Each configuration trains ``norm-mipnerf`` through the user's command (``norm-train`` for one process,
``torchrun --nproc-per-node N -m norm_nerf.scripts.train`` for N) on the same generated scene with the same rays
per rank, and reads nerfstudio's own per-iteration time ("Train Iter (time)", rank 0's tensorboard log; with several
ranks it includes waiting for the slowest and the gradient all-reduce). Speed is the median over the steps after the
first ``--warmup``; per process rays/s = rays per rank / step time, total = ranks x that. Ratios are to one process
with one thread in the same run (shared, noisy machine).

On a machine with C cores, 1 process x C threads and C processes x 1 thread share the same cores: this measures the
cost of the extra processes and all-reduces, not scaling (that needs a core or GPU per process). The report records
how busy the machine was: the 1-minute load average and the time of one bare sum over two processes (a synced norm
layer makes one per pass) through gloo and through the shared-memory region (``norm_nerf.core.local_sum``, what the
ranks of one machine use), before and after the runs. A layout with ``-gloo`` (e.g. ``2x1-gloo``) runs with
``NORM_NERF_LOCAL_SUM=0``: the norms' sums through gloo, as before the region existed::

    .venv/bin/python benchmarks/ns_distributed.py [--layouts 1x1 1x2 2x1 2x1-gloo] [--norms none cn] [--steps 40]
        [--repeats 1] [--out benchmarks/results/ns_distributed.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from _report import machine_info, settings, write_report


def _scene(work: Path, size: int) -> Path:
    from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene

    scene = work / "scene"
    if not (scene / "transforms_test.json").is_file():
        write_blender_scene(BlenderSceneConfig(out=scene, shape="torus", views=24, val_views=1, test_views=1,
                                               size=size, overwrite=True, progress=False))  # fmt: skip
    return scene


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_run_options(parser: argparse.ArgumentParser, steps: int, warmup: int) -> None:
    """The training settings of the distributed benchmarks (this one and ``ns_collectives.py``)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup, help="first steps left out")
    parser.add_argument("--rays", type=int, default=256, help="rays per rank and step")
    parser.add_argument("--samples", type=int, default=32, help="coarse and fine samples per ray")
    parser.add_argument("--width", type=int, default=64, help="field MLP width")
    parser.add_argument("--size", type=int, default=32, help="image width of the generated scene")


def _train(scene: Path, out: Path, name: str, procs: int, threads: int, norm: str, args: argparse.Namespace,
           gloo: bool = False) -> Path:  # fmt: skip
    """Train one configuration through the user's command (``gloo``: the norms' sums through gloo); returns the run
    folder."""
    launcher = [sys.executable, "-m", "norm_nerf.scripts.train"]
    if procs > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
                    str(_free_port()), "-m", "norm_nerf.scripts.train"]  # fmt: skip
    cmd = [*launcher, "norm-mipnerf", "--data", str(scene), "--output-dir", str(out), "--experiment-name", name,
           "--timestamp", "run", "--max-num-iterations", str(args.steps), "--vis", "tensorboard",
           "--viewer.quit-on-train-completion", "True", "--steps-per-eval-batch", "1000000",
           "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
           "--steps-per-save", "1000000", "--logging.steps-per-log", "1",
           "--pipeline.model.norm", norm, "--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
           "--pipeline.model.num-coarse-samples", str(args.samples),
           "--pipeline.model.num-importance-samples", str(args.samples),
           "--pipeline.model.base-mlp-layer-width", str(args.width),
           "--pipeline.model.head-mlp-layer-width", str(args.width // 2)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NORM_NERF_LOCAL_SUM": "0" if gloo else "1"}
    shutil.rmtree(out / name, ignore_errors=True)  # a previous run's tensorboard log would be read too
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out / name / "norm-mipnerf" / "run"


def _latency_worker(result: Path) -> None:
    """One of two ranks: the median time of a sum of a synced ``cn`` layer's buffer (1 + 2 x 64 float64) over the
    ranks with no work between, over 5 blocks of 200, through gloo and through the shared-memory region; rank 0
    writes both in microseconds (JSON)."""
    import json
    import time

    import torch
    import torch.distributed as dist

    from norm_nerf.core.local_sum import world_local_sum

    dist.init_process_group("gloo")
    local = world_local_sum()
    buf = torch.zeros(1 + 2 * 64, dtype=torch.float64)
    times = {}
    for name, reduce in (("gloo", dist.all_reduce), ("local", local.sum_ if local is not None else None)):
        if reduce is None:
            continue
        for _ in range(50):
            reduce(buf)
        blocks = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                reduce(buf)
            blocks.append((time.perf_counter() - start) / 200 * 1e6)
        times[name] = statistics.median(blocks)
    if dist.get_rank() == 0:
        result.write_text(json.dumps(times))
    dist.destroy_process_group()


def _sum_microseconds(work: Path) -> dict[str, float]:
    """:func:`_latency_worker` in two processes of one thread each: what one synchronisation point costs on this
    machine now through gloo and through shared memory (a busy CPU makes a rank wait for the other to be
    scheduled)."""
    import json

    result = (work / "latency.json").resolve()
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           __file__, "--latency-probe", str(result)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent)
    return json.loads(result.read_text())


def _step_seconds(run: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(run.glob("events.out.tfevents.*"))
    if len(events) != 1:
        raise RuntimeError(f"{run}: expected one tensorboard log (rank 0's), found {len(events)}")
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    return [e.value for e in sorted(acc.Scalars("Train Iter (time)"), key=lambda e: e.step)]


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    width = 0.8 / len(results)
    for k, (norm, by_layout) in enumerate(results.items()):
        xs = [i + k * width for i in range(len(layouts))]
        axes[0].bar(xs, [by_layout[layout]["rays_per_second_per_process"] for layout in layouts], width, label=norm)
        axes[1].bar(xs, [by_layout[layout]["rays_per_second_total"] for layout in layouts], width, label=norm)
    for ax, title in zip(axes, ("training rays/s per process", "training rays/s, all processes")):
        ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(layouts))], layouts)
        ax.set_xlabel("processes x threads per process")
        ax.set_title(title)
        ax.legend(title="norm")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", nargs="+", default=["1x1", "1x2", "2x1", "2x1-gloo"],
                        help="PROCESSESxTHREADS each, -gloo: the norms' sums through gloo")  # fmt: skip
    parser.add_argument("--norms", nargs="+", default=["none", "cn"])
    add_run_options(parser, steps=40, warmup=5)
    parser.add_argument("--repeats", type=int, default=1, help="runs of every configuration, interleaved; median")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_distributed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ns_distributed.json"))
    parser.add_argument("--latency-probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latency_probe is not None:
        _latency_worker(args.latency_probe)
        return
    layouts = []
    for text in args.layouts:
        shape, _, through = text.partition("-")
        procs, _, threads = shape.partition("x")
        counts = procs.isdigit() and threads.isdigit() and int(procs) >= 1 and int(threads) >= 1
        if not counts or through not in ("", "gloo"):
            parser.error(f"--layouts {text}: expected PROCESSESxTHREADS or PROCESSESxTHREADS-gloo, e.g. 2x1")
        layouts.append((text, int(procs), int(threads), through == "gloo"))
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.steps <= args.warmup + 2:
        parser.error(f"--steps {args.steps} leaves too few steps after --warmup {args.warmup}")
    scene = _scene(args.work, args.size)
    busy = {"load_average_1min_before": os.getloadavg()[0],
            "sum_microseconds_before": _sum_microseconds(args.work)}  # fmt: skip
    runs: dict[tuple[str, str], list[float]] = {}  # (norm, layout) -> the median step of each repeat
    for repeat in range(args.repeats):  # interleaved, so that a busy spell of the machine hits every configuration
        for norm in args.norms:
            for layout, procs, threads, gloo in layouts:
                name = f"{norm}_{layout}"
                run = _train(scene, args.work / "runs", name, procs, threads, norm, args, gloo)
                runs.setdefault((norm, layout), []).append(statistics.median(_step_seconds(run)[args.warmup :]))
                print(f"repeat {repeat + 1}/{args.repeats} {name}: {runs[norm, layout][-1]:.4f} s per step")
    results: dict[str, dict[str, dict]] = {}
    for norm in args.norms:
        results[norm] = {}
        for layout, procs, threads, gloo in layouts:
            step = statistics.median(runs[norm, layout])
            results[norm][layout] = {
                "processes": procs, "threads_per_process": threads, "norm_sums_through": "gloo" if gloo else "default",
                "rays_per_rank": args.rays, "step_seconds_median": step, "step_seconds_per_repeat": runs[norm, layout],
                "rays_per_second_per_process": args.rays / step, "rays_per_second_total": procs * args.rays / step,
                "steps_timed": args.steps - args.warmup,
            }  # fmt: skip
        base = results[norm].get("1x1")
        for r in results[norm].values():
            if base is not None:
                r["total_ratio_to_1x1"] = r["rays_per_second_total"] / base["rays_per_second_total"]
    busy.update(load_average_1min_after=os.getloadavg()[0], sum_microseconds_after=_sum_microseconds(args.work))
    report = {
        "machine": machine_info(cpu_count=os.cpu_count(), **busy),
        "config": settings(args),
        "note": "norm-mipnerf through norm-train / torchrun; rank 0's iteration time (median over the steps after "
        "the warm-up, then over the repeats); same rays per rank; ratios within one run. Processes x threads above "
        "the core count compete for the same cores: not scaling.",
        "results": results,
    }
    write_report(report, args.out, lambda path: _plot(results, path))


if __name__ == "__main__":
    main()
