"""The spectral-bias analyses' configs and runners: ``ntk`` (NTK eigen-spectra) and ``freq`` (frequency-resolved
error), as ``norm-inr ntk`` / ``norm-inr freq`` run them; each writes JSON and a figure into its output folder.

Stand-alone use::

    python -m norm_nerf.analysis ntk --points 256 --width 64
    python -m norm_nerf.analysis freq --signal image --steps 200
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import tyro
from torch import Tensor

from norm_nerf.analysis.freq import (
    GridSignal,
    band_edges,
    band_relative_error,
    camera_image,
    image_signal,
    plot_band_errors,
    sine_signal,
    train_full_batch,
    uniform_grid,
)
from norm_nerf.analysis.ntk import (
    COUPLING_NOTE,
    empirical_ntk,
    ntk_eigenvalues,
    plot_eigenvalue_histograms,
    spectrum_summary,
)
from norm_nerf.core import build_network, count_parameters, default_lr, parse_method
from norm_nerf.data.images import load_image
from norm_nerf.utils.cli import run_cli, split_commas
from norm_nerf.utils.console import CONSOLE, print_table, progress
from norm_nerf.utils.jsonio import write_json
from norm_nerf.utils.outputs import OutputOptions

DEFAULT_METHODS = ("relu", "relu+bn", "relu+ln", "relu+gn", "relu+cn", "pe", "pe+cn")
"""Plain ReLU and PE networks with and without each normalization, as in the papers' NTK figure."""


@dataclass
class AnalysisConfig(OutputOptions):
    """Fields shared by the analysis commands."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    """Methods to compare: relu, pe, siren, wire, mfn, or <relu|pe|rff>+<bn|ln|gn|cn|rms>."""
    depth: int = 4
    """Hidden layers of every network."""
    width: int = 256
    """Hidden features per layer."""
    seed: int = 0
    """Seed of the network initialisation (the same for every method)."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        self.methods = split_commas(self.methods)  # `relu pe+cn` and `relu,pe+cn` alike


@dataclass
class NtkConfig(AnalysisConfig):
    """Empirical NTK eigenvalues of plain and normalized networks (train-mode batch coupling)."""

    output_root = Path("outputs/ntk")

    points: int = 1024
    """Number of points P (the NTK is P x P); for --dim 2 a perfect square (sqrt(P) x sqrt(P) grid)."""
    dim: Literal[1, 2] = 1
    """Input dimension: 1 (uniform grid in [-1, 1]) or 2 (pixel grid in [-1, 1]^2)."""
    every: int = 0
    """0: NTK at initialisation only; k > 0: also every k steps while training on the target signal."""
    steps: int = 200
    """Training steps when --every > 0 (target: the 1d sum of sines, or the camera image for --dim 2)."""
    chunk: int = 0
    """Output rows per batched backward pass (memory ~ chunk * points * width * 4 bytes per layer); 0 = automatic."""


@dataclass
class FreqConfig(AnalysisConfig):
    """Relative error per Fourier band of the target while training (full batch, Adam, default lr per method)."""

    output_root = Path("outputs/freq")

    steps: int = 300
    """Training steps (full batch)."""
    signal: Literal["1d", "image"] = "1d"
    """Target: 1d = sum of sines with frequencies 5, 15, ..., 45; image = a picture on its pixel grid."""
    image: Path | None = None
    """Image for --signal image (default: scikit-image's bundled camera picture)."""
    size: int = 64
    """Image: longer side after downsampling."""
    points: int = 512
    """1d: number of grid points."""
    num_bands: int = 5
    """Number of equal-width bands of |k| (the last one also holds everything above the target's spectrum)."""
    log_every: int = 5
    """Record the band errors every this many steps."""


# ---------------------------------------------------------------------------------------------- validation


def _check_common(cfg: AnalysisConfig) -> None:
    if not cfg.methods:
        raise ValueError("--methods is empty; name at least one method, e.g. relu pe+cn")
    for method in cfg.methods:
        parse_method(method)
    if cfg.depth < 1 or cfg.width < 1:
        raise ValueError(f"--depth and --width must be >= 1, got {cfg.depth} and {cfg.width}")


