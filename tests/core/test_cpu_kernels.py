"""The CPU kernel loader: sources ship as files and the build is named by their hash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from norm_nerf.core import cpu_kernels


def test_every_source_and_header_ships() -> None:
    for name in (*cpu_kernels.SOURCES, *cpu_kernels.HEADERS):
        assert (cpu_kernels.CSRC / name).is_file(), name


def test_build_name_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "csrc"
    shutil.copytree(cpu_kernels.CSRC, copy)
    monkeypatch.setattr(cpu_kernels, "CSRC", copy)
    before = cpu_kernels.build_name()
    assert before == cpu_kernels.build_name()  # deterministic
    assert before.startswith("norm_nerf_cpu_kernels_")
    with (copy / "norms.cpp").open("a") as f:
        f.write("\n// an edit\n")
    edited = cpu_kernels.build_name()
    assert edited != before
    (copy / "cpu_kernels.h").write_text((copy / "cpu_kernels.h").read_text() + "\n")
    assert cpu_kernels.build_name() not in (before, edited)  # headers count too


def test_a_finished_build_is_imported_without_the_build_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    if not cpu_kernels.compiled_enabled() or cpu_kernels.cpu_kernels() is None:
        pytest.skip("C++ kernels disabled or not buildable here")
    import torch.utils.cpp_extension as cpp_extension

    def no_build(*args, **kwargs):
        raise AssertionError("load() called although the library is built")

    monkeypatch.setattr(cpp_extension, "load", no_build)
    cpu_kernels.cpu_kernels.cache_clear()
    try:
        module = cpu_kernels.cpu_kernels()
        assert module is not None and module.__name__ == cpu_kernels.build_name()
    finally:
        cpu_kernels.cpu_kernels.cache_clear()
