"""One way to name a coordinate network, used by every CLI: ``method`` + depth + width.

Method strings: ``<encoding>[+<norm>]`` for ReLU MLPs — encoding ``relu`` (raw coordinates), ``pe``
(Fourier PE), ``rff`` (Gaussian random Fourier features) or ``hash`` (hash grid); norm one of
``bn|ln|gn|cn|rms`` (``none`` allowed) — or a baseline: ``siren``, ``wire``, ``mfn`` (= ``mfn-fourier``),
``mfn-gabor``. Examples: ``relu``, ``pe``, ``relu+bn``, ``pe+cn``, ``hash+cn``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from norm_nerf.core.baselines import MFN, Siren, Wire
from norm_nerf.core.encodings import FourierEncoding, GaussianFourierEncoding
from norm_nerf.core.hashgrid import HashGridConfig
from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import check_norm_kind

ENCODINGS = ("relu", "pe", "rff", "hash")
BASELINES = ("siren", "wire", "mfn", "mfn-fourier", "mfn-gabor")
PAPER_METHODS = (
    "relu", "pe", "siren", "mfn", "wire",
    "relu+bn", "relu+ln", "relu+gn", "relu+cn",
    "pe+bn", "pe+ln", "pe+gn", "pe+cn",
)  # fmt: skip
"""The 13 methods compared in the papers."""


def parse_method(method: str) -> tuple[str, str]:
    """Split a method string into ``(encoding_or_baseline, norm)``; raises ValueError naming valid choices."""
    text = str(method).strip().lower()
    head, _, norm = text.partition("+")
    if head in BASELINES:
        if norm and norm != "none":
            raise ValueError(f"method {method!r}: baselines ({', '.join(BASELINES)}) take no normalization")
        return head, "none"
    if head not in ENCODINGS:
        raise ValueError(
            f"unknown method {method!r}; use <encoding>[+<norm>] with encoding in {', '.join(ENCODINGS)} "
            f"or a baseline in {', '.join(BASELINES)} (e.g. relu, pe+cn, hash+bn, siren)"
        )
    try:
        norm = check_norm_kind(norm or "none")
    except ValueError as err:
        raise ValueError(f"method {method!r}: {err}") from None
    return head, norm


def default_lr(method: str) -> float:
    """The learning rate the papers (and the authors' code) use for each kind of network."""
    head, norm = parse_method(method)
    if norm != "none":
        return 1e-2
    return {"siren": 1e-4, "wire": 5e-3}.get(head, 1e-3)


@dataclass
class NetworkConfig:
    """A coordinate network: encoding + normalized MLP, or a baseline."""

    method: str = "pe+cn"
    """Method string: <encoding>[+<norm>] (relu, pe, rff, hash with bn|ln|gn|cn|rms) or siren, wire, mfn, mfn-gabor."""
    depth: int = 10
    """Number of hidden (activated) layers; one linear output layer follows."""
    width: int = 28
    """Hidden features per layer."""
    num_frequencies: int = 10
    """PE: number of octaves L (sin/cos(2^k pi x), k = 0..L-1), the papers use 10."""
    rff_features: int = 256
    """RFF: number of random frequencies."""
    rff_sigma: float = 10.0
    """RFF: standard deviation of the random frequencies."""
    hash_grid: HashGridConfig = field(default_factory=HashGridConfig)
    """Hash grid (method hash): levels, features per level, table size, resolutions, implementation."""
    norm_momentum: float | None = 0.1
    """Momentum of the running statistics of bn/gn/cn (None = cumulative average)."""
    activation: str = "relu"
    """Hidden activation of the normalized MLP."""
    output_activation: str | None = None
    """Activation after the output layer (None = linear)."""
    skips: tuple[int, ...] = ()
    """Hidden layers that also receive the (encoded) input."""
    siren_w0: float = 30.0
    """SIREN: frequency factor omega_0."""
    wire_omega: float = 20.0
    """WIRE: frequency omega of the Gabor wavelet."""
    wire_scale: float = 10.0
    """WIRE: spread s of the Gabor wavelet."""
    mfn_input_scale: float = 256.0
    """MFN: scale of the filter frequencies."""
    seed: int | None = None
    """Seed for the initial weights (None = use the global torch RNG state)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Extra options passed to the norm layers (e.g. sync, update_under_no_grad)."""

    def setup(self, in_dim: int, out_dim: int) -> CoordinateNetwork:
        """Build the network for ``in_dim`` coordinates and ``out_dim`` outputs."""
        if self.seed is None:
            return CoordinateNetwork(self, in_dim, out_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return CoordinateNetwork(self, in_dim, out_dim)


class CoordinateNetwork(nn.Module):
    """Encoding (identity for ``relu``) followed by a :class:`NormMLP`, or a baseline network.

    Coordinates are expected in ``[-1, 1]^in_dim``; the hash grid receives them mapped to ``[0, 1]``.
    """

    def __init__(self, config: NetworkConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        head, norm = parse_method(config.method)
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"network {config.method!r}: in_dim and out_dim must be >= 1, got {in_dim}, {out_dim}")
        self.method, self.norm, self.in_dim, self.out_dim = config.method, norm, in_dim, out_dim
        self.encoding: nn.Module | None = None
        self.body: nn.Module
        c = config
        if head == "siren":
            self.body = Siren(in_dim, out_dim, c.depth, c.width, w0=c.siren_w0)
        elif head == "wire":
            self.body = Wire(in_dim, out_dim, c.depth, c.width, omega=c.wire_omega, scale=c.wire_scale)
        elif head in ("mfn", "mfn-fourier", "mfn-gabor"):
            kind = "gabor" if head == "mfn-gabor" else "fourier"
            self.body = MFN(in_dim, out_dim, c.depth, c.width, kind=kind, input_scale=c.mfn_input_scale)
        else:
            self.encoding = _build_encoding(head, in_dim, c)
            enc_dim = in_dim if self.encoding is None else self.encoding.out_dim
            self.body = NormMLP(
                enc_dim,
                out_dim,
                c.depth,
                c.width,
                norm=norm,
                activation=c.activation,
                output_activation=c.output_activation,
                skips=c.skips,
                norm_opts={"momentum": c.norm_momentum, **c.extra},
            )
        self._hash_input = head == "hash"

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"network {self.method!r} expects coordinates of shape (..., {self.in_dim}), got {tuple(x.shape)}"
            )
        if self.encoding is not None:
            x = self.encoding((x + 1.0) * 0.5 if self._hash_input else x)
        return self.body(x)


def _build_encoding(head: str, in_dim: int, c: NetworkConfig) -> nn.Module | None:
    if head == "relu":
        return None
    if head == "pe":
        return FourierEncoding(in_dim, c.num_frequencies)
    if head == "rff":
        return GaussianFourierEncoding(in_dim, c.rff_features, c.rff_sigma, seed=c.seed or 0)
    return c.hash_grid.setup(in_dim)


_CONFIG_FIELDS = tuple(f.name for f in fields(NetworkConfig) if f.name not in ("method", "depth", "width"))


def build_network(method: str, in_dim: int, out_dim: int, depth: int = 10, width: int = 28, **opts: Any) -> nn.Module:
    """Build a coordinate network from a method string, e.g. ``build_network("pe+cn", 2, 3, 10, 28)``.

    ``opts`` are :class:`NetworkConfig` fields (``num_frequencies``, ``norm_momentum``, ``seed``, ...).
    """
    unknown = set(opts) - set(_CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"build_network: unknown options {sorted(unknown)}; valid: {', '.join(_CONFIG_FIELDS)}")
    return NetworkConfig(method=method, depth=depth, width=width, **opts).setup(in_dim, out_dim)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable real scalars (a complex parameter counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)
