"""nerfstudio integration: the only modules of norm-nerf that import nerfstudio."""
