"""Collecting a table's finished cells: means over inputs and seeds, convergence verdicts, settled orderings; writes
``results.json``, ``table.md`` and the plots."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from norm_nerf.tasks.common import TaskConfig
from norm_nerf.tasks.run import TASKS
from norm_nerf.tasks.settled import SETTLED_RULE, settled_orderings
from norm_nerf.tasks.table.cells import Cell
from norm_nerf.tasks.table.config import TableConfig
from norm_nerf.tasks.table.report import markdown_table, save_plots
from norm_nerf.tasks.trainer import CONVERGENCE_RULE, CONVERGENCE_THRESHOLD
from norm_nerf.utils.atomic import write_bytes_atomically
from norm_nerf.utils.jsonio import write_json

MEANS = (
    "arithmetic mean over a cell's inputs of the values in their metrics.json, per seed; then mean and sample std over "
    "the seeds (a null value makes the mean null)"
)
"""How ``results.json`` averages, as it states it."""


def collect(cfg: TableConfig, cells: list[Cell], failures: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Gather finished cells (and the failed ones) into results.json, table.md and plots."""
    task = TASKS[cfg.task]
    metric = task.metric
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    unconverged = []
    halves = {c.key: _read_metrics(c) for c in cells if c.steps is not None}
    threshold = CONVERGENCE_THRESHOLD.get(metric)
    for c in cells:
        record = _read_metrics(c) if c.steps is None else None
        if record is None:
            continue
        record["_seed"] = c.seed
        half = halves.get(c.key)
        if half is not None and threshold is not None:
            gain = record[metric] - half[metric]
            # two-sided: a cell that lost more than the threshold from more steps has not settled either
            record["convergence"] = {**(record.get("convergence") or {}), "gain_from_half_steps": gain,
                                     "converged_from_half_steps": bool(abs(gain) < threshold)}  # fmt: skip
        rows.setdefault(c.net, {}).setdefault(c.method, []).append(record)
        if _converged(record) is False:
            unconverged.append(c.name)
    results: dict[str, Any] = {"task": cfg.task, "preset": cfg.preset, "metric": metric, "means": MEANS, "nets": {}}
    if task.second_metric is not None:
        results["second_metric"], results["second_metric_title"] = task.second_metric
    for net, by_method in rows.items():
        results["nets"][net] = {
            m: _mean_cell(runs, task) for m, runs in sorted(by_method.items(), key=lambda kv: _order(cfg, kv[0]))
        }
    results["cells"] = len(cells)
    results["seeds"] = list(cfg.seeds)
    rule = f"{CONVERGENCE_RULE} ({metric}: {CONVERGENCE_THRESHOLD.get(metric)})"
    if cfg.check_halving:
        rule += "; and the change from half the steps to all steps, gain or loss, below the same threshold"
    results["convergence_rule"] = rule
    results["not_converged"] = unconverged
    if threshold is not None:
        results["settled_rule"] = SETTLED_RULE
        results["settled"] = {n: settled_orderings(c, metric, threshold) for n, c in results["nets"].items()}
    results["failed"] = list(failures)
    write_json(cfg.out / "results.json", results)
    write_bytes_atomically(cfg.out / "table.md", markdown_table(results).encode())
    if rows:
        save_plots(cfg, rows, results)
    return results


def _order(cfg: TableConfig, method: str) -> int:
    return cfg.methods.index(method) if method in cfg.methods else len(cfg.methods)


def _read_metrics(cell: Cell) -> dict[str, Any] | None:
    path = cell.out / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _converged(record: dict[str, Any]) -> bool | None:
    """A finished cell's convergence verdict: the last-10% rule and, with --check-halving, the half-steps gain (None:
    not recorded, or a folder of images with mixed verdicts)."""
    convergence = record.get("convergence") or {}
    if convergence.get("converged_from_half_steps") is False:
        return False
    verdict = convergence.get("converged")
    if verdict is None and isinstance(record.get("per_image"), dict):
        verdicts = [(r.get("convergence") or {}).get("converged") for r in record["per_image"].values()]
        verdict = all(verdicts) if verdicts and None not in verdicts else None
    return verdict


def _mean_cell(runs: list[dict[str, Any]], task: type[TaskConfig]) -> dict[str, Any]:
    """Means over a cell's inputs for each seed, then mean (and, with several seeds, std) over the seeds, of the
    task's metrics."""
    metric = task.metric
    keys = [metric, "ssim", f"{metric}_train_mode_final", f"{metric}_best_train_mode", "bpp", "seconds"]
    keys += [task.second_metric[0]] if task.second_metric is not None else []
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r.get("_seed", 0), []).append(r)
    out: dict[str, Any] = {}
    for k in keys:
        if all(k in r for r in runs):
            per_seed = [_mean([r[k] for r in group]) for group in by_seed.values()]
            out[k] = _mean(per_seed)
            if len(per_seed) > 1:
                out[f"{k}_std"] = float(np.std(per_seed, ddof=1))
    gains = [(r.get("convergence") or {}).get("gain_from_half_steps") for r in runs]
    if gains and None not in gains:
        out["gain_from_half_steps"] = _mean(gains)
    verdicts = [_converged(r) for r in runs]
    out.update(params=runs[0].get("params"), inputs=len(runs) // len(by_seed), seeds=len(by_seed))
    out["converged"] = None if None in verdicts else all(verdicts)
    return out


def _mean(values: list[Any]) -> float:
    """The mean of recorded values; a null (a non-finite number, by the JSON policy) makes it NaN (null again)."""
    return float(np.mean([math.nan if v is None else float(v) for v in values]))
