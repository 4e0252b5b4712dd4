"""The table runner: cells as plain commands, results/markdown/plots, resume without recomputing, no stale cells,
failures listed and fatal.

Most tests run each cell's own command in this process (``_InProcess``: the real task runner, a tiny image,
3 steps); one slow test runs them as the real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tyro
from PIL import Image

from norm_nerf.tasks import processes, run, table
from norm_nerf.tasks.table import (
    CellsFailedError,
    TableConfig,
    build_cells,
    join_extra_words,
    markdown_table,
    parse_net,
    run_table,
)


class _InProcess:
    """Stands in for ``subprocess`` in :mod:`norm_nerf.tasks.processes`: runs a cell's command in this process when
    the table starts it; the methods in ``fail`` exit 2 with an error line in the cell's log, as a failing cell does."""

    STDOUT = subprocess.STDOUT
    TimeoutExpired = subprocess.TimeoutExpired

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.fail, self.ran = fail, []

    def Popen(self, cmd, stdout, stderr, env, preexec_fn, pass_fds):  # noqa: N802  (subprocess's name)
        assert cmd[1:3] == ["-m", "norm_nerf.tasks"]  # the tasks' own runner, not a CLI of the layer above
        args = cmd[3:]
        self.ran.append(args)
        method = args[args.index("--method") + 1]
        if method in self.fail:
            stdout.write("Traceback (most recent call last):\n  ...\nerror: boom in " + method + "\n")
            return _Ended(2)
        run.main(args)
        return _Ended(0)


