"""Which orderings of a table's methods more training cannot reverse.

A table compares methods at one budget. Where a method has not converged, its rank may still change with more steps;
a conclusion "A beats B" is only safe when B has converged (more steps will not lift it by the convergence
threshold), A is above B by more than the seed spread plus that threshold, and A is not falling as its budget grew
(its gain from half the steps is not below ``-threshold``). Orderings between two methods that are both still rising
are left unsettled, whichever leads.
"""

from __future__ import annotations

import math
from typing import Any

SETTLED_RULE = (
    "A above B is settled when B converged, A's mean minus its seed std exceeds B's mean plus its seed std plus the "
    "convergence threshold, and A did not lose more than that threshold from half to all steps"
)
"""The rule :func:`settled_orderings` applies, as ``results.json`` states it."""


def finite(value: Any) -> bool:
    """Whether a recorded value is a finite number (results record a non-finite one as null)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def settled_orderings(cells: dict[str, dict[str, Any]], metric: str, threshold: float) -> dict[str, list[str]]:
    """For every converged method of one net, the methods settled above it.

    Args:
        cells: ``method -> cell summary`` as in a table's ``results.json`` (``metric``, optional ``{metric}_std``,
            ``converged``, optional ``gain_from_half_steps``).
        metric: the table's metric (higher is better: PSNR, IoU).
        threshold: the convergence threshold of that metric.

    Returns:
        ``converged method -> [methods settled above it, best first]``, only for converged methods with at least one.
    """

    def low(c: dict[str, Any]) -> float:
        return c[metric] - (c.get(f"{metric}_std") or 0.0)

    def high(c: dict[str, Any]) -> float:
        return c[metric] + (c.get(f"{metric}_std") or 0.0)

    scored = {m: c for m, c in cells.items() if finite(c.get(metric))}
    settled: dict[str, list[str]] = {}
    for below, b in scored.items():
        if b.get("converged") is not True:
            continue
        above = [
            m
            for m, a in scored.items()
            if m != below and low(a) > high(b) + threshold and not (a.get("gain_from_half_steps") or 0.0) < -threshold
        ]
        if above:
            settled[below] = sorted(above, key=lambda m: -scored[m][metric])
    return settled


def settled_text(
    nets: dict[str, dict[str, dict[str, Any]]], settled: dict[str, dict[str, list[str]]], metric: str
) -> str:
    """One markdown line per net: the best converged method and the methods settled above it (the full map of
    settled pairs is in ``results.json``); empty when no method converged."""
    lines = []
    for net, cells in nets.items():
        converged = [m for m, c in cells.items() if c.get("converged") is True and finite(c.get(metric))]
        if not converged:
            continue
        best = max(converged, key=lambda m: cells[m][metric])
        above = settled.get(net, {}).get(best, [])
        text = ", ".join(f"`{m}`" for m in above) if above else "none"
        lines.append(f"- {net}: best converged `{best}` ({cells[best][metric]:.4g}); settled above it: {text}")
    if not lines:
        return ""
    head = "\nSettled orderings (the lower method converged and the higher one was not falling):\n\n"
    return head + "\n".join(lines) + "\n"