def check_ntk_config(cfg: NtkConfig) -> None:
    """Raise a ValueError naming the first invalid field of ``cfg``."""
    _check_common(cfg)
    if cfg.dim not in (1, 2):
        raise ValueError(f"--dim must be 1 or 2, got {cfg.dim}")
    if cfg.points < 2:
        raise ValueError(f"--points must be >= 2, got {cfg.points}")
    if cfg.dim == 2 and math.isqrt(cfg.points) ** 2 != cfg.points:
        raise ValueError(f"--dim 2 needs a square number of --points (sqrt(P) x sqrt(P) grid), got {cfg.points}")
    if cfg.every < 0:
        raise ValueError(f"--every must be >= 0, got {cfg.every}")
    if cfg.every > 0 and cfg.steps < 1:
        raise ValueError(f"--steps must be >= 1 when --every > 0, got {cfg.steps}")
    if cfg.every > cfg.steps > 0:
        raise ValueError(f"--every ({cfg.every}) is larger than --steps ({cfg.steps}); no NTK would be computed")
    if cfg.chunk < 0:
        raise ValueError(f"--chunk must be >= 0 (0 = automatic), got {cfg.chunk}")


def check_freq_config(cfg: FreqConfig) -> None:
    """Raise a ValueError naming the first invalid field of ``cfg``."""
    _check_common(cfg)
    if cfg.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.signal not in ("1d", "image"):
        raise ValueError(f"--signal must be 1d or image, got {cfg.signal!r}")
    if cfg.num_bands < 1:
        raise ValueError(f"--num-bands must be >= 1, got {cfg.num_bands}")
    if cfg.log_every < 1:
        raise ValueError(f"--log-every must be >= 1, got {cfg.log_every}")
    if cfg.signal == "image" and cfg.size < 2:
        raise ValueError(f"--size must be >= 2, got {cfg.size}")


# ---------------------------------------------------------------------------------------------- shared helpers


def _build(method: str, cfg: AnalysisConfig, in_dim: int, out_dim: int) -> torch.nn.Module:
    return build_network(method, in_dim, out_dim, cfg.depth, cfg.width, seed=cfg.seed).to(cfg.device)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """Yields ``add(label, total) -> advance``: one rich progress bar per method."""
    with progress(enabled=enabled) as bar:

        def add(label: str, total: int) -> Callable[[], None]:
            task = bar.add_task(label, total=total)
            return lambda: bar.update(task, advance=1)

        yield add


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


# ---------------------------------------------------------------------------------------------- ntk


def _ntk_signal(cfg: NtkConfig) -> GridSignal:
    if cfg.dim == 1:
        return sine_signal(cfg.points) if cfg.every else _grid_only(cfg.points)
    side = math.isqrt(cfg.points)
    return image_signal(camera_image(side), f"scikit-image camera, {side}x{side}")


def _grid_only(points: int) -> GridSignal:
    x = uniform_grid(points)
    return GridSignal(x, torch.zeros_like(x), "uniform grid (no target: NTK at initialisation only)")


def _measure(net: torch.nn.Module, x: Tensor, chunk: int) -> tuple[Tensor, dict[str, Any]]:
    eig, report = ntk_eigenvalues(empirical_ntk(net, x, chunk=chunk or None))
    return eig.cpu(), {**spectrum_summary(eig), **report}


def _ntk_method(method: str, cfg: NtkConfig, signal: GridSignal, add_bar) -> tuple[Tensor, dict[str, Any]]:
    start = time.perf_counter()
    net = _build(method, cfg, cfg.dim, 1)
    x, y = signal.coords.to(cfg.device), signal.flat.to(cfg.device)
    advance = add_bar(f"{method:>8}", 1 + (cfg.steps + 1 if cfg.every else 0))
    eig, summary = _measure(net, x, cfg.chunk)
    advance()
    record: dict[str, Any] = {"params": count_parameters(net), "init": summary}
    if cfg.every:
        history: list[dict[str, Any]] = []

        def on_step(step: int, pred: Tensor, loss: float) -> None:
            if step > 0 and step % cfg.every == 0:
                history.append({"step": step, "loss": loss, **_measure(net, x, cfg.chunk)[1]})
            advance()

        record["lr"] = default_lr(method)
        train_full_batch(net, x, y, cfg.steps, record["lr"], on_step, label=method)
        record["training"] = history
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["eigenvalues_init"] = eig.tolist()
    return eig, record


