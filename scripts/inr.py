"""norm-inr: signal tasks (image, ct, mri, shape), comparison tables and spectral-bias analysis (ntk, freq)."""

from __future__ import annotations

from typing import Annotated

import tyro

from norm_nerf.analysis.cli import FreqConfig, NtkConfig
from norm_nerf.tasks.run import CTTaskConfig, ImageTaskConfig, MRITaskConfig, ShapeTaskConfig
from norm_nerf.tasks.table import TableConfig

Command = (
    Annotated[ImageTaskConfig, tyro.conf.subcommand("image")]
    | Annotated[CTTaskConfig, tyro.conf.subcommand("ct")]
    | Annotated[MRITaskConfig, tyro.conf.subcommand("mri")]
    | Annotated[ShapeTaskConfig, tyro.conf.subcommand("shape")]
    | Annotated[TableConfig, tyro.conf.subcommand("table")]
    | Annotated[NtkConfig, tyro.conf.subcommand("ntk")]
    | Annotated[FreqConfig, tyro.conf.subcommand("freq")]
)


def main(cfg: Command) -> None:
    """Dispatch a parsed subcommand config to its runner."""
    from norm_nerf.analysis.cli import run_freq, run_ntk
    from norm_nerf.tasks import run as runners
    from norm_nerf.tasks.table import run_table

    dispatch = {
        ImageTaskConfig: runners.run_image,
        CTTaskConfig: runners.run_ct,
        MRITaskConfig: runners.run_mri,
        ShapeTaskConfig: runners.run_shape,
        TableConfig: run_table,
        NtkConfig: run_ntk,
        FreqConfig: run_freq,
    }
    summary = dispatch[type(cfg)](cfg)
    if isinstance(cfg, TableConfig | NtkConfig | FreqConfig):
        return
    from rich import print as rprint

    keys = ("psnr", "ssim", "iou", "psnr_train_mode_final", "psnr_best_train_mode", "iou_best_train_mode", "seconds")
    rprint({k: summary[k] for k in keys if k in summary})
    out = summary.get("out", "the output folder")
    rprint(f"[bold]metrics.json and pictures written to {out}[/bold]")


def entrypoint() -> None:
    """Console script ``norm-inr``."""
    from norm_nerf.utils.cli import run_cli

    run_cli(lambda: main(tyro.cli(Command)))  # type: ignore[call-overload]


if __name__ == "__main__":
    entrypoint()
