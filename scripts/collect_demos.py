#!/usr/bin/env python
"""Record scripted-expert demonstrations into our HDF5 format.

    python scripts/collect_demos.py task=pick_cube backend=maniskill domain=source episodes=100 out=data/pick_cube.h5
    python scripts/collect_demos.py task=open_drawer backend=mujoco domain=target num_envs=4 expert_noise_std=0.1

Ends with one line: `demos task=<t> backend=<b> domain=<d> episodes=<n> success_rate=<x>`
(success_rate: the fraction of episodes solved at their last step).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sim2real.config import CONFIG_DIR, to_dataclass
from tasks.collect import CollectConfig


@hydra.main(config_path=str(CONFIG_DIR), config_name="collect_demos", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from tasks.collect import collect_demos

    collect_demos(to_dataclass(cfg, CollectConfig))


if __name__ == "__main__":
    main()
