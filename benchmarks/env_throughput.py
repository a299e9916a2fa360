#!/usr/bin/env python
"""Environment throughput: control steps per second for each task, backend and batch size.

    python benchmarks/env_throughput.py                            # 4 tasks x 2 backends, num_envs 1 and 4, CPU
    python benchmarks/env_throughput.py --backends maniskill --num-envs 1024 --steps 200   # on a GPU
    python benchmarks/env_throughput.py --obs-mode rgb --tasks pick_cube

Prints one line per configuration:
`env task=<t> backend=<b> num_envs=<n> device=<d> steps_per_s=<x>` where steps_per_s counts
env steps (num_envs per call) over --steps calls, after --warmup calls, with random
actions; resets happen as episodes end, and their time is included.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch

import tasks

ENGINE_MODULE = {"maniskill": "mani_skill", "mujoco": "mujoco"}


def measure(task: str, backend: str, num_envs: int, obs_mode: str, steps: int, warmup: int) -> tuple[str, float]:
    env = tasks.make_env(task, backend=backend, num_envs=num_envs, obs_mode=obs_mode)
    try:
        generator = torch.Generator().manual_seed(0)
        env.reset(seed=0)
        start = 0.0
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            action = torch.rand(num_envs, env.action_dim, generator=generator) * 2 - 1
            _, _, terminated, truncated, _ = env.step(action.to(env.device))
            done = terminated | truncated
            if done.any():
                env.reset(env_mask=done)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return str(env.device), steps * num_envs / elapsed
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(tasks.TASKS))
    parser.add_argument("--backends", nargs="+", default=list(tasks.BACKENDS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--obs-mode", default="state", choices=["state", "rgb"])
    parser.add_argument("--steps", type=int, default=200, help="timed step() calls per configuration")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    print(f"# torch threads={torch.get_num_threads()} obs_mode={args.obs_mode} cuda={torch.cuda.is_available()}")
    for backend in args.backends:
        if importlib.util.find_spec(ENGINE_MODULE[backend]) is None:
            print(f"# backend {backend} skipped: {ENGINE_MODULE[backend]} is not installed "
                  f"(scripts/install.sh dev,{backend})")
            continue
        for task in args.tasks:
            for n in args.num_envs:
                device, rate = measure(task, backend, n, args.obs_mode, args.steps, args.warmup)
                print(f"env task={task} backend={backend} num_envs={n} device={device} steps_per_s={rate:.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
