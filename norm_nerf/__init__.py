"""norm-nerf: normalization against spectral bias in coordinate networks, for signals and nerfstudio."""

__version__ = "0.1.0"
