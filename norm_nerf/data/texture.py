"""A high-frequency procedural texture defined on 3-D position, so spectral bias shows in renders.

The colour at a surface point is a 3-D checkerboard (hard edges: every frequency) modulated by thin sinusoidal
stripes and a slow colour gradient. It is a function of position only, so every view sees the same texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float


@dataclass(frozen=True)
class ProceduralTexture:
    """Checker x stripes x gradient texture on 3-D points given in the scene's unit-sphere frame."""

    checker_period: float = 0.25
    """Edge length of the checker cells (unit-sphere units)."""
    stripe_period: float = 0.06
    """Wavelength of the sinusoidal stripes (unit-sphere units)."""
    stripe_direction: tuple[float, float, float] = (0.6, 0.3, 0.74)
    """Direction across the stripes (normalised internally)."""
    stripe_depth: float = 0.35
    """How much the stripes darken, in [0, 1]."""
    color_a: tuple[float, float, float] = (0.90, 0.55, 0.20)
    """Colour of the even checker cells."""
    color_b: tuple[float, float, float] = (0.15, 0.35, 0.80)
    """Colour of the odd checker cells."""

    def __post_init__(self) -> None:
        if self.checker_period <= 0 or self.stripe_period <= 0:
            raise ValueError("texture periods must be positive")
        if not 0.0 <= self.stripe_depth <= 1.0:
            raise ValueError(f"stripe_depth must be in [0, 1], got {self.stripe_depth}")

    def __call__(self, points: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
        """RGB in [0, 1] at each point."""
        p = np.asarray(points, dtype=np.float64)
        cells = np.floor(p / self.checker_period).astype(np.int64).sum(axis=1)
        odd = (cells % 2).astype(np.float64)[:, None]
        base = (1.0 - odd) * np.asarray(self.color_a) + odd * np.asarray(self.color_b)
        direction = np.asarray(self.stripe_direction, dtype=np.float64)
        phase = p @ (direction / np.linalg.norm(direction)) * (2.0 * np.pi / self.stripe_period)
        stripes = 1.0 - self.stripe_depth * 0.5 * (1.0 + np.sin(phase))
        gradient = 0.85 + 0.15 * np.clip(p[:, 2:3], -1.0, 1.0)
        return np.clip(base * stripes[:, None] * gradient, 0.0, 1.0)


GROUND_TEXTURE = ProceduralTexture(
    checker_period=0.2, stripe_period=0.11, color_a=(0.75, 0.75, 0.70), color_b=(0.35, 0.33, 0.30)
)
"""A duller texture for the ground plane of DTU-like scenes."""
