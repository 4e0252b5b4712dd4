"""Atomic writes: a failed write leaves the previous file and no partial file; a full disk is one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from norm_nerf.core.saving import save_atomically
from norm_nerf.utils.atomic import NoSpaceError, partial_path, write_atomically, write_bytes_atomically
from tests.conftest import fill_disk


def test_a_write_that_fails_halfway_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def half_then_full(tmp: Path) -> None:
        tmp.write_text("new, trunc")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(NoSpaceError, match=rf"^no space left on {tmp_path} \(while writing metrics.json"):
        write_atomically(target, half_then_full)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with pytest.raises(KeyError):  # other failures pass through unchanged, and clean up as well
        write_atomically(target, lambda tmp: (tmp.write_text("x"), {}["boom"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_the_temporary_file_lives_where_asked_and_is_hidden(tmp_path: Path) -> None:
    ckpts = tmp_path / "nerfstudio_models"
    ckpts.mkdir()
    seen = []
    write_atomically(ckpts / "step-000000003.ckpt", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"x")), tmp_path)
    assert seen == [partial_path(ckpts / "step-000000003.ckpt", tmp_path)]
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".") and seen[0].name.endswith(".partial")
    assert [p.name for p in ckpts.iterdir()] == ["step-000000003.ckpt"]


def test_a_real_full_disk(small_disk: Path) -> None:
    """With 256 KiB free: torch.save of 1 MiB fails as NoSpaceError; the earlier checkpoint stays whole."""
    small = {"w": torch.arange(1000, dtype=torch.float32)}
    save_atomically(small, small_disk / "step-1.ckpt")
    fill_disk(small_disk, 256 * 1024)
    with pytest.raises(NoSpaceError, match=f"no space left on {small_disk}"):
        save_atomically({"w": torch.zeros(256 * 1024)}, small_disk / "step-2.ckpt")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "step-1.ckpt"]
    torch.testing.assert_close(torch.load(small_disk / "step-1.ckpt", weights_only=True)["w"], small["w"])
    with pytest.raises(NoSpaceError):
        write_bytes_atomically(small_disk / "big.png", b"\0" * (1 << 20))
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "step-1.ckpt"]


def test_torch_save_straight_to_a_full_disk_is_what_we_avoid(small_disk: Path) -> None:
    """What torch.save alone does there: a RuntimeError that never says "disk full", and a truncated file."""
    fill_disk(small_disk, 256 * 1024)
    with pytest.raises(RuntimeError) as info:
        torch.save({"w": torch.zeros(256 * 1024)}, small_disk / "step-2.ckpt")
    assert "space" not in str(info.value).lower()
    assert (small_disk / "step-2.ckpt").exists()
