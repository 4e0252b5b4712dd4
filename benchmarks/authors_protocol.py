"""The authors' image-fitting protocol beside ours, on the same image, network and step budget (one command).

* **authors**: full batch, Adam at a constant learning rate (1e-2 with a norm, 2e-4 without, as in the authors'
  public image-fitting code); the reported number is the *best train-mode* PSNR seen over all steps.
* **ours**: full batch, Adam from our default learning rate (``norm_nerf.core.default_lr``: 1e-2 with a norm, 1e-3
  without) with cosine decay to 1%; the reported number is the *final* model in *eval mode* after recalibrating its
  running statistics.

Both protocols run through this package's trainer (the authors' code itself is not run), so the difference is the
protocol alone; the steps per second are this package's. Writes JSON and a bar chart::

    python benchmarks/authors_protocol.py --image PATH/lena.png --resize 128 --steps 2000 \
        --out benchmarks/results/authors_protocol.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from _report import machine_info, write_report

from norm_nerf.core import parse_method
from norm_nerf.tasks.image import ImageTaskConfig
from norm_nerf.tasks.run import run_task
from norm_nerf.utils.console import print_table

AUTHORS_LR = {True: 1e-2, False: 2e-4}
"""The authors' constant learning rate, with (True) and without a norm."""


def run_protocol(protocol: str, method: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One image fit under ``protocol`` (``authors`` or ``ours``); returns the reported number and the run's facts."""
    has_norm = parse_method(method)[1] != "none"
    options: dict[str, Any] = {"method": method, "depth": args.depth, "width": args.width, "steps": args.steps,
                               "seed": args.seed, "image": args.image, "resize": args.resize, "progress": False,
                               "out": work / protocol / method.replace("+", "_"), "overwrite": True}  # fmt: skip
    if protocol == "authors":
        options.update(lr=AUTHORS_LR[has_norm], schedule="constant")
    else:
        options.update(schedule="cosine", min_lr_ratio=0.01)
    summary = run_task(ImageTaskConfig().replace(**options))
    reported = summary["psnr_best_train_mode"] if protocol == "authors" else summary["psnr"]
    return {
        "reported_psnr": reported,
        "reported_as": "best train-mode PSNR over all steps" if protocol == "authors" else "final eval-mode PSNR",
        "final_eval_mode_psnr": summary["psnr"],
        "final_train_mode_psnr": summary["psnr_train_mode_final"],
        "best_train_mode_psnr": summary["psnr_best_train_mode"],
        "lr": summary["lr"],
        "schedule": options["schedule"],
        "steps_per_second": summary["steps_per_second"],
        "seconds": summary["seconds"],
    }


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars: the number each protocol reports, per method."""
    from norm_nerf.eval.plots import pyplot

    plt = pyplot()
    methods = list(results)
    fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 2, 3.6))
    for k, (protocol, label) in enumerate((("authors", "authors: best train-mode"), ("ours", "ours: final eval-mode"))):
        values = [results[m][protocol]["reported_psnr"] for m in methods]
        bars = ax.bar([i + (k - 0.5) * 0.38 for i in range(len(methods))], values, width=0.36, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("PSNR [dB]")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=None, help="image file (default: the bundled astronaut)")
    parser.add_argument("--resize", type=int, default=128, help="longer side after downsampling")
    parser.add_argument("--methods", nargs="+", default=["relu", "pe", "relu+cn", "pe+cn"])
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--width", type=int, default=28)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/authors_protocol.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            results[method] = {p: run_protocol(p, method, args, Path(tmp)) for p in ("authors", "ours")}
            print(method, {p: round(r["reported_psnr"], 2) for p, r in results[method].items()}, flush=True)
    rows = []
    for m, r in results.items():
        a, o = r["authors"], r["ours"]
        rows.append([m, f"{a['reported_psnr']:.2f}", f"{o['reported_psnr']:.2f}", f"{a['final_eval_mode_psnr']:.2f}",
                     f"{o['steps_per_second']:.1f}"])  # fmt: skip
    print_table(
        f"{args.depth}x{args.width}, {args.steps} steps",
        ["method", "authors: best train-mode", "ours: final eval-mode", "authors' run, final eval-mode", "steps/s"],
        rows,
    )
    report = {
        "what": __doc__.split("\n\n")[1].strip(),
        "image": str(args.image or "skimage.data.astronaut"),
        "resize": args.resize,
        "net": f"{args.depth}x{args.width}",
        "steps": args.steps,
        "seed": args.seed,
        "machine": machine_info(),
        "results": results,
    }
    write_report(report, args.out, lambda path: plot(results, path))


if __name__ == "__main__":
    main()
