"""A full disk under ``norm-inr``: one ``error: no space left on ...`` line, exit 2, and only complete files left.

The end-to-end test runs ``norm-inr image`` on a real 512 KiB tmpfs (the ``small_disk`` fixture) filled so that the
run stops between its files; the others write each kind of file (JSON, figure, PNG, mesh, checkpoint, text) on the
same full disk."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

FREE_KIB = (22, 24, 32)
"""What the end-to-end test leaves free; the tiny run writes about 56 KB (before atomic writes: a truncated
spectrum.png, a 0-byte metrics.json, a metrics.json without curve.png and model.pt)."""


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` with one file so that ``leave`` bytes stay free."""
    stat = os.statvfs(disk)
    with open(disk / "filler.bin", "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - leave))


def _check_complete(folder: Path) -> list[str]:
    """The files in ``folder`` (recursively): none empty, none temporary, every PNG and JSON readable."""
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        names.append(path.name)
        assert path.stat().st_size > 0, f"{path}: empty"
        assert not path.name.endswith(".partial"), f"{path}: temporary file left"
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
    return names


@pytest.mark.parametrize("free_kib", FREE_KIB)
def test_norm_inr_image_on_a_full_disk_is_one_line_and_leaves_only_whole_files(
    free_kib: int, small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from norm_nerf.scripts.inr import entrypoint

    image = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)).save(image)
    _fill(small_disk, free_kib * 1024)
    out = small_disk / "run"
    argv = ["norm-inr", "image", "--image", str(image), "--resize", "None", "--method", "relu", "--depth", "1"]
    argv += ["--width", "8", "--steps", "5", "--no-progress", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        entrypoint()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no space left on {out} (while writing "), err
    written = _check_complete(out)
    # metrics.json marks a finished run (norm-inr table keeps such cells): it is written last, so not here
    assert "metrics.json" not in written and "reconstruction.png" in written


def _write_json(path: Path) -> Path:
    from norm_nerf.utils.jsonio import write_json

    return write_json(path / "metrics.json", {"psnr": 1.0, "curve": list(range(2000))})


def _figure(path: Path) -> Path:
    from norm_nerf.eval.plots import save_curves

    return save_curves({"relu": ([0, 1, 2], [1.0, 3.0, 2.0])}, path / "curve.png")


def _analysis_figure(path: Path) -> Path:
    from norm_nerf.analysis.freq import plot_band_errors

    curves = {"relu": ([0, 10], torch.tensor([[1.0, 0.5], [0.8, 0.2]]))}
    return plot_band_errors(curves, torch.tensor([0.0, 0.5, 1.0]), path / "freq_error.png")


def _image(path: Path) -> Path:
    from norm_nerf.eval.plots import save_image

    return save_image(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), path / "render.png")


def _mesh(path: Path) -> Path:
    from norm_nerf.core import build_network
    from norm_nerf.tasks.shape import OccupancySignal, default_shape

    signal = OccupancySignal(*default_shape(), 4, 64)
    return signal.export_mesh(build_network("relu", 3, 1, depth=1, width=8, seed=0), path / "surface.ply", 16)[0]


def _table_files(path: Path) -> Path:
    from norm_nerf.tasks.table import TableConfig, run_table

    run_table(TableConfig("ct", methods=("relu",), nets=("1x8",), out=path / "table", dry_run=True))
    return path / "table"


@pytest.mark.parametrize("write", [_write_json, _figure, _analysis_figure, _image, _mesh, _table_files])
def test_each_kind_of_file_on_a_full_disk_is_no_space_error_and_nothing_left(small_disk: Path, write) -> None:
    from norm_nerf.utils.atomic import NoSpaceError

    _fill(small_disk, 0)
    with pytest.raises(NoSpaceError, match=f"^no space left on {small_disk}"):
        write(small_disk)
    _check_complete(small_disk)
    (small_disk / "filler.bin").unlink()
    _check_complete(write(small_disk).parent)  # with room, the same call writes whole files