class _Ended:
    """A child process that has ended with ``returncode``."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def poll(self) -> int:
        return self.returncode


@pytest.fixture
def tiny_image(tmp_path):
    img = tmp_path / "tiny.png"
    Image.fromarray((np.random.default_rng(0).random((12, 12, 3)) * 255).astype(np.uint8)).save(img)
    return img


def _cfg(img, out, **kw) -> TableConfig:
    kw = {"methods": ("relu", "pe+cn"), "nets": ("1x8",), "steps": 3, "extra": ("--resize", "None"), **kw}
    return TableConfig("image", inputs=(img,), out=out, **kw)


def test_parse_net_and_cells(tmp_path) -> None:
    assert parse_net("10x28") == (10, 28)
    with pytest.raises(ValueError, match="DEPTHxWIDTH"):
        parse_net("10-28")
    cells = build_cells(TableConfig("ct", methods=("relu", "pe+cn"), nets=("2x8", "3x8"), out=tmp_path))
    assert len(cells) == 4 and cells[1].method == "pe+cn"
    assert "--depth" in cells[2].command and cells[2].command[cells[2].command.index("--depth") + 1] == "3"
    with pytest.raises(ValueError, match="unknown method"):
        build_cells(TableConfig("ct", methods=("bogus",), out=tmp_path))


@pytest.mark.slow  # starts one norm-inr process per cell
def test_table_runs_and_resumes(tmp_path, tiny_image) -> None:
    cfg = _cfg(tiny_image, tmp_path / "t")
    results = run_table(cfg)
    assert set(results["nets"]["1x8"]) == {"relu", "pe+cn"} and results["failed"] == []
    assert (tmp_path / "t" / "table.md").read_text().count("|") > 6
    assert (tmp_path / "t" / "rate_distortion.png").is_file()
    metrics = tmp_path / "t" / "cells" / "tiny" / "1x8" / "pe_cn" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = run_table(cfg)
    assert metrics.stat().st_mtime_ns == stamp  # not recomputed: the cell's own record matches this run's settings
    assert again == json.loads((tmp_path / "t" / "results.json").read_text())
    with pytest.raises(FileExistsError, match="--steps 3 -> 4"):
        run_table(_cfg(tiny_image, tmp_path / "t", steps=4))


def test_resume_keeps_cells_with_the_same_settings(tmp_path, tiny_image, monkeypatch) -> None:
    runner = _InProcess()
    monkeypatch.setattr(processes, "subprocess", runner)
    cfg = _cfg(tiny_image, tmp_path / "t")
    results = run_table(cfg)
    assert set(results["nets"]["1x8"]) == {"relu", "pe+cn"} and len(runner.ran) == 2
    assert run_table(cfg) == results and len(runner.ran) == 2  # nothing recomputed
    run_table(_cfg(tiny_image, tmp_path / "t", methods=("relu", "pe+cn", "pe")))  # a new method: only its cell runs
    assert len(runner.ran) == 3


def test_changed_settings_are_refused_naming_the_cell_or_rerun_with_overwrite(tmp_path, tiny_image, monkeypatch):
    runner = _InProcess()
    monkeypatch.setattr(processes, "subprocess", runner)
    out = tmp_path / "t"
    run_table(_cfg(tiny_image, out, methods=("relu",)))
    commands = (out / "commands.txt").read_text()
    metrics = out / "cells" / "tiny" / "1x8" / "relu" / "metrics.json"
    before = metrics.read_text()
    with pytest.raises(FileExistsError, match=r"cell tiny/1x8/relu finished with other settings.*--steps 3 -> 4"):
        run_table(_cfg(tiny_image, out, methods=("relu",), steps=4))
    with pytest.raises(FileExistsError, match=r"--lr None -> 0\.01.*--overwrite"):
        run_table(_cfg(tiny_image, out, methods=("relu",), extra=("--resize None --lr 0.01",)))
    assert metrics.read_text() == before and (out / "commands.txt").read_text() == commands  # nothing replaced
    assert len(runner.ran) == 1
    results = run_table(_cfg(tiny_image, out, methods=("relu",), steps=4, overwrite=True))
    assert len(runner.ran) == 2 and json.loads(metrics.read_text())["config"]["train"]["steps"] == 4
    assert "--steps 4" in (out / "commands.txt").read_text() and results["nets"]["1x8"]["relu"]["inputs"] == 1


def test_cells_without_a_settings_record_are_refused(tmp_path, tiny_image, monkeypatch) -> None:
    monkeypatch.setattr(processes, "subprocess", _InProcess())
    out = tmp_path / "t"
    run_table(_cfg(tiny_image, out, methods=("relu",), dry_run=True))
    cell = out / "cells" / "tiny" / "1x8" / "relu"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text(json.dumps({"psnr": 30.0}))  # as written before metrics.json had "config"
    with pytest.raises(FileExistsError, match="records no settings"):
        run_table(_cfg(tiny_image, out, methods=("relu",)))
    (cell / "metrics.json").write_text('{"psnr": 3')  # a cell killed while writing: no result, so it runs again
    assert run_table(_cfg(tiny_image, out, methods=("relu",)))["nets"]["1x8"]["relu"]["inputs"] == 1


def test_failed_cells_are_listed_and_fail_the_run(tmp_path, tiny_image, monkeypatch) -> None:
    monkeypatch.setattr(processes, "subprocess", _InProcess(fail=("pe",)))
    out = tmp_path / "t"
    with pytest.raises(CellsFailedError, match=r"1 of 2 cells failed, first tiny/1x8/pe: exit 2: error: boom in pe"):
        run_table(_cfg(tiny_image, out, methods=("relu", "pe")))
    results = json.loads((out / "results.json").read_text())
    assert list(results["nets"]["1x8"]) == ["relu"]
    [failed] = results["failed"]
    assert failed["cell"] == "tiny/1x8/pe" and failed["log_tail"][-1] == "error: boom in pe"
    text = (out / "table.md").read_text()
    assert "| relu |" in text and "## Failed cells (1)" in text and "`tiny/1x8/pe`: exit 2: error: boom in pe" in text


def test_all_cells_failing_exits_non_zero_with_the_list(tmp_path, tiny_image, monkeypatch, capsys) -> None:
    from norm_nerf.scripts.inr import entrypoint

    monkeypatch.setattr(processes, "subprocess", _InProcess(fail=("relu", "pe")))
    out = tmp_path / "t"
    argv = ["norm-inr", "table", "image", "--methods", "relu,pe", "--nets", "1x8", "--steps", "3",
            "--inputs", str(tiny_image), "--extra", "--resize None", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        entrypoint()
    captured = capsys.readouterr()
    assert exit_info.value.code != 0 and "2 of 2 cells failed" in captured.err
    assert "failed tiny/1x8/relu: exit 2: error: boom in relu" in captured.out
    text = (out / "table.md").read_text()
    assert "No cell finished." in text and "`tiny/1x8/pe`" in text and "`tiny/1x8/relu`" in text


def test_comma_lists_and_quoted_extra_flags_parse(tmp_path) -> None:
    from norm_nerf.scripts.inr import Command

    args = ["table", "ct", "--methods", "relu,pe", "pe+cn,", "--nets", "2x8,3x8", "--out", str(tmp_path),
            "--extra", "--schedule cosine --min-lr-ratio 0.5", "--lr 0.01"]  # fmt: skip
    cfg = tyro.cli(Command, args=join_extra_words(args))
    assert cfg.methods == ("relu", "pe", "pe+cn") and cfg.nets == ("2x8", "3x8")
    assert cfg.extra == ("--schedule", "cosine", "--min-lr-ratio", "0.5", "--lr", "0.01")
    command = build_cells(cfg)[0].command
    assert command[command.index("--schedule") : command.index("--schedule") + 2] == ["--schedule", "cosine"]
    assert tyro.cli(Command, args=["table", "ct", "--extra=--schedule=cosine"]).extra == ("--schedule=cosine",)


def test_bad_lists_and_extra_flags_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="'relu' is listed twice"):
        build_cells(TableConfig("ct", methods=("relu,pe", "relu"), out=tmp_path))
    with pytest.raises(ValueError, match="--methods is empty"):
        build_cells(TableConfig("ct", methods=(",",), out=tmp_path))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="name the same cell folder"):
        build_cells(TableConfig("ct", inputs=(tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"), out=tmp_path))
    with pytest.raises(ValueError, match="--out is set per cell by norm-inr table; use the table's own --out"):
        build_cells(TableConfig("ct", extra=("--out elsewhere",), out=tmp_path))
    with pytest.raises(ValueError, match="unmatched|closing quotation"):
        TableConfig("ct", extra=('--schedule "cosine',))
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"--extra --bogus 1: norm-inr ct refuses .*unknown options: --bogus 1\)"):
        run_table(TableConfig("ct", methods=("relu",), out=out, extra=("--bogus 1",), dry_run=True))
    with pytest.raises(ValueError, match=r"--extra --lr x: norm-inr ct refuses .*see the message above"):
        run_table(TableConfig("ct", methods=("relu",), out=out, extra=("--lr x",), dry_run=True))
    assert not out.exists()  # refused before any cell or folder was made


def test_extra_words_are_joined_as_argparse_takes_them() -> None:
    """tyro 1.x reads ``--extra "--lr 0.01"`` as an unknown option; the CLI joins such words into ``--extra=``."""
    assert join_extra_words(["table", "ct", "--extra", "--lr 0.01", "x y", "--jobs", "2"]) == [
        "table", "ct", "--extra=--lr 0.01 x y", "--jobs", "2"]  # fmt: skip
    assert join_extra_words(["--extra", "--lr=0.01"]) == ["--extra", "--lr=0.01"]  # tyro reports the missing value
    assert join_extra_words(["--extra=--lr 1", "--extra"]) == ["--extra=--lr 1", "--extra"]


def test_table_refuses_foreign_folder(tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a norm-inr table"):
        run_table(TableConfig("ct", methods=("relu",), out=tmp_path, dry_run=True))


def test_a_folder_another_table_holds_is_refused_naming_its_pid_and_a_dead_holder_never_blocks(tmp_path) -> None:
    import fcntl

    cfg = TableConfig("ct", methods=("relu",), nets=("1x8",), out=tmp_path / "t", dry_run=True)
    cfg.out.mkdir()
    with open(cfg.out / ".table.lock", "w") as held:  # another table's lock (flock: per open file)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("12345\n")
        held.flush()
        with pytest.raises(ValueError, match=r"^\S+/t: another norm-inr table \(PID 12345\) is running"):
            run_table(cfg)
        assert not (cfg.out / "commands.txt").exists()
    assert run_table(cfg) == {}  # the holder is gone: its PID in the file does not block
    assert (cfg.out / "commands.txt").is_file()


def test_markdown_layout() -> None:
    res = {"metric": "psnr", "nets": {"2x8": {"relu": {"psnr": 20.0, "psnr_best_train_mode": 21.0}}}}
    text = markdown_table(res)
    assert "| relu | 20.00 | 21.00 |" in text and "(eval)" in text and "Failed" not in text
    res["failed"] = [{"cell": "x/2x8/pe", "error": "exit 2: error: bad", "log": "L"}]
    assert "- `x/2x8/pe`: exit 2: error: bad (log: `L`)" in markdown_table(res)


def test_seeds_give_mean_and_std_and_unconverged_cells_are_flagged(tmp_path, tiny_image, monkeypatch) -> None:
    fake = _InProcess()
    monkeypatch.setattr(processes, "subprocess", fake)
    extra = ("--resize", "None", "--log-every", "1", "--schedule", "constant")  # a curve point per step
    cfg = _cfg(tiny_image, tmp_path / "s", methods=("pe+cn",), seeds=(0, 1), steps=20, extra=extra)
    results = run_table(cfg)
    assert len(fake.ran) == 2 and {a[a.index("--seed") + 1] for a in fake.ran} == {"0", "1"}
    cell = results["nets"]["1x8"]["pe+cn"]
    runs = [
        json.loads((tmp_path / "s" / "cells" / "tiny" / "1x8" / "pe_cn" / f"seed{s}" / "metrics.json").read_text())
        for s in (0, 1)
    ]
    assert runs[0]["config"]["network"]["seed"] == 0 and runs[1]["config"]["network"]["seed"] == 1
    psnrs = [r["psnr"] for r in runs]
    assert cell["seeds"] == 2 and cell["psnr"] == pytest.approx(np.mean(psnrs))
    assert cell["psnr_std"] == pytest.approx(np.std(psnrs, ddof=1))
    text = (tmp_path / "s" / "table.md").read_text()
    assert f"{cell['psnr']:.2f} ± {cell['psnr_std']:.2f}" in text and "seeds [0, 1]" in text
    # 20 steps from scratch at a constant rate: a run whose curve still rises is flagged, by its own record
    rising = {f"tiny/1x8/pe+cn/seed{s}" for s, r in zip((0, 1), runs) if r["convergence"]["gain_last_10pct"] >= 0.1}
    assert rising and set(results["not_converged"]) == rising
    assert cell["converged"] is False and "†" in text and "not converged" in text
    with pytest.raises(ValueError, match="--seeds"):
        build_cells(_cfg(tiny_image, tmp_path / "e", seeds=()))


def test_check_halving_runs_half_step_twins_and_flags_cells_still_gaining(tmp_path, tiny_image, monkeypatch) -> None:
    fake = _InProcess()
    monkeypatch.setattr(processes, "subprocess", fake)
    extra = ("--resize", "None", "--schedule", "constant")
    cfg = _cfg(tiny_image, tmp_path / "h", methods=("pe+cn",), steps=20, extra=extra, check_halving=True)
    results = run_table(cfg)
    assert sorted(a[a.index("--steps") + 1] for a in fake.ran) == ["10", "20"]
    full = json.loads((tmp_path / "h" / "cells" / "tiny" / "1x8" / "pe_cn" / "metrics.json").read_text())
    half = json.loads((tmp_path / "h" / "cells_half" / "tiny" / "1x8" / "pe_cn" / "metrics.json").read_text())
    cell = results["nets"]["1x8"]["pe+cn"]
    assert cell["gain_from_half_steps"] == pytest.approx(full["psnr"] - half["psnr"])
    assert cell["gain_from_half_steps"] > 0.1  # 10 more steps from scratch still gain: flagged
    assert results["not_converged"] == ["tiny/1x8/pe+cn"] and "half the steps" in results["convergence_rule"]
    text = (tmp_path / "h" / "table.md").read_text()
    assert "†" in text and f"{cell['gain_from_half_steps']:+.2f} |" in text
    assert results["settled"] == {"1x8": {}} and "B converged" in results["settled_rule"]
    assert run_table(cfg) == results  # resumes: both twins are finished with their own settings


def test_half_steps_verdict_is_two_sided(tmp_path, tiny_image) -> None:
    """A cell that lost more than the threshold from doubling its steps is flagged, as one that still gained is."""
    cfg = _cfg(tiny_image, tmp_path / "v", methods=("relu", "pe", "pe+cn"), steps=20, check_halving=True)
    cells = build_cells(cfg)
    full_psnr = {"relu": 20.0, "pe": 25.0, "pe+cn": 30.0}
    change = {"relu": -0.5, "pe": 0.05, "pe+cn": 0.5}  # fell, flat, still rising
    for c in cells:
        psnr = full_psnr[c.method] - (change[c.method] if c.steps is not None else 0.0)
        c.out.mkdir(parents=True)
        curve = {"step": [0, 10, 20], "train_mode_psnr": [psnr - 1, psnr, psnr]}
        verdict = {"converged": True}  # the last-10% rule passes; the half-steps twin decides
        record = {"psnr": psnr, "ssim": 0.5, "bpp": 1.0, "params": 10, "curve": curve, "convergence": verdict}
        (c.out / "metrics.json").write_text(json.dumps(record))
    results = table.collect(cfg, cells)
    verdicts = {m: c["converged"] for m, c in results["nets"]["1x8"].items()}
    assert verdicts == {"relu": False, "pe": True, "pe+cn": False}
    assert sorted(results["not_converged"]) == ["tiny/1x8/pe+cn", "tiny/1x8/relu"]
    assert results["settled"]["1x8"] == {"pe": ["pe+cn"]}  # pe converged; relu below it says nothing
    assert "gain or loss" in results["convergence_rule"]
