"""Spectral-bias analysis: empirical NTK eigen-spectra (with batch coupling) and frequency-resolved error.

``norm_nerf.analysis.ntk`` and ``norm_nerf.analysis.freq`` hold the computations (networks train with the task
trainer); ``norm_nerf.analysis.run`` the configs and runners (``run_ntk``, ``run_freq``) that write JSON and figures,
also as ``python -m norm_nerf.analysis {ntk,freq}``.
"""

from __future__ import annotations

from norm_nerf.analysis.freq import band_relative_error
from norm_nerf.analysis.ntk import empirical_ntk, ntk_eigenvalues, spectrum_summary

__all__ = ["band_relative_error", "empirical_ntk", "ntk_eigenvalues", "spectrum_summary"]
