#!/usr/bin/env python
"""Stage-1 learning curve: success vs env steps and wall time, with a BC reference.

    python benchmarks/pretrain_curve.py task=push_cube objective=cdred model=tiny budget_env_steps=3000
    python benchmarks/pretrain_curve.py task=pick_cube backend=maniskill budget_env_steps=10000 eval_every=1000
    python benchmarks/pretrain_curve.py task=push_cube model=5m num_envs=64 device=cuda budget_env_steps=100000

    python benchmarks/pretrain_curve.py task=pick_cube backend=mujoco budget_minutes=60 target_domains=target,hard

Any `scripts/pretrain.py` override works here too; `budget_env_steps` sets `steps` and
`budget_minutes` stops the run at that wall time. Prints at every evaluation
`pretrain task=<t> objective=<o> model=<m> env_steps=<n> updates=<n> wall_s=<s> success=<x>`,
then the same line for the final evaluation, a BC policy trained on the same demos and
evaluated on the same episodes,
`bc task=<t> demos=<n> success=<x>`,
then zero-shot success on each of `target_domains` (configs/domain/ presets, default
`target`; `none` skips them, e.g. on physx_cuda, which refuses physical shifts; the same evaluation episodes) for the pretrained model (acting as in its
evaluations, with `planner`) and the BC policy:
`pretrain task=<t> ... domain=<d> target_success=<x>` and `bc task=<t> demos=<n> domain=<d> target_success=<y>`,
and the throughput of the run:
`throughput env_steps_per_s=<x> updates_per_s=<y> minutes_per_100k_env_steps=<z>`
(env steps/s counts acting and stepping only; minutes per 100k is total wall time).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.scoring import success_in_domain  # noqa: E402
from sim2real.pretrain_config import register_schemas  # noqa: E402

register_schemas()


def parse_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """The benchmark's own options out of argv: (pretrain overrides, target domains)."""
    from sim2real.config import preset_names

    overrides, targets = [], ["target"]
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key == "budget_env_steps":
            if not value.isdigit() or int(value) < 1:
                raise SystemExit(f"pretrain_curve: budget_env_steps={value!r}: expected a positive integer")
            overrides.append(f"steps={value}")
        elif key == "target_domains":
            targets = [d for d in value.split(",") if d and value != "none"]
            unknown = [d for d in targets if d not in preset_names("domain")]
            if unknown or not (targets or value == "none"):
                raise SystemExit(f"pretrain_curve: target_domains={value!r}: expected configs/domain/ presets "
                                 f"from {', '.join(preset_names('domain'))}")
        elif not sep:
            raise SystemExit(f"pretrain_curve: expected key=value, got {arg!r}")
        else:
            overrides.append(arg)
    return overrides, targets


def main(argv: list[str]) -> None:
    from sim2real.bc import BCConfig, train_bc
    from sim2real.config import compose_config
    from sim2real.evaluate import TRAINING_EVAL_SEED, evaluate_policy
    from sim2real.inference import load_policy
    from sim2real.pretrain import eval_line, load_demos, pretrain
    from sim2real.pretrain_config import pretrain_config
    import tasks

    overrides, targets = parse_args(argv)
    cfg = pretrain_config(compose_config("pretrain", overrides))
    if not cfg.out_dir:
        cfg.out_dir = f"outputs/benchmarks/pretrain_curve/{cfg.task.name}_{cfg.objective.name}_" \
                      f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    start = time.perf_counter()
    run = pretrain(cfg, on_eval=lambda r: print(eval_line(cfg, r), flush=True))
    wall = time.perf_counter() - start
    final = eval_line(cfg, run.history[-1])
    print(final, flush=True)

    env = tasks.make_env(cfg.task, backend=cfg.backend, num_envs=1, domain=cfg.domain)
    try:
        demos = load_demos(cfg, cfg.task, env.contract, print)
        bc = train_bc(demos, env.contract, BCConfig(seed=cfg.seed), device="cpu")
        # The same evaluation episodes (seeds) as the pretraining loop's evaluations.
        stats = evaluate_policy(bc, env, cfg.eval_episodes, seed=TRAINING_EVAL_SEED)
    finally:
        env.close()
    print(f"bc task={cfg.task.name} demos={len(demos)} success={stats.success_at_end:.2f}", flush=True)
    pretrained = load_policy(Path(run.out_dir) / "checkpoints" / "last.pt", cfg.planner)
    for name in targets:
        ours, theirs = success_in_domain([pretrained, bc], cfg.task, cfg.backend, name, cfg.eval_episodes)
        print(f"{final} domain={name} target_success={ours.success_at_end:.2f}", flush=True)
        print(f"bc task={cfg.task.name} demos={len(demos)} domain={name} target_success={theirs.success_at_end:.2f}",
              flush=True)
    minutes = wall / 60 / max(run.env_steps_this_process, 1) * 100_000
    print(f"throughput env_steps_per_s={run.env_steps_per_s:.1f} updates_per_s={run.updates_per_s:.2f} "
          f"minutes_per_100k_env_steps={minutes:.1f} out_dir={Path(run.out_dir)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
