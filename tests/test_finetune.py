"""Stage 2 end to end on tiny settings: a short real pretraining run on MuJoCo, then offline
finetuning on target-domain demos for a few updates per case."""

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

from sim2real.agent import Agent, AgentConfig  # noqa: E402
from sim2real.buffer import SliceBatch  # noqa: E402
from sim2real.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sim2real.config import ModelConfig, PlannerConfig, load_preset  # noqa: E402
from sim2real.contract import ContractMismatch  # noqa: E402
from sim2real.data import DatasetError, DatasetMetadata, Episode, read_episodes, write_dataset  # noqa: E402
from sim2real.finetune import Finetuner, finetune  # noqa: E402
from sim2real.finetune_config import AUTO_SIM_DEMOS, FinetuneConfig  # noqa: E402
from sim2real.finetune_demos import file_sha256, split_holdout  # noqa: E402
from sim2real.selection import Selection, heldout_action_mse  # noqa: E402
from sim2real.imitation import CONFIGS, make_objective  # noqa: E402
from sim2real.inference import load_policy  # noqa: E402
from sim2real.pretrain import pretrain, state_statistics  # noqa: E402
from sim2real.pretrain_config import PretrainConfig  # noqa: E402
from sim2real.world_model import STATE_STD_FLOOR  # noqa: E402
from tasks.collect import CollectConfig, collect_demos  # noqa: E402
from tasks.domain import DomainParams  # noqa: E402
from tasks.spec import TaskConfig, task_contract  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK = TaskConfig(name="push_cube", episode_length=20)
# Parameter-name prefixes of each freezable module (model state, then objective state).
MODULES = {"encoder": ("_encoder.",), "dynamics": ("_dynamics.",), "q": ("_Qs.", "_target_Qs."), "pi": ("_pi.",),
           "reward": ("predictors.",)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    spinning OpenMP threads made an update 100x slower (1 s instead of 10 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model() -> ModelConfig:
    model = load_preset("model", "tiny", ModelConfig)
    model.latent_dim, model.enc_dim, model.mlp_dim = 32, 32, 32
    return model


def tiny_objective(name: str = "cdred"):
    objective = load_preset("objective", name, CONFIGS[name])
    objective.__dict__.update({k: 32 for k in ("rnd_dim", "reward_mlp_dim") if hasattr(objective, k)})
    return objective


def collect(path: Path, domain: str, episodes: int) -> Path:
    collect_demos(CollectConfig(task=TASK, backend="mujoco", episodes=episodes, out=str(path),
                                domain=load_preset("domain", domain, DomainParams)))
    return path


@pytest.fixture(scope="module")
def target_demos(tmp_path_factory) -> Path:
    return collect(tmp_path_factory.mktemp("target") / "push_target.h5", "target", 3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A 40-step CDRED pretraining run that keeps its online buffer."""
    out = tmp_path_factory.mktemp("pretrain")
    demos = collect(out / "push_source.h5", "source", 2)
    cfg = PretrainConfig(backend="mujoco", steps=40, seed_steps=20, demos=str(demos), num_demos=2, eval_every=1000,
                         eval_episodes=1, checkpoint_every=1000, log_every=1000, eval_video=False, save_buffer=True,
                         seed=3, out_dir=str(out), task=TASK, domain=DomainParams(), model=tiny_model(),
                         planner=load_preset("planner", "policy", PlannerConfig), objective=tiny_objective())
    cfg.agent.batch_size = 8
    pretrain(cfg)
    return out / "checkpoints" / "last.pt"


def small(out: Path, checkpoint: Path | None, demos: Path, **kw) -> FinetuneConfig:
    cfg = FinetuneConfig(checkpoint=str(checkpoint) if checkpoint else None, demos=str(demos), steps=3, log_every=1,
                         device="cpu", seed=5, out_dir=str(out),
                         planner=load_preset("planner", "policy", PlannerConfig))
    cfg.agent.batch_size = 8
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


def states(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {**ckpt.model_state, **ckpt.extra["agent"]["objective"]}


def module_of(key: str) -> str | None:
    """The freezable module a weight belongs to (normalisation statistics belong to none)."""
    if key.startswith("_encoder.state_"):
        return None
    return next((name for name, prefixes in MODULES.items() if key.startswith(prefixes)), None)


@pytest.mark.parametrize("behaviour", ["rollouts", "demos", "sim_buffer"])
def test_each_behaviour_source_finetunes_and_writes_a_deployable_checkpoint(tmp_path, pretrained, target_demos,
                                                                           behaviour):
    run = finetune(small(tmp_path, pretrained, target_demos, behaviour=behaviour))
    assert run.updates == 3 and run.checkpoint == str(tmp_path / "checkpoints" / "last.pt")
    ckpt = load_checkpoint(run.checkpoint)
    extra = ckpt.extra
    assert extra["stage"] == "finetune" and extra["updates"] == 3 and extra["behaviour"] == behaviour
    assert extra["pretrained"]["path"] == str(pretrained.resolve())
    assert extra["pretrained"]["sha256"] == file_sha256(pretrained) and extra["pretrained"]["stage"] == "pretrain"
    assert extra["demos"]["paths"] == [str(target_demos.resolve())]
    assert extra["demos"]["episodes"] == 3 and extra["demos"]["format"] == "sim2real"
    assert extra["demos"]["files"][0]["domain"] == "target"
    assert extra["finetune_config"]["behaviour"] == behaviour and extra["finetune_config"]["agent"]["batch_size"] == 8
    assert extra["task"] == "push_cube" and extra["episode_length"] == 20
    # The CDRED random targets are the pretrained ones, bit for bit.
    before, after = states(pretrained), states(Path(run.checkpoint))
    targets = [k for k in before if k.startswith("target_")]
    assert targets and all(torch.equal(before[k], after[k]) for k in targets)
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 4
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))

    policy = load_policy(run.checkpoint, load_preset("planner", "deploy", PlannerConfig), expect_contract=ckpt.contract)
    assert policy.discount == pytest.approx(0.95)
    obs = {k: torch.zeros(2, *f.shape) for k, f in policy.contract.features.items()}
    action = policy.act(obs)
    assert action.shape == (2, 4) and bool((action.abs() <= 1).all())


@pytest.mark.parametrize("frozen", [["encoder", "dynamics", "reward"], ["q", "pi"]])
def test_frozen_modules_stay_bit_identical_and_the_others_change(tmp_path, pretrained, target_demos, frozen):
    run = finetune(small(tmp_path, pretrained, target_demos, freeze=frozen))
    before, after = states(pretrained), states(Path(run.checkpoint))
    changed = {name: False for name in MODULES}
    for key, value in before.items():
        name = module_of(key)
        if name in frozen:
            assert torch.equal(value, after[key]), f"{key} of frozen {name} changed"
        elif name is not None and value.is_floating_point() and not torch.equal(value, after[key]):
            changed[name] = True
    assert all(changed[name] for name in MODULES if name not in frozen), changed
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("target_"))


def test_near_constant_state_dims_get_a_std_floor_and_nothing_else_moves(tmp_path, pretrained, target_demos):
    before = load_checkpoint(pretrained).model_state["_encoder.state_std"]
    # pretraining floors it already: the goal's height never varies in the sim demos
    assert float(before.min()) == pytest.approx(STATE_STD_FLOOR)
    run = finetune(small(tmp_path / "floor", pretrained, target_demos, steps=0, state_std_floor=0.05))
    ckpt = load_checkpoint(run.checkpoint)
    after = ckpt.model_state["_encoder.state_std"]
    low = before < 0.05
    assert low.any() and not low.all()
    assert ckpt.extra["state_std_floored"] == low.nonzero().flatten().tolist()
    assert torch.all(after[low] == 0.05) and torch.equal(after[~low], before[~low])
    run = finetune(small(tmp_path / "none", pretrained, target_demos, steps=0, state_std_floor=0.0))
    assert torch.equal(load_checkpoint(run.checkpoint).model_state["_encoder.state_std"], before)


def test_demos_whose_contract_differs_from_the_checkpoint_are_refused_naming_the_file(tmp_path, pretrained):
    contract = task_contract("push_cube", control_mode="pd_joint_delta_pos")
    episode = Episode(obs={k: torch.zeros(6, *f.shape) for k, f in contract.features.items()},
                      actions=torch.zeros(5, contract.action_dim), success=torch.zeros(6, dtype=torch.bool))
    bad = write_dataset(tmp_path / "joint_demos.h5", [episode], DatasetMetadata("push_cube", "real", contract))
    with pytest.raises(DatasetError, match="joint_demos.h5.*action_dim 8 in dataset, 4 in checkpoint"):
        finetune(small(tmp_path, pretrained, bad))
    # Same contract, another task: refused too.
    other = tmp_path / "pick.h5"
    collect_demos(CollectConfig(task=replace(TASK, name="pick_cube"), backend="mujoco", episodes=1, out=str(other)))
    with pytest.raises(DatasetError, match="pick.h5: demos of task 'pick_cube', the model is for task 'push_cube'"):
        finetune(small(tmp_path, pretrained, other))


def test_a_task_other_than_the_checkpoints_is_refused(tmp_path, pretrained, target_demos):
    cfg = small(tmp_path, pretrained, target_demos, task=TaskConfig(name="push_cube", obs_mode="rgb"))
    with pytest.raises(ContractMismatch, match="last.pt: contract mismatch"):
        finetune(cfg)


def test_sim_buffer_behaviour_needs_a_checkpoint_that_kept_its_buffer(tmp_path, pretrained, target_demos):
    ckpt = load_checkpoint(pretrained)
    del ckpt.extra["online_buffer"]
    bare = save_checkpoint(tmp_path / "no_buffer.pt", ckpt)
    with pytest.raises(ValueError, match="no_buffer.pt holds no online buffer.*save_buffer=true"):
        finetune(small(tmp_path, bare, target_demos, behaviour="sim_buffer"))


@pytest.mark.parametrize("objective", ["cdred", "iq"])
def test_scratch_trains_the_same_world_model_on_the_demos_alone(tmp_path, target_demos, objective):
    cfg = small(tmp_path, None, target_demos, scratch=True, task=TASK, model=tiny_model(),
                objective=tiny_objective(objective))
    run = finetune(cfg)
    ckpt = load_checkpoint(run.checkpoint)
    assert ckpt.extra["pretrained"] is None and ckpt.extra["stage"] == "finetune"
    assert ckpt.model_config.latent_dim == 32 and ckpt.extra["objective_config"]["name"] == objective
    _, episodes = read_episodes(target_demos)
    trained, held_out = split_holdout(episodes, cfg.holdout, cfg.seed)
    assert len(held_out) == 1 and ckpt.extra["selection"]["held_out_episodes"] == 1
    mean, std = state_statistics(trained, ckpt.contract)  # the held-out episodes stay unseen
    assert torch.allclose(ckpt.model_state["_encoder.state_mean"], mean)
    assert torch.allclose(ckpt.model_state["_encoder.state_std"], std.clamp(min=cfg.state_std_floor))
    assert objective == "iq" or any(k.startswith("target_") for k in ckpt.extra["agent"]["objective"])
    load_policy(run.checkpoint, load_preset("planner", "policy", PlannerConfig))


def test_the_starting_point_must_be_a_checkpoint_or_a_complete_scratch_setup(tmp_path, pretrained, target_demos):
    with pytest.raises(ValueError, match="scratch=true needs the groups"):
        finetune(small(tmp_path, None, target_demos, scratch=True))
    with pytest.raises(ValueError, match="checkpoint=...: required"):
        finetune(small(tmp_path, None, target_demos))
    with pytest.raises(ValueError, match="model=... is for scratch=true only"):
        finetune(small(tmp_path, pretrained, target_demos, model=tiny_model()))
    with pytest.raises(ValueError, match="behaviour='online': expected one of"):
        finetune(small(tmp_path, pretrained, target_demos, behaviour="online"))


@pytest.mark.parametrize("behaviour", ["rollouts", "demos"])
def test_finetune_updates_lower_the_loss_on_a_fixed_batch(pretrained, target_demos, tmp_path, behaviour):
    cfg = small(tmp_path, pretrained, target_demos, behaviour=behaviour)
    cfg.agent.lr = 3e-4
    tuner = Finetuner(cfg, say=lambda _: None)
    batch = tuner.sample()
    losses = [tuner.update(batch)["total_loss"] for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_agent_rejects_unknown_frozen_modules_and_steps_with_everything_frozen(model, contract):
    objective = make_objective(tiny_objective(), model)
    planner = load_preset("planner", "policy", PlannerConfig)
    with pytest.raises(ValueError, match="freeze: unknown module.*'decoder'"):
        Agent(model, objective, contract, AgentConfig(), planner, 0.95, frozen=["decoder"])
    agent = Agent(model, objective, contract, AgentConfig(), planner, 0.95,
                  frozen=["encoder", "dynamics", "q", "pi", "reward"])
    assert agent.optim is None and agent.pi_optim is None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obs = {k: torch.randn(4, 6, *f.shape) for k, f in contract.features.items()}
    slices = SliceBatch(obs=obs, actions=torch.rand(3, 6, 4) * 2 - 1, terminated=torch.zeros(3, 6, dtype=torch.bool),
                        rewards=torch.zeros(3, 6))
    imagined = agent.imagine({k: v[0, :3] for k, v in obs.items()}, 3)
    metrics = agent.update(slices, num_expert=3)
    assert set(metrics) >= {"consistency_loss", "total_loss"}
    metrics = agent.update(SliceBatch(obs={k: v[:, :3] for k, v in obs.items()}, actions=slices.actions[:, :3],
                                      terminated=slices.terminated[:, :3], rewards=slices.rewards[:, :3]),
                           num_expert=3, imagined=imagined)
    assert imagined.zs.shape == (4, 3, model.cfg.latent_dim) and "reward_online" in metrics
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_script_evaluates_in_the_target_domain_and_prints_each_evaluation(tmp_path, pretrained, target_demos):
    cmd = [sys.executable, str(ROOT / "scripts" / "finetune.py"), f"checkpoint={pretrained}", f"demos=[{target_demos}]",
           "steps=2", "eval_backend=mujoco", "eval_domain=target", "eval_episodes=1", "eval_every=2", "device=cpu",
           "agent.batch_size=8", "freeze=[encoder]", f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = re.findall(r"^finetune task=push_cube steps=(\d+) wall_s=[\d.]+ success=[\d.]+$", done.stdout, re.M)
    assert lines == ["0", "2"], done.stdout
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt.extra["frozen"] == ["encoder"] and [h["step"] for h in ckpt.extra["history"]] == [0, 2]
    assert (tmp_path / "eval.csv").read_text().count("\n") == 3


@pytest.mark.parametrize("n,fraction,held", [(1, 0.2, 0), (2, 0.2, 1), (5, 0.2, 1), (10, 0.2, 2), (10, 0.5, 5),
                                             (10, 0.0, 0), (3, 0.9, 2)])
def test_the_held_out_split_never_shares_an_episode_with_the_training_split(target_demos, n, fraction, held):
    _, episodes = read_episodes(target_demos)
    episodes = [replace(episodes[i % len(episodes)]) for i in range(n)]  # n distinct episodes
    for seed in range(5):
        trained, held_out = split_holdout(episodes, fraction, seed)
        assert len(held_out) == held and len(trained) + len(held_out) == n
        assert not {id(e) for e in trained} & {id(e) for e in held_out}
    again = [[id(e) for e in part] for part in split_holdout(episodes, fraction, 1)]
    assert again == [[id(e) for e in part] for part in split_holdout(episodes, fraction, 1)]
    with pytest.raises(ValueError, match="holdout=1.0"):
        split_holdout(episodes, 1.0, 0)


def test_selection_restores_the_best_held_out_weights(pretrained, target_demos):
    ckpt = load_checkpoint(pretrained)
    model = ckpt.build_model("cpu")
    objective = make_objective(tiny_objective(), model)
    _, episodes = read_episodes(target_demos)
    selection = Selection(episodes, patience=2)
    first = selection.check(0, model, objective, ckpt.contract, torch.device("cpu"))
    assert first == pytest.approx(heldout_action_mse(model, ckpt.contract, episodes, torch.device("cpu")))
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # a prior that always pushes its action to one corner scores worse
        model._pi[-1].bias.add_(50.0)
    assert selection.check(10, model, objective, ckpt.contract, torch.device("cpu")) > first
    assert not selection.exhausted
    selection.check(20, model, objective, ckpt.contract, torch.device("cpu"))
    assert selection.exhausted and selection.best_step == 0
    selection.restore(model, objective)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    assert selection.summary()["scores"][0] == [0, first]


def test_finetuning_keeps_the_pretrained_weights_when_updates_only_hurt(tmp_path, pretrained, target_demos):
    """A learning rate that wrecks the prior: the run stops after `patience` worse checks and
    its checkpoint is the pretrained model."""
    cfg = small(tmp_path, pretrained, target_demos, steps=40, select_every=5, patience=2)
    cfg.agent.lr = 5.0
    run = finetune(cfg)
    ckpt = load_checkpoint(run.checkpoint)
    selection = ckpt.extra["selection"]
    assert selection["best_step"] == 0 and run.updates == 10
    assert [s[0] for s in selection["scores"]] == [0, 5, 10]
    before = load_checkpoint(pretrained).model_state
    assert all(torch.equal(before[k], v) for k, v in ckpt.model_state.items() if not k.startswith("_encoder.state_"))
    rows = (tmp_path / "select.csv").read_text().splitlines()
    assert rows[0] == "step,wall_s,heldout_action_mse" and len(rows) == 4


def test_sim_demos_fill_their_share_of_every_expert_half_from_the_pretrainings_demos(tmp_path, pretrained,
                                                                                     target_demos):
    cfg = small(tmp_path, pretrained, target_demos, sim_demos=0.5, holdout=0)
    tuner = Finetuner(cfg, say=lambda _: None)
    recorded = load_checkpoint(pretrained).extra["demos"]
    assert tuner.demo_info["sim_demos"] == {"path": recorded["path"], "episodes": 2, "share": 0.5}
    _, sim = read_episodes(recorded["path"])
    _, target = read_episodes(target_demos)

    key = next(iter(sim[0].obs))  # the state feature's name

    def source_of(slice_start: torch.Tensor) -> set[str]:
        hits = set()
        for name, episodes in (("sim", sim), ("target", target)):
            for e in episodes:
                if (torch.as_tensor(e.obs[key], dtype=slice_start.dtype) == slice_start).all(-1).any():
                    hits.add(name)
        return hits

    slices, _ = tuner.sample()
    firsts = slices.obs[key][0]  # (B, state_dim): the first step of each expert slice
    found = [source_of(row) for row in firsts]
    assert found[:4] == [{"target"}] * 4 and found[4:] == [{"sim"}] * 4
    finetune(cfg)  # and it trains end to end
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").extra["demos"]["sim_demos"]["share"] == 0.5


def test_sim_demos_need_a_checkpoint_that_records_its_demos(tmp_path, pretrained, target_demos):
    ckpt = load_checkpoint(pretrained)
    del ckpt.extra["demos"]
    bare = save_checkpoint(tmp_path / "no_demos.pt", ckpt)
    with pytest.raises(ValueError, match="sim_demos=0.5: .*no_demos.pt records no sim demos"):
        finetune(small(tmp_path, bare, target_demos, sim_demos=0.5))
    with pytest.raises(ValueError, match="sim_demos=1.0: expected a fraction"):
        finetune(small(tmp_path, pretrained, target_demos, sim_demos=1.0))


def test_sim_demos_by_default_when_the_pretrainings_are_at_hand(tmp_path, pretrained, target_demos):
    said: list[str] = []
    tuner = Finetuner(small(tmp_path, pretrained, target_demos, holdout=0), say=said.append)
    assert tuner.sim_share == AUTO_SIM_DEMOS and tuner.demo_info["sim_demos"]["share"] == AUTO_SIM_DEMOS
    # Without them (a checkpoint that records none, a scratch run), the target demos alone, said so.
    ckpt = load_checkpoint(pretrained)
    del ckpt.extra["demos"]
    bare = save_checkpoint(tmp_path / "no_demos.pt", ckpt)
    tuner = Finetuner(small(tmp_path, bare, target_demos, holdout=0), say=said.append)
    assert tuner.sim_share == 0.0 and tuner.sim_expert is None and "sim_demos" not in tuner.demo_info
    assert any("sim_demos: target demos only (" in line and "no_demos.pt records no sim demos" in line for line in said)
    assert Finetuner(small(tmp_path, pretrained, target_demos, holdout=0, sim_demos=0.0),
                     say=said.append).sim_expert is None  # 0 given: target demos only


def test_interpolate_blends_the_finetuned_weights_with_the_pretrained_ones(tmp_path, pretrained, target_demos):
    """interpolate=w keeps w x finetuned + (1 - w) x pretrained for every weight; 0 is the
    pretrained model, 1 the finetuned one (the default is 0.5)."""
    before = load_checkpoint(pretrained).model_state
    runs = {}
    for w in (1.0, 0.5, 0.0):
        cfg = small(tmp_path / str(w), pretrained, target_demos, steps=6, holdout=0, interpolate=w)
        cfg.agent.lr = 1e-2
        runs[w] = load_checkpoint(finetune(cfg).checkpoint).model_state
    moved = [k for k, v in runs[1.0].items() if v.is_floating_point() and not k.startswith("_encoder.state_")
             and not torch.allclose(v, before[k])]
    assert moved
    for k in moved:
        assert torch.allclose(runs[0.0][k], before[k])
        assert torch.allclose(runs[0.5][k], (runs[1.0][k] + before[k]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="interpolate=1.5"):
        Finetuner(small(tmp_path, pretrained, target_demos, interpolate=1.5), say=lambda _: None)
