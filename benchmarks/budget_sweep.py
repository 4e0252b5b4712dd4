"""How a signal task's result grows with the step budget: where each method's curve flattens (sizing the presets).

Every method is trained from scratch at every budget (the decayed learning rate makes a run of N steps different
from the first N steps of a longer run), through ``norm-inr``'s own runner, and scored in eval mode. A method counts
as converged at the first budget N whose doubling from N/2, and every later doubling, changed the result by less
than the convergence threshold (``norm_nerf.tasks.trainer.CONVERGENCE_THRESHOLD``: 0.1 dB PSNR, 0.002 IoU): the rule
``norm-inr table --check-halving`` applies to one budget, so a table cell of N steps passes it::

    .venv/bin/python benchmarks/budget_sweep.py ct --methods pe pe+cn siren --steps 1000 2000 4000 8000 16000 \\
        --extra "--size 64 --angles 25 --depth 2 --width 128" --out benchmarks/results/budget_ct.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _report import machine_info, write_report

METRIC = {"image": "psnr", "ct": "psnr", "mri": "psnr", "shape": "iou"}


def _run(task: str, method: str, steps: int, extra: list[str], out: Path, threads: int) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        cmd = [sys.executable, "-m", "norm_nerf.tasks", task, "--method", method, "--steps", str(steps), *extra,
               "--out", str(out), "--overwrite", "--no-progress"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    record = json.loads(metrics.read_text())
    return {"steps": steps, "metric": record[METRIC[task]], "seconds": record["seconds"],
            "best_train_mode": record.get(f"{METRIC[task]}_best_train_mode")}  # fmt: skip


def _plot(results: dict, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in results.items():
        ax.plot([r["steps"] for r in runs], [r["metric"] for r in runs], "o-", label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training steps (each a full run with its own decayed schedule)")
    ax.set_ylabel(f"{metric}, eval mode, final model")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from norm_nerf.tasks.trainer import CONVERGENCE_THRESHOLD

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(METRIC))
    parser.add_argument("--methods", nargs="+", default=["pe", "pe+cn"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1000, 2000, 4000, 8000])
    parser.add_argument("--extra", default="", help="flags for every run, one quoted string (--size 64 --angles 25)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (threads per run = cores / jobs)")
    parser.add_argument("--threads", type=int, default=None, help="threads per run (default: cores / jobs)")
    parser.add_argument("--work", type=Path, default=Path("outputs/budget_sweep"), help="the runs (kept: resumable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/budget_sweep.json"))
    args = parser.parse_args()
    if sorted(set(args.steps)) != args.steps or args.steps[0] < 1:
        parser.error("--steps must be increasing positive budgets, e.g. 1000 2000 4000")
    extra = shlex.split(args.extra)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    work = args.work / args.task
    jobs = [(m, s) for m in args.methods for s in args.steps]

    def run(job: tuple[str, int]) -> dict:
        method, steps = job
        return _run(args.task, method, steps, extra, work / method.replace("+", "_") / str(steps), threads)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = list(pool.map(run, jobs))
    metric, threshold = METRIC[args.task], CONVERGENCE_THRESHOLD[METRIC[args.task]]
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    for (method, _), run in zip(jobs, done):
        results[method].append(run)
    converged_at = {}
    for method, runs in results.items():
        for prev, run in zip(runs, runs[1:]):
            run["gain_from_previous"] = run["metric"] - prev["metric"]
            run["doubling"] = run["steps"] == 2 * prev["steps"]
        # the first budget N whose doubling from N/2, and every later doubling, changed the result by less than the
        # threshold: a cell of N steps passes the table's --check-halving (a dip then a rise is not converged)
        flat = [r["doubling"] and abs(r["gain_from_previous"]) < threshold for r in runs[1:]]
        converged_at[method] = next((r["steps"] for k, r in enumerate(runs[1:]) if all(flat[k:])), None)
        print(method, [(r["steps"], round(r["metric"], 3)) for r in runs], "converged at", converged_at[method])
    report = {
        "machine": machine_info(threads_per_run=threads, jobs=args.jobs),
        "config": {"task": args.task, "methods": args.methods, "steps": args.steps, "extra": args.extra},
        "rule": f"converged at the first budget N whose doubling from N/2, and every later doubling, changed the "
        f"result by less than {threshold} ({metric}): a cell of N steps passes norm-inr table --check-halving",
        "converged_at": converged_at,
        "results": results,
    }
    write_report(report, args.out, lambda path: _plot(results, metric, path))


if __name__ == "__main__":
    main()
