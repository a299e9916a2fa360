#!/usr/bin/env python
"""Stage 1: reward-free online imitation pretraining in simulation.

    python scripts/pretrain.py task=push_cube backend=maniskill objective=cdred model=tiny
    python scripts/pretrain.py task=pick_cube objective=iq steps=50000 num_envs=2
    python scripts/pretrain.py task=push_cube out_dir=outputs/run1 resume=true   # continue a run

Prints one line per evaluation:
`pretrain task=<t> objective=<o> model=<m> env_steps=<n> updates=<n> wall_s=<s> success=<x>`.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sim2real.config import CONFIG_DIR
from sim2real.pretrain_config import register_schemas

register_schemas()


@hydra.main(config_path=str(CONFIG_DIR), config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from sim2real.pretrain import eval_line, pretrain

    from sim2real.pretrain_config import pretrain_config

    run = pretrain_config(cfg)
    run.out_dir = run.out_dir or HydraConfig.get().runtime.output_dir
    result = pretrain(run, on_eval=lambda r: print(eval_line(run, r), flush=True))
    print(f"throughput env_steps_per_s={result.env_steps_per_s:.1f} updates_per_s={result.updates_per_s:.2f} "
          f"out_dir={result.out_dir}", flush=True)


if __name__ == "__main__":
    main()
