"""What must hold on every backend: one contract, experts that solve every task, demo files.

Each backend is tested where its engine is installed (the CI install has both).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tasks
from sim2real.data import read_dataset
from tasks.experts import make_expert

ENGINES = {"maniskill": "mani_skill", "mujoco": "mujoco"}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(importlib.util.find_spec(m) is None,
                                                    reason=f"{m} not installed"))
            for b, m in ENGINES.items()]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ENGINES.values()),
                    reason="needs both engines")
@pytest.mark.parametrize("task", tasks.TASKS)
def test_contract_is_identical_across_backends(task):
    seen = {}
    for backend in ENGINES:
        env = tasks.make_env(task, backend, num_envs=2)
        obs, _ = env.reset(seed=0)
        seen[backend] = (env.contract, {k: tuple(v.shape) for k, v in obs.items()},
                         env.action_low.tolist(), env.action_high.tolist(), env.episode_length,
                         {k: tuple(v.shape) for k, v in env.privileged_obs().items()})
        env.close()
    assert seen["maniskill"] == seen["mujoco"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", tasks.TASKS)
def test_scripted_expert_solves_the_task(task, backend):
    env = tasks.make_env(task, backend, num_envs=3)
    expert = make_expert(task, env.num_envs)
    env.reset(seed=11)
    expert.reset()
    for _ in range(env.episode_length):
        _, _, _, truncated, info = env.step(expert.act(env.privileged_obs()))
    env.close()
    assert truncated.all()
    assert info["success"].all(), f"{task}/{backend}: solved at the end in {info['success'].tolist()}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_collect_demos_writes_a_dataset_that_reads_back(tmp_path, backend):
    out = tmp_path / "demos.h5"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "collect_demos.py"), "task=pick_cube", f"backend={backend}",
         "domain=target", "episodes=2", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(f"demos task=pick_cube backend={backend} domain=target episodes=2 success_rate=")
    meta, episodes = read_dataset(out, expect_contract=tasks.task_contract("pick_cube"))
    assert meta.task == "pick_cube" and meta.backend == backend and meta.domain == "target"
    assert meta.domain_values["action_latency_steps"] == 1 and meta.seed == 0
    assert [e.seed for e in episodes] == [0, 1] and all(e.length == 50 for e in episodes)
    # The recorded first observation is the seeded reset's (up to the target domain's obs noise).
    env = tasks.make_env("pick_cube", backend, domain="target")
    env.reset(seed=1)
    assert torch.allclose(episodes[1].obs["goal_pos"][0], env.privileged_obs()["goal_pos"][0], atol=0.05)
    env.close()
