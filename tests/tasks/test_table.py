"""The table runner: cells as plain commands, results/markdown/plots, resume without recomputing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from norm_nerf.tasks.table import TableConfig, build_cells, markdown_table, parse_net, run_table


def test_parse_net_and_cells(tmp_path) -> None:
    assert parse_net("10x28") == (10, 28)
    with pytest.raises(ValueError, match="DEPTHxWIDTH"):
        parse_net("10-28")
    cells = build_cells(TableConfig("ct", methods=("relu", "pe+cn"), nets=("2x8", "3x8"), out=tmp_path))
    assert len(cells) == 4 and cells[1].method == "pe+cn"
    assert "--depth" in cells[2].command and cells[2].command[cells[2].command.index("--depth") + 1] == "3"
    with pytest.raises(ValueError, match="unknown method"):
        build_cells(TableConfig("ct", methods=("bogus",), out=tmp_path))


def test_table_runs_and_resumes(tmp_path) -> None:
    img = tmp_path / "tiny.png"
    Image.fromarray((np.random.default_rng(0).random((12, 12, 3)) * 255).astype(np.uint8)).save(img)
    cfg = TableConfig(
        "image", methods=("relu", "pe+cn"), nets=("1x8",), inputs=(img,), steps=3, out=tmp_path / "t",
        extra=("--resize", "None"),
    )  # fmt: skip
    results = run_table(cfg)
    assert set(results["nets"]["1x8"]) == {"relu", "pe+cn"}
    assert (tmp_path / "t" / "table.md").read_text().count("|") > 6
    assert (tmp_path / "t" / "rate_distortion.png").is_file()
    metrics = tmp_path / "t" / "cells" / "tiny" / "1x8" / "pe_cn" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = run_table(cfg)
    assert metrics.stat().st_mtime_ns == stamp  # not recomputed
    assert again == json.loads((tmp_path / "t" / "results.json").read_text())


def test_table_refuses_foreign_folder(tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a norm-inr table"):
        run_table(TableConfig("ct", methods=("relu",), out=tmp_path, dry_run=True))


def test_markdown_layout() -> None:
    res = {"metric": "psnr", "nets": {"2x8": {"relu": {"psnr": 20.0, "psnr_best_train_mode": 21.0}}}}
    text = markdown_table(res)
    assert "| relu | 20.00 | 21.00 |" in text and "(eval)" in text
