"""The stage-1 benchmarks' options: parsed, and refused when wrong (speed and learning are what
the benchmarks themselves print; nothing here times anything)."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def curve():
    return runpy.run_path(str(ROOT / "benchmarks" / "pretrain_curve.py"), run_name="pretrain_curve")


def test_pretrain_curve_options_are_parsed(curve):
    overrides, targets = curve["parse_args"](["task=pick_cube", "budget_env_steps=5000", "budget_minutes=60",
                                              "target_domains=target,hard", "num_envs=4", "utd_ratio=0.25"])
    assert overrides == ["task=pick_cube", "steps=5000", "budget_minutes=60", "num_envs=4", "utd_ratio=0.25"]
    assert targets == ["target", "hard"]
    assert curve["parse_args"]([])[1] == ["target"]
    assert curve["parse_args"](["target_domains=none"])[1] == []


@pytest.mark.parametrize("arg,message", [("budget_env_steps=-3", "positive integer"),
                                         ("budget_env_steps=many", "positive integer"),
                                         ("target_domains=mars", "configs/domain/ presets"),
                                         ("target_domains=", "configs/domain/ presets"),
                                         ("budget_minutes", "key=value")])
def test_pretrain_curve_refuses_bad_options(curve, arg, message):
    with pytest.raises(SystemExit, match=message):
        curve["parse_args"]([arg])


def test_pretrain_curve_keeps_the_listed_overrides_valid(curve):
    # The overrides the stage-1 issue lists must compose into a pretraining config.
    from sim2real.config import compose_config
    from sim2real.pretrain_config import pretrain_config, register_schemas

    register_schemas()
    overrides, _ = curve["parse_args"](
        ["task=open_drawer", "backend=mujoco", "model=1m", "objective=iq", "agent.batch_size=64", "num_envs=4",
         "utd_ratio=0.5", "seed_steps=200", "budget_env_steps=3000", "eval_every=500", "eval_episodes=5",
         "out_dir=/tmp/x", "budget_minutes=1.5", "curriculum.enabled=true"])
    cfg = pretrain_config(compose_config("pretrain", overrides))
    assert (cfg.task.name, cfg.backend, cfg.model.name, cfg.objective.name) == ("open_drawer", "mujoco", "1m", "iq")
    assert (cfg.agent.batch_size, cfg.num_envs, cfg.utd_ratio, cfg.seed_steps, cfg.steps) == (64, 4, 0.5, 200, 3000)
    assert (cfg.eval_every, cfg.eval_episodes, cfg.out_dir, cfg.budget_minutes) == (500, 5, "/tmp/x", 1.5)
    assert cfg.curriculum.enabled


def test_planner_benchmark_plans_with_each_objectives_value():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "planner.py"), "--presets", "tiny",
                          "--planners", "deploy", "--objectives", "cdred,iq,standin", "--decisions", "3",
                          "--warmup", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("planner ")]
    assert [line.split("objective=")[1].split()[0] for line in lines] == ["cdred", "iq", "standin"]
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "planner.py"), "--objectives", "reward"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown objective" in bad.stderr + bad.stdout


def test_update_cost_benchmark_runs_and_refuses_unknown_options():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_cost.py"), "updates=2", "warmup=1",
                          "batch_size=8", "model=tiny"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("update_cost task=pick_cube model=tiny objective=cdred batch=2x8 ")
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_cost.py"), "batch=8"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown option" in bad.stderr


@pytest.fixture(scope="module")
def ablation():
    return runpy.run_path(str(ROOT / "benchmarks" / "stage1_ablation.py"), run_name="stage1_ablation")


def test_stage1_ablation_options_are_parsed(ablation):
    opts, overrides = ablation["parse_args"](["tasks=pick_cube,open_drawer", "seeds=1,2", "budget_minutes=2.5",
                                              "num_envs=4", "agent.pi_q_coef=0.5"])
    assert opts["tasks"] == "pick_cube,open_drawer" and opts["seeds"] == "1,2" and opts["budget_minutes"] == "2.5"
    assert overrides == ["num_envs=4", "agent.pi_q_coef=0.5"]
    assert ablation["parse_args"]([])[0]["variants"] == "online,online_mppi,bc_only,bc_only_mppi,bc"


@pytest.mark.parametrize("arg,message", [("tasks=fold_laundry", "tasks="), ("variants=online,dagger", "variants="),
                                         ("target_domains=moon", "target_domains="), ("seeds=one", "seeds="),
                                         ("budget_minutes=-1", "budget_minutes"), ("budget_env_steps=1e4", "budget_env_steps"), ("task=pick_cube", "per run"),
                                         ("seeds", "key=value")])
def test_stage1_ablation_refuses_bad_options(ablation, arg, message):
    with pytest.raises(SystemExit, match=message):
        ablation["parse_args"]([arg])