def run_ntk(cfg: NtkConfig) -> dict[str, Any]:
    """Compute the NTK spectra of all methods; writes ``ntk.json`` and ``ntk_eigenvalues.png``; returns the JSON."""
    check_ntk_config(cfg)
    out = cfg.prepare_output()
    signal = _ntk_signal(cfg)
    CONSOLE.print(f"NTK of {cfg.depth}x{cfg.width} networks at {cfg.points} points ({cfg.dim}-D): {COUPLING_NOTE}")
    start = time.perf_counter()
    spectra, methods = {}, {}
    with _progress(cfg.progress) as add_bar:
        for method in cfg.methods:
            spectra[method], methods[method] = _ntk_method(method, cfg, signal, add_bar)
    result = {
        "analysis": "ntk",
        "kernel": "empirical NTK of the first (only) output, K = J J^T, P x P, float64",
        "batch_coupling": COUPLING_NOTE,
        "round_off": "eigenvalues < 0 are clamped to 0 (counted in clamped_negative); rank and condition_number "
        "ignore eigenvalues below rank_rtol x max = P x eps_float32^2 x max, the float32 Jacobian's round-off floor",
        "points": cfg.points,
        "dim": cfg.dim,
        "net": f"{cfg.depth}x{cfg.width}",
        "training_target": signal.name if cfg.every else None,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": _peak_rss_mb(),
        "config": asdict(cfg),
        "methods": methods,
    }
    write_json(out / "ntk.json", result)
    title = f"NTK eigenvalues at init, {cfg.depth}x{cfg.width}, P={cfg.points} ({cfg.dim}-D), train-mode batch coupling"
    title += "; dashed: median"
    plot_eigenvalue_histograms(spectra, out / "ntk_eigenvalues.png", title)
    _print_ntk_table(cfg, methods)
    CONSOLE.print(f"Results written to {out.resolve()} (ntk.json, ntk_eigenvalues.png)")
    return result


def _print_ntk_table(cfg: NtkConfig, methods: dict[str, dict[str, Any]]) -> None:
    columns = ["method", "params", "max eig", "median/max", "frac < 1e-3 max", "condition", "rank", "s"]
    rows = [
        [
            m, str(r["params"]), f"{r['init']['max']:.3g}", f"{r['init']['median_over_max']:.3g}",
            f"{r['init']['frac_below_1e-3_max']:.3f}", f"{r['init']['condition_number']:.3g}",
            str(r["init"]["rank"]), f"{r['seconds']:.1f}",
        ]
        for m, r in methods.items()
    ]  # fmt: skip
    print_table(f"NTK at init, {cfg.depth}x{cfg.width}, P={cfg.points} (train-mode batch coupling)", columns, rows)


# ---------------------------------------------------------------------------------------------- freq


def _freq_signal(cfg: FreqConfig) -> GridSignal:
    if cfg.signal == "1d":
        return sine_signal(cfg.points)
    if cfg.image is None:
        return image_signal(camera_image(cfg.size), f"scikit-image camera, {cfg.size}x{cfg.size}")
    image = load_image(cfg.image, resize=cfg.size, resize_flag="--size")
    return image_signal(image, f"{cfg.image} resized to {cfg.size}")


def _first_below(steps: list[int], errors: Tensor, level: float) -> list[int | None]:
    """Per band: the first recorded step with error below ``level`` (None if never)."""
    found = []
    for band in errors.T:
        hits = torch.nonzero(band < level)
        found.append(steps[int(hits[0])] if hits.numel() else None)
    return found


