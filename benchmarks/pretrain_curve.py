#!/usr/bin/env python
"""Stage-1 learning curve: success vs env steps and wall time, with a BC reference.

    python benchmarks/pretrain_curve.py task=push_cube objective=cdred model=tiny budget_env_steps=3000
    python benchmarks/pretrain_curve.py task=pick_cube backend=maniskill budget_env_steps=10000 eval_every=1000
    python benchmarks/pretrain_curve.py task=push_cube model=5m num_envs=64 device=cuda budget_env_steps=100000

Any `scripts/pretrain.py` override works here too; `budget_env_steps` sets `steps`. Prints at
every evaluation
`pretrain task=<t> objective=<o> model=<m> env_steps=<n> updates=<n> wall_s=<s> success=<x>`,
then the same line for the final evaluation, a BC policy trained on the same demos and
evaluated on the same episodes,
`bc task=<t> demos=<n> success=<x>`,
and the throughput of the run:
`throughput env_steps_per_s=<x> updates_per_s=<y> minutes_per_100k_env_steps=<z>`
(env steps/s counts acting and stepping only; minutes per 100k is total wall time).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from sim2real.pretrain import register_schemas

register_schemas()


def main(argv: list[str]) -> None:
    from sim2real.bc import BCConfig, train_bc
    from sim2real.config import compose_config
    from sim2real.evaluate import evaluate_policy
    from sim2real.pretrain import eval_line, load_demos, pretrain, pretrain_config
    import tasks

    overrides, budget = [], None
    for arg in argv:
        if arg.startswith("budget_env_steps="):
            budget = int(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    if budget is not None:
        overrides.append(f"steps={budget}")
    cfg = pretrain_config(compose_config("pretrain", overrides))
    if not cfg.out_dir:
        cfg.out_dir = f"outputs/benchmarks/pretrain_curve/{cfg.task.name}_{cfg.objective.name}_" \
                      f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    start = time.perf_counter()
    run = pretrain(cfg, on_eval=lambda r: print(eval_line(cfg, r), flush=True))
    wall = time.perf_counter() - start
    print(eval_line(cfg, run.history[-1]), flush=True)

    env = tasks.make_env(cfg.task, backend=cfg.backend, num_envs=1, domain=cfg.domain)
    try:
        demos = load_demos(cfg, cfg.task, env.contract, print)
        bc = train_bc(demos, env.contract, BCConfig(seed=cfg.seed), device="cpu")
        # The same evaluation episodes (seeds) as the pretraining loop's evaluations.
        stats = evaluate_policy(bc, env, cfg.eval_episodes, seed=1_000_000)
    finally:
        env.close()
    print(f"bc task={cfg.task.name} demos={len(demos)} success={stats.success_at_end:.2f}", flush=True)
    minutes = wall / 60 / max(run.env_steps_this_process, 1) * 100_000
    print(f"throughput env_steps_per_s={run.env_steps_per_s:.1f} updates_per_s={run.updates_per_s:.2f} "
          f"minutes_per_100k_env_steps={minutes:.1f} out_dir={Path(run.out_dir)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
