"""Shared test helpers: tiny data made in the tests, and the optional ../shared/data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The denormal flush (norm_nerf.core.cpu_setup) is process state that in-process nerfstudio runs would switch on for
# every later test; tests/core/test_cpu_setup.py checks it in subprocesses instead.
os.environ["NORM_NERF_FLUSH_DENORMALS"] = "0"


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder, or skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
