#!/usr/bin/env python
"""Transfer benchmark: pretrained + finetuned (`ours`) against `bc`, `wm_scratch` and `zero_shot`
on a shifted target world, all from the same few target demos (sim2real/transfer.py says how).

    python benchmarks/transfer.py task=push_cube target_backend=maniskill demos=20 seeds=5
    python benchmarks/transfer.py task=pick_cube target_backend=mujoco demos=20 seeds=5
    python benchmarks/transfer.py task=push_cube target_domain.friction_scale=0.3 target_domain.obs_noise_std=0.01
    python benchmarks/transfer.py task=push_cube pretrain.steps=8000 finetune.steps=1000 scratch_steps=3000 bc.chunk=4

Source world: `source_backend` (maniskill) and `source_domain` (the `source` preset); target
world: `target_backend` and `target_domain` (the published `target` preset); `*_domain.<field>=`
overrides one field of it. Prints per (method, seed)
`transfer_seed task=<t> method=<m> seed=<k> success=<x> train_s=<s> eval_s=<s>`, then per method
`transfer task=<t> source=<backend:domain> target=<backend:domain> method=<m> demos=<n> seeds=<s> success_mean=<x> ci95_low=<a> ci95_high=<b>`
and `transfer_gap ...` (ours against the best of bc and wm_scratch), and writes results.csv,
summary.csv and transfer.png under out_dir. Pretrained checkpoints are cached in cache_dir;
a stopped run continues with the same out_dir.
"""

from __future__ import annotations

import sys

from sim2real.transfer import parse_args, run_transfer


def main(argv: list[str]) -> None:
    run_transfer(parse_args(argv), say=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main(sys.argv[1:])
