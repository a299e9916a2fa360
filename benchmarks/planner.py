#!/usr/bin/env python
"""Planner latency: one line per model preset, planner preset, device and precision.

    python benchmarks/planner.py                        # tiny, 1m, 5m x mppi, deploy x cdred, iq on CPU (+CUDA)
    python benchmarks/planner.py --presets 5m --planners mppi --bf16 --decisions 500
    python benchmarks/planner.py --objectives cdred,iq,standin

Each decision is what the robot node does per control tick for one environment: encode
a fresh observation, then plan with the warm start kept from the previous decision.
Latencies are measured over --decisions decisions after --warmup decisions.

Sequences are scored with the value the shipped model plans with: each objective's own
(`cdred`: discounted CDRED reward from its random targets and predictors + terminal Q,
sized from the model preset as configs/objective/cdred.yaml says; `iq`: IQ-MPC's soft-Q
value). `standin` is TD-MPC2's estimate with a quadratic latent reward instead: the cost of
the world model and MPPI alone. Each line names it: `objective=<o>`.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sim2real.config import ModelConfig, PlannerConfig, load_preset
from sim2real.imitation import CONFIGS, make_objective
from sim2real.planner import Planner, ValueFn, td_value
from sim2real.stats import percentile
from sim2real.world_model import WorldModel

OBS_DIM, ACTION_DIM = 42, 4


DISCOUNT = 0.95
OBJECTIVES = ("cdred", "iq", "standin")


def value_fn(objective: str, model: WorldModel, device: torch.device) -> ValueFn:
    """The value `objective` plans with, for this model (see the module docstring)."""
    if objective == "standin":
        goal = model.encode({"state": torch.randn(1, OBS_DIM, device=device)}).detach()
        return td_value(lambda z, a: -(z - goal).pow(2).sum(-1, keepdim=True), discount=DISCOUNT)
    if objective not in CONFIGS:
        raise SystemExit(f"planner: unknown objective {objective!r}; expected some of {', '.join(OBJECTIVES)}")
    return make_objective(load_preset("objective", objective, CONFIGS[objective]), model).eval().value_fn(DISCOUNT)


def measure(model_name: str, planner_name: str, objective: str, device: torch.device, bf16: bool,
            decisions: int, warmup: int) -> tuple[PlannerConfig, float, float]:
    model_cfg = load_preset("model", model_name, ModelConfig)
    planner_cfg = load_preset("planner", planner_name, PlannerConfig)
    planner_cfg.bf16 = bf16
    torch.manual_seed(0)
    model = WorldModel(model_cfg, {"state": (OBS_DIM,)}, ACTION_DIM).to(device).eval()
    planner = Planner(model, value_fn(objective, model, device), planner_cfg)
    observations = torch.randn(warmup + decisions, 1, OBS_DIM, device=device)
    times = []
    for i, obs in enumerate(observations):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        action = planner.act({"state": obs})
        action.cpu()  # the node needs the action on the host
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return planner_cfg, percentile(times, 50), percentile(times, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,1m,5m", help="model presets (configs/model/)")
    parser.add_argument("--planners", default="mppi,deploy", help="planner presets (configs/planner/)")
    parser.add_argument("--objectives", default="cdred,iq",
                        help=f"values to plan with: some of {','.join(OBJECTIVES)} (standin: quadratic reward)")
    parser.add_argument("--devices", default="auto", help="'auto' = cpu, plus cuda when present; or a list")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 autocast")
    parser.add_argument("--decisions", type=int, default=200, help="measured decisions (>= 200 for p99)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")
    precisions = [False, True] if args.bf16 else [False]
    for device in devices:
        for preset in args.presets.split(","):
            for planner_name in args.planners.split(","):
                for objective in args.objectives.split(","):
                    for bf16 in precisions:
                        cfg, p50, p99 = measure(preset, planner_name, objective, torch.device(device), bf16,
                                                args.decisions, args.warmup)
                        iterations = cfg.iterations if cfg.mpc else 0
                        samples = cfg.num_samples if cfg.mpc else 1
                        print(f"planner preset={preset} device={device} samples={samples} iterations={iterations} "
                              f"p50_ms={p50:.2f} p99_ms={p99:.2f} planner={planner_name} objective={objective} "
                              f"precision={'bf16' if bf16 else 'fp32'} threads={args.threads}", flush=True)


if __name__ == "__main__":
    main()
