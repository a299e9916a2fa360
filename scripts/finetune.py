#!/usr/bin/env python
"""Stage 2: offline finetuning of a pretrained world model on target-domain demos.

    python scripts/finetune.py checkpoint=outputs/pretrain/.../last.pt demos=data/push_cube_mujoco_target.h5
    python scripts/finetune.py checkpoint=... demos=[bags/a,bags/b] dataset=ros2_panda behaviour=demos
    python scripts/finetune.py checkpoint=... demos=... freeze=[encoder,dynamics] eval_backend=mujoco
    python scripts/finetune.py checkpoint=null scratch=true task=push_cube model=tiny objective=cdred demos=...

With `eval_backend` set, prints one line per evaluation (before the first update, every
`eval_every` updates, at the end): `finetune task=<t> steps=<n> wall_s=<s> success=<x>`; then
`finetune checkpoint=<path> updates=<n> updates_per_s=<x>`.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sim2real.config import CONFIG_DIR
from sim2real.finetune_config import register_schemas

register_schemas()


@hydra.main(config_path=str(CONFIG_DIR), config_name="finetune", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from sim2real.finetune import eval_line, finetune
    from sim2real.finetune_config import finetune_config

    run = finetune_config(cfg)
    run.out_dir = run.out_dir or HydraConfig.get().runtime.output_dir
    result = finetune(run, on_eval=lambda r: print(eval_line(r), flush=True))
    print(f"finetune checkpoint={result.checkpoint} updates={result.updates} "
          f"updates_per_s={result.updates_per_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
