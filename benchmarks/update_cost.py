#!/usr/bin/env python
"""Cost of one stage-1 gradient update, and where it goes.

    python benchmarks/update_cost.py                                   # tiny, cdred, pick_cube, 2 x 128 slices
    python benchmarks/update_cost.py model=5m objective=iq batch_size=256 updates=50
    python benchmarks/update_cost.py profile=true                       # + torch.profiler's top ops
    python benchmarks/update_cost.py objective.reward_mlp_dim=512 objective.rnd_dim=256   # CDRED-WM-like sizes

Builds the agent `scripts/pretrain.py` would build for the task's state contract and times
`Agent.update` on random slices (the cost does not depend on the values): `warmup` updates,
then `updates` timed ones. Prints

`update_cost task=<t> model=<m> objective=<o> batch=<2 x b> params_model=<n> params_objective=<n>
 updates_per_s=<x> ms_per_update_p50=<y> threads=<k>`

Speed-ups are measured side by side in one run: run it from two checkouts in turn, e.g.
`for i in 1 2 3; do (cd ../base && python benchmarks/update_cost.py); python benchmarks/update_cost.py; done`.
Only APIs that predate this script are used, so an older checkout can run a copy of it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch


def main(argv: list[str]) -> None:
    from sim2real.agent import Agent, AgentConfig
    from sim2real.buffer import SliceBatch
    from sim2real.config import ModelConfig, PlannerConfig, load_preset
    from sim2real.imitation import CONFIGS, make_objective
    from sim2real.world_model import WorldModel
    from tasks.spec import task_contract

    opts = {"task": "pick_cube", "model": "tiny", "objective": "cdred", "batch_size": "128", "updates": "30",
            "warmup": "5", "profile": "false", "threads": str(os.cpu_count())}
    objective_overrides: dict[str, str] = {}
    agent_overrides: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"update_cost: expected key=value, got {arg!r}")
        if key.startswith("objective."):
            objective_overrides[key.split(".", 1)[1]] = value
        elif key.startswith("agent."):
            agent_overrides[key.split(".", 1)[1]] = value
        elif key in opts:
            opts[key] = value
        else:
            raise SystemExit(f"update_cost: unknown option {key!r}; expected one of {sorted(opts)}, "
                             "objective.<field> or agent.<field>")
    torch.set_num_threads(int(opts["threads"]))
    torch.manual_seed(0)
    contract = task_contract(opts["task"])
    model = WorldModel(load_preset("model", opts["model"], ModelConfig), contract.model_obs_shapes(),
                       contract.action_dim)
    objective_cfg = load_preset("objective", opts["objective"], CONFIGS[opts["objective"]])
    for key, value in objective_overrides.items():
        setattr(objective_cfg, key, type(getattr(objective_cfg, key))(value))
    objective = make_objective(objective_cfg, model)
    batch_size = int(opts["batch_size"])
    agent_cfg = AgentConfig(batch_size=batch_size, bc_coef=10.0, pi_q_coef=1.0)
    for key, value in agent_overrides.items():
        setattr(agent_cfg, key, type(getattr(agent_cfg, key))(value))
    agent = Agent(model, objective, contract, agent_cfg, PlannerConfig(mpc=False), discount=0.95)

    h, n = agent_cfg.horizon, 2 * batch_size
    obs = {name: torch.randn(h + 1, n, *feature.shape) for name, feature in contract.features.items()}
    batch = SliceBatch(obs=obs, actions=torch.rand(h, n, contract.action_dim) * 2 - 1,
                       terminated=torch.zeros(h, n, dtype=torch.bool), rewards=torch.zeros(h, n))
    for _ in range(int(opts["warmup"])):
        agent.update(batch, num_expert=batch_size)
    times = []
    for _ in range(int(opts["updates"])):
        start = time.perf_counter()
        agent.update(batch, num_expert=batch_size)
        times.append(time.perf_counter() - start)
    params_model = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params_objective = sum(p.numel() for p in objective.parameters()) + sum(b.numel() for b in objective.buffers())
    print(f"update_cost task={opts['task']} model={opts['model']} objective={opts['objective']} "
          f"batch=2x{batch_size} params_model={params_model} params_objective={params_objective} "
          f"updates_per_s={len(times) / sum(times):.2f} ms_per_update_p50={1e3 * statistics.median(times):.1f} "
          f"threads={opts['threads']}", flush=True)
    if opts["profile"] == "true":
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                agent.update(batch, num_expert=batch_size)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
