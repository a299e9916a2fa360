#!/usr/bin/env python
"""Stage-1 ablation: does online imitation beat cloning the same demos, in the source domain and
zero-shot under shifts?

    python benchmarks/stage1_ablation.py                                   # 4 tasks, MuJoCo, 16k env steps a run
    python benchmarks/stage1_ablation.py tasks=pick_cube seeds=1,2,3 budget_env_steps=100000
    python benchmarks/stage1_ablation.py tasks=push_cube variants=online,bc_only,bc num_envs=8 utd_ratio=0.125

For each task and seed, on the same demos (`num_demos` scripted episodes of the source
domain) and the same evaluation episodes (`eval_episodes`, seeds from 1 000 000):
- `online`: online imitation with the critic in charge of the prior: its Q term on
  (agent.pi_q_coef=1) beside the cloning term, and the reverse curriculum
  (curriculum.enabled=true), for `budget_env_steps` env steps (with the defaults' 4 envs and
  utd_ratio 0.25, 16 000 steps are 4 750 updates: about 8 minutes on 2 free cores). Runs get
  equal steps, not equal minutes, so that a busy machine cannot favour one variant;
  `budget_minutes` adds a wall-time cap;
- `online_mppi`, `bc_only_mppi`: that run's checkpoint acting by MPPI on its learned value
  (`planner=deploy`) instead of the prior: no training of their own;
- `bc_only`: the prior clones the demos and its Q term is off (agent.pi_q_coef=0), no
  curriculum: online interaction reaches it only through the encoder;
- `bc`: `sim2real.bc` on the same demos (the reference a user would otherwise train).

Each is scored on the source domain and zero-shot on each of `target_domains`
(configs/domain/ presets). Any other `key=value` is a `scripts/pretrain.py` override for every
pretraining run, applied after the variant's own (e.g. `num_envs=8 utd_ratio=0.125`). Prints one line per run and domain,

`ablation_run task=<t> variant=<v> seed=<s> domain=<d> success=<x> env_steps=<n> updates=<n> wall_s=<s>`

then per task, variant and domain, over seeds (Wilson interval on the pooled episodes):

`ablation task=<t> variant=<v> domain=<d> success=<x> ci95_low=<l> ci95_high=<h> seeds=<n> episodes=<n>`

Rows go to `<out_dir>/results.csv`; a rerun skips the (task, variant, seed) runs it holds.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.results import append_rows  # noqa: E402
from benchmarks.scoring import success_in_domain  # noqa: E402
from sim2real.pretrain_config import register_schemas  # noqa: E402

register_schemas()

DEFAULTS = {"tasks": "push_cube,pick_cube,stack_cube,open_drawer", "variants": "online,online_mppi,bc_only,bc_only_mppi,bc",
            "seeds": "1", "backend": "mujoco", "num_demos": "200", "budget_env_steps": "16000", "budget_minutes": "0",
            "eval_episodes": "30",
            "target_domains": "target,hard", "out_dir": "outputs/benchmarks/stage1_ablation"}
ONLINE = ["agent.pi_q_coef=1", "curriculum.enabled=true"]
BC_ONLY = ["agent.pi_q_coef=0", "curriculum.enabled=false"]
VARIANTS = {"online": [*ONLINE, "planner=policy"], "online_mppi": [*ONLINE, "planner=deploy"],
            "bc_only": [*BC_ONLY, "planner=policy"], "bc_only_mppi": [*BC_ONLY, "planner=deploy"], "bc": None}
FIELDS = ["task", "variant", "seed", "domain", "success", "episodes", "env_steps", "updates", "wall_s"]


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(the ablation's options, pretraining overrides for every run); refuses what cannot work."""
    from sim2real.config import preset_names
    from tasks.spec import TASKS

    opts, overrides = dict(DEFAULTS), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"stage1_ablation: expected key=value, got {arg!r}")
        if key in opts:
            opts[key] = value
        elif key in ("task", "seed", "steps", "out_dir", "demos"):
            raise SystemExit(f"stage1_ablation: {key}= is set per run; use tasks=, seeds=, out_dir= or num_demos=")
        else:
            overrides.append(arg)
    checks = {"tasks": list(TASKS), "variants": list(VARIANTS), "target_domains": preset_names("domain")}
    for key, allowed in checks.items():
        bad = [v for v in opts[key].split(",") if v not in allowed]
        if bad or not opts[key]:
            raise SystemExit(f"stage1_ablation: {key}={opts[key]!r}: expected some of {', '.join(allowed)}")
    for key in ("seeds", "num_demos", "eval_episodes", "budget_env_steps"):
        if not all(v.isdigit() for v in opts[key].split(",")):
            raise SystemExit(f"stage1_ablation: {key}={opts[key]!r}: expected non-negative integers")
    try:
        if float(opts["budget_minutes"]) < 0:
            raise ValueError
    except ValueError:
        raise SystemExit(f"stage1_ablation: budget_minutes={opts['budget_minutes']!r}: expected minutes >= 0 "
                         "(0: no cap)")
    return opts, overrides


