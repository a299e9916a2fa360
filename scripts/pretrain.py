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

import sim2real.imitation  # noqa: F401  (registers the objective/ schemas)
import tasks.domain  # noqa: F401  (registers domain/schema)
import tasks.spec  # noqa: F401  (registers task/schema)
from sim2real.config import CONFIG_DIR, to_dataclass
from sim2real.pretrain import PretrainConfig


@hydra.main(config_path=str(CONFIG_DIR), config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from sim2real.imitation import CONFIGS
    from sim2real.pretrain import pretrain
    from tasks.domain import DomainParams
    from tasks.spec import TaskConfig

    run = to_dataclass(cfg, PretrainConfig)
    run.task = to_dataclass(cfg.task, TaskConfig)
    run.domain = to_dataclass(cfg.domain, DomainParams)
    run.objective = to_dataclass(cfg.objective, CONFIGS[cfg.objective.name])
    run.out_dir = run.out_dir or HydraConfig.get().runtime.output_dir

    def report(r):
        print(f"pretrain task={run.task.name} objective={run.objective.name} model={run.model.name} "
              f"env_steps={r.env_steps} updates={r.updates} wall_s={r.wall_s:.1f} success={r.success_at_end:.2f}",
              flush=True)

    pretrain(run, on_eval=report)


if __name__ == "__main__":
    main()