def _freq_method(method: str, cfg: FreqConfig, signal: GridSignal, edges: Tensor, add_bar) -> dict[str, Any]:
    start = time.perf_counter()
    net = _build(method, cfg, signal.coords.shape[1], signal.values.shape[-1])
    x, y = signal.coords.to(cfg.device), signal.flat.to(cfg.device)
    advance = add_bar(f"{method:>8}", cfg.steps + 1)
    steps, errors, losses = [], [], []

    def on_step(step: int, pred: Tensor, loss: float) -> None:
        if step % cfg.log_every == 0 or step == cfg.steps:
            pred_grid = pred.cpu().reshape(signal.values.shape)
            errors.append(band_relative_error(pred_grid, signal.values, cfg.num_bands, float(edges[-1])))
            steps.append(step)
            losses.append(loss)
        advance()

    lr = default_lr(method)
    train_full_batch(net, x, y, cfg.steps, lr, on_step, label=method)
    err = torch.stack(errors)
    return {
        "params": count_parameters(net),
        "lr": lr,
        "seconds": round(time.perf_counter() - start, 2),
        "final_band_error": err[-1].tolist(),
        "first_step_below_0.1": _first_below(steps, err, 0.1),
        "steps": steps,
        "loss": losses,
        "band_error": err.tolist(),
    }


def run_freq(cfg: FreqConfig) -> dict[str, Any]:
    """Train every method and record the per-band error; writes ``freq.json`` and ``freq_error.png``."""
    check_freq_config(cfg)
    signal = _freq_signal(cfg)
    out = cfg.prepare_output()
    edges = band_edges(signal.values, cfg.num_bands)
    methods = {}
    with _progress(cfg.progress) as add_bar:
        for method in cfg.methods:
            methods[method] = _freq_method(method, cfg, signal, edges, add_bar)
    result = {
        "analysis": "freq",
        "signal": signal.name,
        "error": "per band: ||F(pred - target)||_band / ||F(target)||_band (1 = nothing learned, 0 = perfect)",
        "prediction_mode": "train mode: the output of each training forward pass (batch statistics)",
        "band_edges": edges.tolist(),
        "band_unit": "|k| in cycles per domain (radial for images); the last band is open to the top",
        "net": f"{cfg.depth}x{cfg.width}",
        "config": asdict(cfg),
        "methods": methods,
    }
    write_json(out / "freq.json", result)
    curves = {m: (r["steps"], torch.tensor(r["band_error"])) for m, r in methods.items()}
    plot_band_errors(curves, edges, out / "freq_error.png", f"relative error per frequency band: {signal.name}")
    columns = ["method", *[f"band {i}" for i in range(cfg.num_bands)], "s"]
    rows = [[m, *[f"{e:.3f}" for e in r["final_band_error"]], f"{r['seconds']:.1f}"] for m, r in methods.items()]
    print_table(f"final relative error per band, {cfg.depth}x{cfg.width}, {cfg.steps} steps", columns, rows)
    CONSOLE.print(f"Results written to {out.resolve()} (freq.json, freq_error.png)")
    return result


# ---------------------------------------------------------------------------------------------- entry point


AnalysisCommand = (
    Annotated[NtkConfig, tyro.conf.subcommand("ntk", prefix_name=False)]
    | Annotated[FreqConfig, tyro.conf.subcommand("freq", prefix_name=False)]
)
"""``ntk <flags>`` or ``freq <flags>`` (``norm-inr`` offers the same subcommands)."""


def run_analysis(cfg: NtkConfig | FreqConfig) -> dict[str, Any]:
    """Run the analysis ``cfg`` configures; returns the JSON it wrote."""
    return run_ntk(cfg) if isinstance(cfg, NtkConfig) else run_freq(cfg)


def main() -> None:
    """``python -m norm_nerf.analysis {ntk,freq} ...``; user errors exit 2 with one line."""
    run_cli(lambda: run_analysis(tyro.cli(AnalysisCommand)))  # type: ignore[call-overload]