def done_runs(path: Path) -> set[tuple[str, str, str]]:
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        return {(r["task"], r["variant"], r["seed"]) for r in csv.DictReader(f)}


def run_one(task: str, variant: str, seed: int, opts: dict[str, str], overrides: list[str],
            out: Path) -> list[dict]:
    """One (task, variant, seed): train (or clone), then score on the source and target domains."""
    from sim2real.bc import BCConfig, train_bc
    from sim2real.config import compose_config
    from sim2real.inference import load_policy
    from sim2real.pretrain import load_demos, pretrain
    from sim2real.pretrain_config import pretrain_config
    import tasks

    trained = variant.removesuffix("_mppi")  # an _mppi variant scores the checkpoint of the run it names
    run_dir = out / f"{task}_{trained}_seed{seed}"
    base = [f"task={task}", f"seed={seed}", f"backend={opts['backend']}", f"num_demos={opts['num_demos']}",
            f"eval_episodes={opts['eval_episodes']}", f"budget_minutes={opts['budget_minutes']}",
            f"steps={opts['budget_env_steps']}", "eval_video=false", f"out_dir={run_dir}"]
    cfg = pretrain_config(compose_config("pretrain", base + (VARIANTS[variant] or []) + overrides))
    episodes = int(opts["eval_episodes"])
    start = time.perf_counter()
    if VARIANTS[variant] is None:
        env = tasks.make_env(cfg.task, backend=cfg.backend, num_envs=1, domain=cfg.domain)
        try:
            demos = load_demos(cfg, cfg.task, env.contract, print)
        finally:
            env.close()
        policy = train_bc(demos, env.contract, BCConfig(seed=seed), device="cpu")
        env_steps = updates = 0
    elif trained != variant:
        checkpoint = run_dir / "checkpoints" / "last.pt"
        if not checkpoint.exists():
            raise SystemExit(f"stage1_ablation: {variant} scores the {trained} run's {checkpoint}, which does not "
                             f"exist: list {trained} before {variant} in variants=")
        policy = load_policy(checkpoint, cfg.planner)
        env_steps, updates = int(policy.ckpt.extra["step"]), int(policy.ckpt.extra["updates"])
    else:
        run = pretrain(cfg)
        policy = load_policy(run_dir / "checkpoints" / "last.pt", cfg.planner)
        env_steps, updates = run.env_steps, run.updates
    rows = []
    for domain in ["source", *opts["target_domains"].split(",")]:
        (stats,) = success_in_domain([policy], cfg.task, cfg.backend, domain, episodes)
        rows.append({"task": task, "variant": variant, "seed": seed, "domain": domain,
                     "success": round(stats.success_at_end, 4), "episodes": episodes, "env_steps": env_steps,
                     "updates": updates, "wall_s": round(time.perf_counter() - start, 1)})
        print("ablation_run " + " ".join(f"{k}={rows[-1][k]}" for k in FIELDS if k != "episodes"), flush=True)
    return rows


def summarise(path: Path) -> None:
    from sim2real.evaluate import binomial_ci95

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"], r["domain"]), []).append(r)
    for (task, variant, domain), rs in groups.items():
        episodes = sum(int(r["episodes"]) for r in rs)
        successes = round(sum(float(r["success"]) * int(r["episodes"]) for r in rs))
        low, high = binomial_ci95(successes, episodes)
        print(f"ablation task={task} variant={variant} domain={domain} success={successes / episodes:.3f} "
              f"ci95_low={low:.3f} ci95_high={high:.3f} seeds={len(rs)} episodes={episodes}", flush=True)


def main(argv: list[str]) -> None:
    opts, overrides = parse_args(argv)
    out = Path(opts["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    done = done_runs(results)
    for task in opts["tasks"].split(","):
        for seed in opts["seeds"].split(","):
            for variant in opts["variants"].split(","):
                if (task, variant, seed) in done:
                    continue
                append_rows(results, FIELDS, run_one(task, variant, int(seed), opts, overrides, out))
    summarise(results)


if __name__ == "__main__":
    main(sys.argv[1:])
