"""The stage-1 loop end to end on MuJoCo, tiny settings: runs, checkpoints, resumes exactly."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

from sim2real.checkpoint import load_checkpoint  # noqa: E402
from sim2real.config import load_preset  # noqa: E402
from sim2real.data import DatasetError  # noqa: E402
from sim2real.imitation import CONFIGS  # noqa: E402
from sim2real.pretrain import pretrain  # noqa: E402
from sim2real.pretrain_config import PretrainConfig  # noqa: E402
from sim2real.config import ModelConfig, PlannerConfig  # noqa: E402
from tasks.collect import CollectConfig, collect_demos  # noqa: E402
from tasks.domain import DomainParams  # noqa: E402
from tasks.spec import TaskConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def small_run(out: Path, demos: Path, steps: int, objective: str = "cdred", resume: bool = False) -> PretrainConfig:
    model = load_preset("model", "tiny", ModelConfig)
    model.latent_dim, model.enc_dim, model.mlp_dim = 32, 32, 32
    planner = load_preset("planner", "policy", PlannerConfig)
    cfg = PretrainConfig(backend="mujoco", steps=steps, seed_steps=100, demos=str(demos), num_demos=2,
                         eval_every=100, eval_episodes=1, checkpoint_every=100, log_every=50, resume=resume,
                         save_buffer=True, seed=3, out_dir=str(out),
                         task=TaskConfig(name="push_cube", episode_length=20), domain=DomainParams(),
                         model=model, planner=planner,
                         objective=load_preset("objective", objective, CONFIGS[objective]))
    cfg.objective.__dict__.update({k: 32 for k in ("rnd_dim", "reward_mlp_dim") if hasattr(cfg.objective, k)})
    cfg.agent.batch_size = 8
    return cfg


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "push.h5"
    collect_demos(CollectConfig(task=TaskConfig(name="push_cube", episode_length=20), backend="mujoco",
                                episodes=2, out=str(path)))
    return path


@pytest.mark.parametrize("objective", ["cdred", "iq"])
def test_pretrain_runs_logs_and_checkpoints(tmp_path, demos, objective):
    run = pretrain(small_run(tmp_path, demos, 200, objective))
    history = run.history
    assert [h.env_steps for h in history] == [100, 200]
    assert history[-1].updates == 100 + 100  # the seed burst, then one update per env step
    assert (tmp_path / "eval.csv").read_text().count("\n") == 3
    assert "reward_corr" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.extra["step"] == 200 and ckpt.extra["stage"] == "pretrain"
    assert any("target" in k for k in ckpt.extra["agent"]["objective"]) or objective == "iq"
    assert run.updates_this_process == 200 and run.env_steps_this_process == 200
    assert run.env_steps_per_s > 0 and run.updates_per_s > 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    videos = sorted((tmp_path / "videos").glob("eval_*.mp4"))
    assert [v.name for v in videos] == ["eval_00000100.mp4", "eval_00000200.mp4"]
    assert videos[0].stat().st_size > 1000


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path, demos):
    straight = pretrain(small_run(tmp_path / "straight", demos, 300)).history
    pretrain(small_run(tmp_path / "split", demos, 200))
    resumed = pretrain(small_run(tmp_path / "split", demos, 300, resume=True)).history
    assert [h.env_steps for h in resumed] == [100, 200, 300]
    assert resumed[-1].updates == straight[-1].updates
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt").model_state
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, demos):
    pretrain(small_run(tmp_path, demos, 100))
    last = tmp_path / "checkpoints" / "last.pt"
    before = last.read_bytes()
    # A writer killed mid-save leaves only its temp file behind; last.pt is untouched.
    code = ("import os, torch, sim2real.checkpoint as c\n"
            "real = torch.save\n"
            "def dying_save(obj, f, *a, **k):\n"
            "    f.write(b'partial'); f.flush(); os._exit(9)\n"
            "torch.save = dying_save\n"
            f"ck = c.load_checkpoint({str(last)!r})\n"
            f"c.save_checkpoint({str(last)!r}, ck)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert run.returncode == 9
    assert last.read_bytes() == before
    assert load_checkpoint(last).extra["step"] == 100


def test_a_demo_file_for_another_contract_is_refused(tmp_path, demos):
    cfg = small_run(tmp_path, demos, 100)
    cfg.task = TaskConfig(name="push_cube", episode_length=20, control_mode="pd_joint_delta_pos")
    with pytest.raises(DatasetError, match="push.h5.*action_dim 4 in dataset, 8"):
        pretrain(cfg)


def test_missing_demos_are_collected_with_the_expert_first(tmp_path):
    cfg = small_run(tmp_path, tmp_path / "new_demos.h5", 100)
    pretrain(cfg)
    assert (tmp_path / "new_demos.h5").exists()


def test_a_pretrained_checkpoint_loads_as_a_planning_policy_with_the_same_reward(tmp_path, demos):
    from sim2real.imitation import make_objective
    from sim2real.inference import load_policy

    pretrain(small_run(tmp_path, demos, 100))
    path = tmp_path / "checkpoints" / "last.pt"
    policy = load_policy(path, load_preset("planner", "deploy", PlannerConfig))
    ckpt = load_checkpoint(path)
    assert policy.discount == pytest.approx(0.95)  # 20-step episodes: clipped at the minimum
    z = torch.randn(5, policy.model.cfg.latent_dim).softmax(-1)
    a = torch.rand(5, 4) * 2 - 1
    fresh = make_objective(policy.objective.cfg, policy.model)  # new random targets...
    assert not torch.allclose(fresh.reward(policy.model, z, a), policy.objective.reward(policy.model, z, a))
    fresh.load_state_dict(ckpt.extra["agent"]["objective"])  # ...until the saved ones are loaded
    assert torch.equal(fresh.reward(policy.model, z, a), policy.objective.reward(policy.model, z, a))
    obs = {k: torch.zeros(2, *f.shape) for k, f in policy.contract.features.items()}
    action = policy.act(obs)
    assert action.shape == (2, 4) and bool((action.abs() <= 1).all())


def test_a_checkpoint_without_an_objective_is_refused_as_a_policy(tmp_path, model, contract):
    from sim2real.checkpoint import make_checkpoint, save_checkpoint
    from sim2real.inference import load_policy

    save_checkpoint(tmp_path / "bare.pt", make_checkpoint(model, contract))
    with pytest.raises(ValueError, match="no objective"):
        load_policy(tmp_path / "bare.pt", load_preset("planner", "deploy", PlannerConfig))


def test_curriculum_episodes_enter_the_buffer_from_their_handover(tmp_path, demos):
    cfg = small_run(tmp_path, demos, 200)
    cfg.curriculum.enabled, cfg.curriculum.fraction, cfg.curriculum.start_step = True, 1.0, 12
    cfg.curriculum.stage_steps = 3
    pretrain(cfg)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    lengths = ckpt.extra["online_buffer"]["lengths"].tolist()
    # Every episode is a curriculum one (fraction 1): the expert drove its first 10-12 steps,
    # so the buffer holds the agent's last 8-10 (of 20), unless the stage has moved back.
    assert lengths and all(length < 20 for length in lengths), lengths
    assert min(lengths) >= 8
    assert ckpt.extra["curriculum"]["stage"] <= 12


def test_budget_minutes_stops_the_run_early_and_still_evaluates_and_saves(tmp_path, demos):
    cfg = small_run(tmp_path, demos, 100_000)
    cfg.budget_minutes = 0.05  # 3 s
    run = pretrain(cfg)
    assert 0 < run.env_steps < 100_000 and run.history[-1].env_steps == run.env_steps
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").extra["step"] == run.env_steps
    cfg.budget_minutes = -1
    with pytest.raises(ValueError, match="budget_minutes"):
        pretrain(cfg)
