#!/usr/bin/env python
"""Transfer benchmark: pretrained + finetuned (`ours`) against every baseline on a shifted
target world, all from the same few target demos (sim2real/transfer.py says how). A Hydra app
over configs/transfer.yaml, so one command line runs one setting or sweeps many (`-m`).

    python benchmarks/transfer.py task=push_cube target_backend=maniskill demos=20 seeds=5
    python benchmarks/transfer.py task=pick_cube target_backend=mujoco demos=20 seeds=5
    python benchmarks/transfer.py task=push_cube target_domain.friction_scale=0.3 target_domain.obs_noise_std=0.01
    python benchmarks/transfer.py task=push_cube target_domain.init_range_scale=1.5 demo_init_range_scale=0.5
    python benchmarks/transfer.py task=push_cube pretrain.steps=8000 finetune.steps=1000 scratch_steps=3000 bc.chunk=4
    python benchmarks/transfer.py -m task=push_cube,pick_cube first_seed=0,1,2 seeds=1 demos=5,10,20,50
    python scripts/aggregate_transfer.py outputs/sweeps/transfer/<date>      # one table over the jobs

Source world: `source_backend` (maniskill) and `source_domain` (the `source` preset); target
world: `target_backend` and `target_domain` (the published `target` preset); `*_domain.<field>=`
overrides one field of it. Prints per (method, seed)
`transfer_seed task=<t> method=<m> seed=<k> success=<x> train_s=<s> eval_s=<s>`, then per method
`transfer task=<t> source=<backend:domain> target=<backend:domain> method=<m> demos=<n> seeds=<s> success_mean=<x> ci95_low=<a> ci95_high=<b>`
and `transfer_gap ...` (ours against the best baseline), and writes results.csv, summary.csv,
transfer.png and transfer.log (the lines with timestamps) under out_dir. Pretrained checkpoints
are cached in cache_dir; a stopped run continues with the same out_dir. docs/scale_out.md
covers sweeps on Ray, SLURM and Ray clusters.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from sim2real.config import CONFIG_DIR
from sim2real.pretrain_config import register_schemas
from sim2real.transfer import run_transfer
from sim2real.transfer_config import hydra_argv, transfer_config

register_schemas()


@hydra.main(config_path=str(CONFIG_DIR), config_name="transfer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run = transfer_config(cfg, list(hc.overrides.task), dict(hc.runtime.choices))
    if hc.mode == RunMode.MULTIRUN and run.out_dir:
        raise ValueError(f"out_dir={run.out_dir}: a sweep writes each job into its own folder under "
                         "hydra.sweep.dir; give that instead")
    run.out_dir = hc.runtime.output_dir
    run.cache_dir = to_absolute_path(run.cache_dir)
    # Hydra's job logging: the console gets the lines as printed, <out_dir>/transfer.log with timestamps.
    log = logging.getLogger("transfer")
    log.info(f"transfer out_dir={run.out_dir} cache_dir={run.cache_dir} "
             f"seeds={run.first_seed}..{run.first_seed + run.seeds - 1}")
    run_transfer(run, say=log.info)


if __name__ == "__main__":
    sys.argv[1:] = hydra_argv(sys.argv[1:])
    main()
