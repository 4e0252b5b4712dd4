"""norm-train: ``ns-train`` for the norm-* methods in one process or in several started by ``torchrun``.

It takes exactly the ``ns-train`` arguments and runs nerfstudio's own trainer. Under ``torchrun`` each process
is one rank (gloo on CPU, NCCL on CUDA); the ranks train one model on all their rays together
(:mod:`norm_nerf.ns.launch`)::

    norm-train norm-mipnerf --data data/blender/lego                       # one process, as ns-train
    torchrun --nproc-per-node 2 -m norm_nerf.scripts.train norm-mipnerf --data data/blender/lego
"""

from __future__ import annotations

import sys

import tyro
import yaml

from norm_nerf.ns.launch import RankLostError, layout_from_env, report, train
from norm_nerf.ns.trainer import USER_ERRORS


def main(config) -> None:
    """Apply ns-train's aliases (``--data``, ``--prompt``, ``--load-config``) and train in this process."""
    from nerfstudio.utils.rich_utils import CONSOLE

    if config.data:
        config.pipeline.datamanager.data = config.data
    if config.prompt:
        config.pipeline.model.prompt = config.prompt
    if config.load_config:
        CONSOLE.log(f"Loading pre-set config from: {config.load_config}")
        config = yaml.load(config.load_config.read_text(), Loader=yaml.Loader)
    train(config)


def entrypoint() -> None:
    """Console script ``norm-train`` (and ``python -m norm_nerf.scripts.train`` under torchrun)."""
    from nerfstudio.configs.config_utils import convert_markup_to_ansi
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(AnnotatedBaseConfigUnion, description=convert_markup_to_ansi(__doc__))
    try:
        main(config)
    except RankLostError as err:
        report(err, layout_from_env())
        sys.exit(1)
    except USER_ERRORS as err:  # those from before the trainer exists (e.g. the process layout)
        report(err, layout_from_env())
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
