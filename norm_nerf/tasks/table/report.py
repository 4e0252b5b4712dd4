"""A table's results as people read them: the markdown table in the papers' layout and the plots."""

from __future__ import annotations

import math
from typing import Any

from norm_nerf.eval.plots import save_curves, save_rate_distortion
from norm_nerf.tasks.settled import finite, settled_text
from norm_nerf.tasks.table.config import TableConfig


def _digits(metric: str) -> int:
    return 4 if metric == "iou" else 2


def _signed(gain: Any, metric: str) -> str:
    """A gain with its sign, ``—`` when unknown; a value that rounds to zero reads +0.00, not -0.00."""
    if not finite(gain):
        return "—"
    return f"{round(gain, _digits(metric)) + 0.0:+.{_digits(metric)}f}"


def _cell_text(value: Any, metric: str, std: Any = None, converged: bool | None = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    spec = f".{_digits(metric)}f"
    text = format(value, spec) + (f" ± {format(std, spec)}" if std is not None and math.isfinite(std) else "")
    return text + ("" if converged is not False else " †")


def markdown_table(results: dict[str, Any]) -> str:
    """The papers' layout: one row per method, one eval-mode column per net (+ train-mode best for contrast)."""
    metric = results["metric"]
    nets = list(results["nets"])
    methods: list[str] = []
    for net in nets:
        methods += [m for m in results["nets"][net] if m not in methods]
    gains = any("gain_from_half_steps" in c for n in nets for c in results["nets"][n].values())
    second = results.get("second_metric")
    head = ["method"] + [f"{n} {metric} (eval)" for n in nets]
    head += [f"{n} {results.get('second_metric_title', second)}" for n in nets] if second else []
    head += [f"{n} best train-mode" for n in nets]
    head += [f"{n} gain from half the steps" for n in nets] if gains else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        vals = []
        for key in (metric, *([second] if second else []), f"{metric}_best_train_mode"):
            for n in nets:
                cell = results["nets"][n].get(m, {})
                converged = cell.get("converged", True) if key == metric else True
                vals.append(_cell_text(cell.get(key), metric, cell.get(f"{key}_std"), converged))
        for n in nets if gains else ():
            gain = results["nets"][n].get(m, {}).get("gain_from_half_steps")
            vals.append(_signed(gain, metric))
        lines.append("| " + " | ".join([m, *vals]) + " |")
    seeds = results.get("seeds") or [0]
    over = f"mean over inputs, then mean ± std over seeds {seeds}" if len(seeds) > 1 else "mean over inputs"
    note = f"\n{metric} (eval): final model, eval mode, running statistics recalibrated; {over}.\n"
    if second:
        note += f"{results.get('second_metric_title', second)} (`{second}`): the same final model; not used for † or "
        note += "the settled orderings.\n"
    if results.get("not_converged"):
        note += f"\n† not converged: {results.get('convergence_rule')} fails for {len(results['not_converged'])} "
        note += "run(s): " + ", ".join(f"`{c}`" for c in results["not_converged"]) + ".\n"
    note += settled_text(results["nets"], results.get("settled") or {}, metric)
    text = "\n".join(lines) + "\n" + note if methods else "No cell finished.\n"
    failed = results.get("failed") or []
    if failed:
        text += f"\n## Failed cells ({len(failed)})\n\n"
        text += "".join(f"- `{f['cell']}`: {f['error']} (log: `{f['log']}`)\n" for f in failed)
    return text


def save_plots(cfg: TableConfig, rows: dict[str, dict[str, list[dict[str, Any]]]], results: dict[str, Any]) -> None:
    """Training curves per net (``curves_NET.png``) and, for images, the rate-distortion plot."""
    metric = results["metric"]
    label = f"train-mode {metric}"
    for net, by_method in rows.items():
        curves = {
            m: (runs[0]["curve"]["step"], runs[0]["curve"][f"train_mode_{metric}"]) for m, runs in by_method.items()
        }
        save_curves(curves, cfg.out / f"curves_{net}.png", ylabel=label)
    if cfg.task == "image":
        points: dict[str, list[tuple[float, float]]] = {}
        for by_method in results["nets"].values():
            for m, r in by_method.items():
                if "bpp" in r:
                    points.setdefault(m, []).append((r["bpp"], r[metric]))
        save_rate_distortion(points, cfg.out / "rate_distortion.png")
