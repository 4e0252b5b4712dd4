"""Issue 15: task configs nest the network and training configs (every option settable from norm-inr, the short
spellings kept), the table compares nested records by flag name, cells run the tasks' own runner."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from norm_nerf.core import NetworkConfig
from norm_nerf.tasks.common import flat_settings, write_metrics
from norm_nerf.tasks.image import ImageTaskConfig
from norm_nerf.tasks.run import TASKS, parse_task
from norm_nerf.tasks.shape import ShapeTaskConfig
from norm_nerf.tasks.table import TableConfig, build_cells, config_differences, expected_configs
from norm_nerf.tasks.trainer import TrainConfig


def test_short_spellings_set_the_nested_configs() -> None:
    args = ["image", "--method", "relu+bn", "--depth", "2", "--width", "8", "--steps", "3", "--lr", "0.01",
            "--schedule", "cosine", "--min-lr-ratio", "0.5", "--seed", "4", "--device", "cpu", "--no-progress",
            "--resize", "None", "--out", "o", "--overwrite"]  # fmt: skip
    cfg = parse_task(args)
    assert isinstance(cfg, ImageTaskConfig) and cfg.resize is None and cfg.overwrite and str(cfg.out) == "o"
    net, train = cfg.network, cfg.train
    assert (net.method, net.depth, net.width, net.seed) == ("relu+bn", 2, 8, 4)
    assert (train.steps, train.lr, train.schedule, train.min_lr_ratio, train.progress) == (
        3,
        0.01,
        "cosine",
        0.5,
        False,
    )
    assert train.seed == 4  # --seed is the run's one seed: initialisation and the trainer's draws
    assert parse_task(["shape", "--batch-size", "7"]).batch_size == 7


def test_network_options_that_norm_inr_could_not_set_before() -> None:
    cfg = parse_task(["ct", "--norm-momentum", "0.05", "--rff-sigma", "3", "--hash-grid.num-levels", "4"])
    assert cfg.network.norm_momentum == 0.05 and cfg.network.rff_sigma == 3.0
    assert cfg.network.hash_grid.num_levels == 4
    assert parse_task(["mri", "--norm-momentum", "None", "--recalib-batches", "2"]).train.recalib_batches == 2


def test_task_defaults_and_replace_by_flag_names() -> None:
    assert (TASKS["ct"]().network.depth, TASKS["ct"]().network.width) == (4, 256)
    assert TASKS["mri"]().train.steps == TASKS["shape"]().train.steps == 1000
    base = ShapeTaskConfig()
    cfg = base.replace(method="relu", steps=5, grid=8, seed=2)
    assert (cfg.network.method, cfg.network.depth, cfg.train.steps, cfg.grid, cfg.train.seed) == ("relu", 2, 5, 8, 2)
    assert base.network.method == "pe+cn" and base.train.steps == 1000  # the original is untouched
    assert cfg.replace().train is not cfg.train  # copies never share a nested config
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        base.replace(bogus=1)
    assert isinstance(cfg.network, NetworkConfig) and isinstance(cfg.train, TrainConfig)


def test_recorded_configs_compare_by_flag_name_nested_or_flat() -> None:
    nested = dataclasses.asdict(ImageTaskConfig().replace(steps=3, norm_momentum=0.05))
    flat = flat_settings(nested)
    assert flat["steps"] == 3 and flat["norm_momentum"] == 0.05 and "hash_grid.num_levels" in flat
    assert "network" not in flat and "train" not in flat
    other = dataclasses.asdict(ImageTaskConfig().replace(steps=4, norm_momentum=0.05))
    assert config_differences(nested, other) == ["--steps 3 -> 4"]
    older = {"method": "pe+cn", "depth": 10, "width": 28, "steps": 3, "lr": None}  # an older norm-inr's flat record
    assert config_differences(older, other) == ["--steps 3 -> 4"]


def test_table_extra_flags_reach_the_nested_configs(tmp_path) -> None:
    cfg = TableConfig("ct", methods=("relu",), nets=("1x8",), out=tmp_path, extra=("--norm-momentum 0.05",))
    cells = build_cells(cfg)
    assert cells[0].command[1:4] == ["-m", "norm_nerf.tasks", "ct"]  # the tasks' runner, not a CLI above it
    expected = expected_configs(cfg, cells)[cells[0].name]
    assert expected["network"]["norm_momentum"] == 0.05 and expected["network"]["depth"] == 1
    recorded = json.loads(json.dumps({**expected, "network": {**expected["network"], "norm_momentum": 0.1}}))
    assert config_differences(recorded, expected) == ["--norm-momentum 0.1 -> 0.05"]


def test_metrics_json_writes_non_finite_numbers_as_null(tmp_path) -> None:
    path = write_metrics(tmp_path, {"psnr": math.inf, "ssim": math.nan, "ok": 1.5})

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"psnr": None, "ssim": None, "ok": 1.5}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "gpu"], "error: unknown --device 'gpu'; available here: cpu"),
        (["--schedule", "cosine", "--min-lr-ratio", "0"], "error: --min-lr-ratio must be in (0, 1]"),
    ],
)
def test_bad_training_flags_are_one_line_errors_before_any_output(tmp_path, monkeypatch, capsys, flags, message):
    from norm_nerf.scripts.inr import entrypoint

    monkeypatch.setattr("sys.argv", ["norm-inr", "image", *flags, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        entrypoint()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith(message) and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_each_task_config_carries_what_the_cli_and_the_table_read(tmp_path) -> None:
    """One registry: a task's name, input flag, metric and presets are class attributes of its config, and the
    table's cells are built from them."""
    for name, task in TASKS.items():
        assert task.task == name and task.input_field and task.metric in ("psnr", "iou")
        assert set(task.presets) == {"cpu", "paper"}
        assert type(parse_task([name, "--steps", "1"])) is task
    shape = TASKS["shape"]
    assert shape.metric == "iou" and shape.second_metric[0] == "iou_train_grid"
    (cell,) = build_cells(TableConfig("shape", methods=("pe",), out=tmp_path))
    preset = shape.presets["cpu"]
    assert cell.net == preset.nets[0] and cell.command[cell.command.index("--steps") + 1] == str(preset.steps)
    flags = " ".join(cell.command)
    assert " ".join(preset.flags) in flags
