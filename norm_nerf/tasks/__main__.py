"""``python -m norm_nerf.tasks <task> <flags>``: one signal task (image, ct, mri, shape), as ``norm-inr <task>``.

Every cell of ``norm-inr table`` is one such command (``commands.txt``), so cells run without the CLI layer.
"""

from norm_nerf.tasks.run import main
from norm_nerf.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
