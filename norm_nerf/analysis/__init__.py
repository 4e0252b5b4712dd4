"""Spectral-bias analysis: empirical NTK eigen-spectra (with batch coupling) and frequency-resolved error.

``norm_nerf.analysis.ntk`` and ``norm_nerf.analysis.freq`` hold the computations (torch only);
``norm_nerf.analysis.cli`` the configs and runners (``run_ntk``, ``run_freq``) that write JSON and figures.
"""

from __future__ import annotations

from typing import Any

from norm_nerf.analysis.freq import band_relative_error
from norm_nerf.analysis.ntk import empirical_ntk, ntk_eigenvalues, spectrum_summary

_CLI_NAMES = ("FreqConfig", "NtkConfig", "run_freq", "run_ntk")


def __getattr__(name: str) -> Any:
    # The CLI module is imported on first use, so `python -m norm_nerf.analysis.cli` runs it only once.
    if name in _CLI_NAMES:
        from norm_nerf.analysis import cli

        return getattr(cli, name)
    raise AttributeError(f"module 'norm_nerf.analysis' has no attribute {name!r}")


__all__ = [
    "FreqConfig",
    "NtkConfig",
    "band_relative_error",
    "empirical_ntk",
    "ntk_eigenvalues",
    "run_freq",
    "run_ntk",
    "spectrum_summary",
]
