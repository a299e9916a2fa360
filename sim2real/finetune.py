"""Stage 2: offline finetuning of a pretrained world model on a few target-domain demos.

No interaction with the target domain: every update takes `agent.batch_size` slices of the
target demos as its expert half and as many behaviour slices from one of three sources
(method.md §2.9 leaves the choice open; `behaviour=`):

- `rollouts` (default): latent rollouts of the current policy prior, H steps of the
  dynamics from encoded demo states. The offline stand-in for the online buffer: the
  behaviour half is still the current policy's, so CDRED's coupling keeps its meaning.
- `demos`: a second sample of the target demos (CDRED's reward collapses to expert-only RED).
- `sim_buffer`: the simulator's online buffer saved in the checkpoint (pretraining with
  `save_buffer=true`): "look like the target demos, unlike what the agent did in sim".

The losses are pretraining's (`Agent.update`): consistency, the objective's critic loss, the
prior's loss and the optional BC term, with `freeze` modules held fixed. CDRED's random
targets are buffers and never change. The observation normalisation is kept from pretraining
except for a floor on its std (`state_std_floor`, by default pretraining's own
`STATE_STD_FLOOR`): checkpoints written before pretraining floored it carry std 1e-6 for
features constant in sim, and a floor above the default can be tried per target.
`scratch=true` trains the same model and objective from a fresh initialisation on the demos
alone (the transfer benchmark's world-model-from-scratch baseline).

Finetuning must never make the model worse, and a real user has no target simulator to
notice when it does. So a fraction of the demo episodes (`holdout`) is held out, never
trained on, and every `select_every` updates, starting before the first, the model is scored
on them by what the deployed prior would do there: the squared error between its action and
the demonstrator's (`heldout_action_mse`). The run keeps the best-scoring weights (the
pretrained ones when no update beats them) and stops after `patience` checks without a gain.

A run writes `metrics.csv`, `eval.csv`, `select.csv` (the held-out checks), TensorBoard events (`tb/`) and `checkpoints/last.pt`
(atomic) under `out_dir`, checked for writes and free space before the first update
(`sim2real.preflight`); the checkpoint loads like a pretrained one
(`sim2real.inference.load_policy`) and records where it came from in `extra`.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from hydra.core.config_store import ConfigStore

from sim2real.agent import Agent, AgentConfig, ImaginedBatch
from sim2real.buffer import EpisodeBuffer, SliceBatch, cat_batches, expert_buffer
from sim2real.checkpoint import Checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from sim2real.config import ModelConfig, PlannerConfig
from sim2real.contract import Contract
from sim2real.data import DatasetConfig, DatasetError, Episode, detect_format, read_episodes
from sim2real.device import resolve_device
from sim2real.evaluate import evaluate_training_agent, log_eval
from sim2real.imitation import CONFIGS, make_objective
from sim2real.inference import load_objective
from sim2real.planner import discount_from_episode_length
from sim2real.preflight import LOG_MARGIN_BYTES, check_output_dir, checkpoint_bytes, fmt_bytes
from sim2real.pretrain import CsvLog, state_statistics
from sim2real.world_model import STATE_STD_FLOOR, WorldModel

BEHAVIOURS = ("rollouts", "demos", "sim_buffer")
# The default share of sim demos in every expert half when the pretraining's are at hand. Half:
# paired over 9 seeds of the transfer benchmark (push, drawer, stack; 20 target demos from half
# the spawn region, `target` domain) it scored 7.6 points above target demos only, with t = 2.5.
AUTO_SIM_DEMOS = 0.5


def finetune_agent_defaults() -> AgentConfig:
    """Pretraining's CPU recipe (BC-shaped prior, no max-Q term, 2 x 128 slices) at a third of its
    learning rate: a few demos and a pretrained starting point call for small steps."""
    return AgentConfig(batch_size=128, lr=1e-4, bc_coef=10.0, pi_q_coef=0.0)


@dataclass
class FinetuneConfig:
    """`scripts/finetune.py` (configs/finetune.yaml).

    Args:
        checkpoint: the pretrained checkpoint; null with `scratch=true`.
        scratch: train a fresh model (`model`, `objective`, `task` groups) on the demos only.
        demos: a demo source or a list of them (any format `read_episodes` reads; `dataset`
            says how: `dataset=lerobot_panda`, `dataset.rosbag.camera_topic=...`).
        num_demos: use the first this many episodes over all sources; 0: all.
        dataset: the dataset/ group (format "auto" by default).
        behaviour: where the behaviour half of every batch comes from (BEHAVIOURS).
        freeze: modules that stay fixed (sim2real.agent.FREEZABLE: encoder, dynamics, q, pi, reward).
        steps: gradient updates.
        seed / device: torch/numpy/random seed; "auto", "cpu" or "cuda".
        log_every: metrics.csv / TensorBoard period (updates).
        eval_backend: simulate the target domain here ("mujoco", "maniskill"); "": no evaluation.
        eval_domain: a domain preset name ("target") or a mapping of DomainParams fields.
        eval_episodes / eval_every: episodes per evaluation and its period (updates). A
            finetuning run also evaluates before its first update (zero-shot transfer).
        eval_video: MP4 of the first episode of every evaluation (videos/).
        holdout: fraction of the demo episodes held out to choose the weights kept (at least
            one when there are two or more episodes; 0 or a single episode: no selection, the
            last weights are kept).
        select_every: updates between held-out checks (the first is before any update).
        patience: stop after this many checks in a row without a better held-out score (0: never).
        sim_demos: share of every expert half drawn from the sim demos the pretrained
            checkpoint records (`extra["demos"]`), the rest from the target demos: an anchor
            against forgetting what pretraining learnt where the few target demos do not reach.
            None (the default): AUTO_SIM_DEMOS when the checkpoint records its sim demos and the
            file is there, else target demos only (said in the log). A number is taken as given:
            0 is target demos only, and a share the checkpoint cannot serve is an error.
        state_std_floor: raise the encoder's normalisation std to at least this (state units)
            before finetuning; 0 keeps it. Features nearly constant in the sim demos (the
            goal's height: std 1e-6) turn any target sensor noise into inputs of 10^3-10^4
            standard deviations; see `floor_state_std`.
        out_dir: where everything is written ("" = the current directory).
        task: the task/ group: required with scratch=true; otherwise optional (read from the
            checkpoint) and checked against its contract.
        model / objective: the model/ and objective/ groups, for scratch=true only (a
            finetuned model keeps the checkpoint's architecture and objective).
        planner: how the agent acts in evaluations (default `policy`, the prior).
        agent: optimisation settings (defaults: `finetune_agent_defaults`).
    """

    checkpoint: Optional[str] = None
    scratch: bool = False
    demos: Any = None
    num_demos: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    behaviour: str = "rollouts"
    freeze: list[str] = field(default_factory=list)
    steps: int = 500
    seed: int = 1
    device: str = "auto"
    log_every: int = 50
    eval_backend: str = ""
    eval_domain: Any = "target"
    eval_episodes: int = 10
    eval_every: int = 250
    eval_video: bool = False
    holdout: float = 0.2
    select_every: int = 50
    patience: int = 4
    sim_demos: Optional[float] = None
    state_std_floor: float = STATE_STD_FLOOR
    out_dir: str = ""
    task: Any = None
    model: Any = None
    objective: Any = None
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    agent: AgentConfig = field(default_factory=finetune_agent_defaults)


ConfigStore.instance().store(name="finetune_schema", node=FinetuneConfig)


def register_schemas() -> None:
    """Register every structured schema `configs/finetune.yaml` composes (finetune_schema and
    dataset/ are registered by importing this module; task/, domain/, objective/ here)."""
    from sim2real.pretrain import register_schemas as register_pretrain_schemas

    register_pretrain_schemas()


def finetune_config(cfg: Any) -> FinetuneConfig:
    """A composed `finetune` DictConfig -> FinetuneConfig with typed groups and demo paths."""
    from omegaconf import OmegaConf

    from sim2real.config import to_dataclass
    from tasks.spec import TaskConfig

    plain = OmegaConf.to_container(cfg, resolve=True)
    groups = {k: plain.pop(k) for k in ("task", "model", "objective", "eval_domain", "demos")}
    run = to_dataclass(OmegaConf.create(plain), FinetuneConfig)
    run.task = to_dataclass(groups["task"], TaskConfig) if groups["task"] is not None else None
    run.model = to_dataclass(groups["model"], ModelConfig) if groups["model"] is not None else None
    if groups["objective"] is not None:
        run.objective = to_dataclass(groups["objective"], CONFIGS[groups["objective"]["name"]])
    run.eval_domain = resolve_domain(groups["eval_domain"])
    demos = groups["demos"]
    run.demos = [str(d) for d in demos] if isinstance(demos, (list, tuple)) else demos
    return run


@dataclass
class FinetuneEval:
    task: str
    step: int
    wall_s: float
    success_once: float
    success_at_end: float
    env_return: float


@dataclass
class FinetuneRun:
    """What `finetune` returns: evaluations, where the time went, and the checkpoint written."""

    history: list[FinetuneEval]
    updates: int
    update_s: float
    eval_s: float
    checkpoint: str
    out_dir: str

    @property
    def updates_per_s(self) -> float:
        return self.updates / max(self.update_s, 1e-9)


def eval_line(r: FinetuneEval) -> str:
    """The line printed at every evaluation."""
    return f"finetune task={r.task} steps={r.step} wall_s={r.wall_s:.1f} success={r.success_at_end:.2f}"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_domain(spec: Any) -> Any:
    """A domain preset name, DomainParams, or a mapping of its fields (over the nominal
    world's, named "custom" unless it says) -> DomainParams."""
    from omegaconf import OmegaConf

    from sim2real.config import CONFIG_DIR, preset_names, to_dataclass
    from tasks.domain import DomainParams

    if isinstance(spec, DomainParams):
        return spec
    if isinstance(spec, str):
        # Read the YAML directly: Hydra's compose API is not usable inside a running Hydra app.
        path = CONFIG_DIR / "domain" / f"{spec}.yaml"
        if not path.is_file():
            names = ", ".join(preset_names("domain"))
            raise ValueError(f"eval_domain={spec!r}: not a preset of configs/domain/ ({names})")
        preset = OmegaConf.load(path)
        preset.pop("defaults", None)
        return to_dataclass(preset, DomainParams)
    if isinstance(spec, Mapping):
        return to_dataclass({"name": "custom", **spec}, DomainParams)
    raise ValueError(f"eval_domain={spec!r}: expected a domain preset name or a mapping of DomainParams fields")


def load_demos(sources: Any, contract: Contract, dataset: DatasetConfig, num_demos: int, horizon: int,
               say: Callable[[str], None], task: str | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """Every episode of the demo sources (checked against `contract`), and their provenance.

    Tasks can share a contract (push_cube and pick_cube do), so a source that records a
    known task must also record `task` when one is given. Episodes shorter than the
    horizon hold no training slice and are skipped with a note.
    """
    from tasks.spec import TASKS

    paths = [sources] if isinstance(sources, (str, Path)) else list(sources or [])
    if not paths:
        raise ValueError("demos=...: required (a demo file or directory, or a list of them)")
    episodes: list[Episode] = []
    files = []
    for path in paths:
        fmt = dataset.format if dataset.format != "auto" else detect_format(path)
        metadata, found = read_episodes(path, fmt, dataset, contract=contract)
        if task in TASKS and metadata.task in TASKS and metadata.task != task:
            raise DatasetError(f"{path}: demos of task {metadata.task!r}, the model is for task {task!r}")
        files.append({"path": str(Path(path).resolve()), "format": fmt, "episodes": len(found),
                      "task": metadata.task, "domain": metadata.domain, "backend": metadata.backend})
        episodes += found
    if num_demos > 0:
        episodes = episodes[:num_demos]
    usable = [e for e in episodes if e.length >= horizon]
    if len(usable) < len(episodes):
        say(f"skipping {len(episodes) - len(usable)} demo episodes shorter than the horizon H={horizon}")
    if not usable:
        raise ValueError(f"demos {paths}: no episode has the {horizon} steps a training slice needs")
    formats = sorted({f["format"] for f in files})
    info = {"paths": [f["path"] for f in files], "format": formats[0] if len(formats) == 1 else formats,
            "episodes": len(usable), "transitions": sum(e.length for e in usable), "files": files}
    return usable, info


def floor_state_std(model: WorldModel, floor: float) -> list[int]:
    """Raise the encoder's state std to `floor` where it is lower; returns the raised dims.

    A dim that barely varied in the data the statistics came from keeps (almost) the
    normalised value it had there, while new noise on it stays within a few units, so the
    pretrained encoder sees inputs of the range it was trained on.
    """
    encoder = model._encoder
    if encoder.state is None or floor <= 0:
        return []
    raised = (encoder.state_std < floor).nonzero().flatten().tolist()
    model.set_state_normalization(encoder.state_mean.clone(), encoder.state_std.clamp(min=floor))
    return raised


def split_holdout(episodes: list[Episode], fraction: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """(training episodes, held-out episodes): round(fraction * n) episodes, at least one when
    fraction > 0 and n >= 2, drawn with `seed`; the two never share an episode."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout={fraction}: expected a fraction in [0, 1)")
    n = len(episodes)
    k = min(max(round(fraction * n), 1), n - 1) if fraction > 0 and n >= 2 else 0
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    return [e for i, e in enumerate(episodes) if i not in held], [e for i, e in enumerate(episodes) if i in held]


@torch.no_grad()
def heldout_action_mse(model: WorldModel, contract: Contract, episodes: list[Episode],
                       device: torch.device) -> float:
    """Mean squared error between the prior's deterministic action and the demonstrator's over
    every step of `episodes`: what the deployed prior (planner=policy) would do there."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for e in episodes:
        inputs = contract.model_inputs({k: v[:-1].to(device) for k, v in e.obs.items()})
        action, _ = model.pi(model.encode(inputs), deterministic=True)
        total += float((action - e.actions.to(device).float()).pow(2).sum())
        count += e.actions.numel()
    model.train(was_training)
    return total / max(count, 1)


class Selection:
    """Keeps the best held-out weights seen so far (model and objective) and says when to stop."""

    def __init__(self, held_out: list[Episode], patience: int) -> None:
        self.held_out, self.patience = held_out, patience
        self.best_score, self.best_step, self.stale = math.inf, -1, 0
        self.scores: list[tuple[int, float]] = []
        self._best: dict[str, Any] | None = None

    def check(self, step: int, model: WorldModel, objective: Any, contract: Contract, device: torch.device) -> float:
        score = heldout_action_mse(model, contract, self.held_out, device)
        self.scores.append((step, score))
        if score < self.best_score:
            self.best_score, self.best_step, self.stale = score, step, 0
            self._best = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                          "objective": {k: v.detach().clone() for k, v in objective.state_dict().items()}}
        else:
            self.stale += 1
        return score

    @property
    def exhausted(self) -> bool:
        return self.patience > 0 and self.stale >= self.patience

    def restore(self, model: WorldModel, objective: Any) -> None:
        if self._best is not None:
            model.load_state_dict(self._best["model"])
            objective.load_state_dict(self._best["objective"])

    def summary(self) -> dict[str, Any]:
        return {"metric": "heldout_action_mse", "held_out_episodes": len(self.held_out), "best_step": self.best_step,
                "best_score": self.best_score, "scores": [list(s) for s in self.scores]}


def sim_buffer(state: dict[str, Any], horizon: int, device: torch.device) -> EpisodeBuffer:
    """The pretraining online buffer from its state_dict, re-sliced for `horizon`."""
    saved = EpisodeBuffer(int(state["capacity"]), int(state["horizon"]), max_episodes=int(state["max_episodes"]))
    saved.load_state_dict(state)
    buffer = EpisodeBuffer(saved.capacity, horizon, device=device, max_episodes=saved.max_episodes)
    for episode, terminated in zip(saved.episodes(), state["terminated"].tolist()):
        if episode.length >= horizon:
            buffer.add(episode, terminated=terminated)
    if buffer.num_episodes == 0:
        raise ValueError(f"behaviour=sim_buffer: the saved online buffer has no episode of H={horizon} steps")
    return buffer


@dataclass
class Start:
    """What finetuning starts from: a pretrained checkpoint or (scratch) a fresh model."""

    model: WorldModel
    objective: Any
    objective_config: Any
    contract: Contract
    task: Any
    episode_length: int
    pretrained: dict[str, Any] | None
    online_buffer: dict[str, Any] | None
    sim_demos: dict[str, Any] | None = None


def _task_from_checkpoint(ckpt: Checkpoint) -> Any:
    from tasks.spec import TaskConfig

    if "task" not in ckpt.extra:
        return None
    rgb = ckpt.contract.rgb_shape
    return TaskConfig(name=str(ckpt.extra["task"]), obs_mode="rgb" if rgb else "state",
                      control_mode=ckpt.contract.control_mode, image_size=rgb[-1] if rgb else 64,
                      episode_length=int(ckpt.extra.get("episode_length", 0)))


def recorded_sim_demos(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sim demos a checkpoint records ({"path", "episodes"}): a pretraining's own demos, or
    those a finetuned checkpoint was anchored with (`demos.sim_demos`); None when neither."""
    demos = extra.get("demos") or {}
    if "path" in demos:
        return demos
    anchor = demos.get("sim_demos")
    return anchor if isinstance(anchor, Mapping) and "path" in anchor else None


def load_start(cfg: FinetuneConfig, device: torch.device) -> Start:
    """The checkpoint's model, objective (CDRED targets included) and contract, or a fresh
    model and objective for `scratch=true` (normalisation is set from the demos later)."""
    from tasks.spec import task_contract, task_spec

    if cfg.scratch:
        if cfg.checkpoint:
            raise ValueError(f"scratch=true trains from scratch: drop checkpoint={cfg.checkpoint} (checkpoint=null)")
        missing = [k for k in ("task", "model", "objective") if getattr(cfg, k) is None]
        if missing:
            raise ValueError(f"scratch=true needs the groups {missing}, e.g. task=push_cube model=tiny objective=cdred")
        task = cfg.task
        contract = task_contract(task.name, task.obs_mode, task.control_mode, task.image_size)
        model = WorldModel(cfg.model, contract.model_obs_shapes(), contract.action_dim).to(device)
        objective = make_objective(cfg.objective, model)
        length = task.episode_length or task_spec(task.name).episode_length
        return Start(model, objective, cfg.objective, contract, task, length, None, None)
    if not cfg.checkpoint:
        raise ValueError("checkpoint=...: required (a pretrained .pt), or checkpoint=null scratch=true "
                         "task=... model=... objective=... to train from scratch")
    for key in ("model", "objective"):
        if getattr(cfg, key) is not None:
            raise ValueError(f"{key}=... is for scratch=true only: finetuning keeps {cfg.checkpoint}'s {key}")
    ckpt = load_checkpoint(cfg.checkpoint)
    model = ckpt.build_model(device)
    objective = load_objective(ckpt, model).train()
    objective_config = CONFIGS[ckpt.extra["objective_config"]["name"]](**ckpt.extra["objective_config"])
    task = cfg.task or _task_from_checkpoint(ckpt)
    if cfg.task is not None:
        ckpt.contract.check(task_contract(task.name, task.obs_mode, task.control_mode, task.image_size),
                            mine="checkpoint", theirs=f"task={task.name}", source=str(cfg.checkpoint))
    pretrained = {"path": str(Path(cfg.checkpoint).resolve()), "sha256": file_sha256(cfg.checkpoint),
                  **{k: ckpt.extra[k] for k in ("stage", "task", "backend", "domain", "step", "updates")
                     if k in ckpt.extra}}
    length = int(ckpt.extra.get("episode_length", 0)) or (task.episode_length if task else 0) or 50
    return Start(model, objective, objective_config, ckpt.contract, task, length, pretrained,
                 ckpt.extra.get("online_buffer"), recorded_sim_demos(ckpt.extra))


class Finetuner:
    """The finetuning agent and its data: `sample()` a batch, `update()` on it, `checkpoint()`.

    Args:
        cfg: the run's settings.
        say: where notes go (the console).
    """

    def __init__(self, cfg: FinetuneConfig, say: Callable[[str], None] = print) -> None:
        if cfg.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour={cfg.behaviour!r}: expected one of {list(BEHAVIOURS)}")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        start = load_start(cfg, self.device)
        self.start = start
        horizon = cfg.agent.horizon
        demos, self.demo_info = load_demos(cfg.demos, start.contract, cfg.dataset, cfg.num_demos, horizon, say,
                                           task=start.task.name if start.task is not None else None)
        self.demos, held_out = split_holdout(demos, cfg.holdout, cfg.seed)
        self.selection = Selection(held_out, cfg.patience) if held_out else None
        self.demo_info["held_out"] = len(held_out)
        if cfg.holdout > 0 and not held_out:
            say(f"holdout={cfg.holdout}: one demo episode, nothing to hold out; keeping the last weights")
        if cfg.scratch and "state" in start.contract.model_obs_shapes():
            start.model.set_state_normalization(*state_statistics(self.demos, start.contract))
        self.floored = floor_state_std(start.model, cfg.state_std_floor)
        if self.floored:
            say(f"state normalisation: std raised to state_std_floor={cfg.state_std_floor} in dims {self.floored}")
        self.expert = expert_buffer(self.demos, horizon, device=self.device)
        self.sim_share = self._sim_share(say)
        self.sim_expert = self._sim_demo_buffer(say) if self.sim_share > 0 else None
        self.behaviour: EpisodeBuffer | None = None
        if cfg.behaviour == "sim_buffer":
            if start.online_buffer is None:
                where = "scratch=true has no checkpoint" if cfg.scratch else (
                    f"{cfg.checkpoint} holds no online buffer (pretrain with save_buffer=true to keep it)")
                raise ValueError(f"behaviour=sim_buffer: {where}; use behaviour=rollouts or behaviour=demos")
            self.behaviour = sim_buffer(start.online_buffer, horizon, self.device)
        self.discount = discount_from_episode_length(start.episode_length)
        self.agent = Agent(start.model, start.objective, start.contract, cfg.agent, cfg.planner, self.discount,
                           frozen=cfg.freeze)
        self.updates = 0

    def _sim_share(self, say: Callable[[str], None]) -> float:
        """The share of sim demos in every expert half: `sim_demos`, or its automatic choice."""
        cfg, recorded = self.cfg, self.start.sim_demos
        missing = ("scratch=true has no pretraining" if cfg.scratch else
                   f"{cfg.checkpoint} records no sim demos" if not recorded else
                   f"{recorded['path']} is missing" if not Path(recorded["path"]).is_file() else "")
        if cfg.sim_demos is None:
            if missing:
                say(f"sim_demos: target demos only ({missing})")
                return 0.0
            return AUTO_SIM_DEMOS
        if not 0.0 <= cfg.sim_demos < 1.0:
            raise ValueError(f"sim_demos={cfg.sim_demos}: expected a fraction in [0, 1)")
        if cfg.sim_demos > 0 and missing:
            raise ValueError(f"sim_demos={cfg.sim_demos}: needs the pretraining's sim demos, but {missing}; use "
                             "sim_demos=0")
        return cfg.sim_demos

    def _sim_demo_buffer(self, say: Callable[[str], None]) -> EpisodeBuffer:
        """The pretraining's sim demos, for `sim_share` of every expert half."""
        cfg, recorded = self.cfg, self.start.sim_demos
        _, episodes = read_episodes(recorded["path"], contract=self.start.contract)
        episodes = [e for e in episodes[:int(recorded["episodes"])] if e.length >= cfg.agent.horizon]
        say(f"sim_demos={self.sim_share}: {len(episodes)} sim demo episodes from {recorded['path']} in every "
            "expert half")
        self.demo_info["sim_demos"] = {"path": recorded["path"], "episodes": len(episodes), "share": self.sim_share}
        return expert_buffer(episodes, cfg.agent.horizon, device=self.device)

    def _expert_half(self, n: int) -> SliceBatch:
        if self.sim_expert is None:
            return self.expert.sample(n)
        k = round(self.sim_share * n)
        return cat_batches(self.expert.sample(n - k), self.sim_expert.sample(k)) if k else self.expert.sample(n)

    def sample(self) -> tuple[SliceBatch, ImaginedBatch | None]:
        """One batch: demo slices (expert half) and the behaviour half (slices or imagined latents)."""
        half = self.cfg.agent.batch_size
        expert = self._expert_half(half)
        if self.cfg.behaviour == "rollouts":
            starts = self._expert_half(half).obs
            return expert, self.agent.imagine({k: v[0] for k, v in starts.items()}, self.cfg.agent.horizon)
        other = self.behaviour.sample(half) if self.behaviour is not None else self.expert.sample(half)
        return cat_batches(expert, other), None

    def update(self, batch: tuple[SliceBatch, ImaginedBatch | None] | None = None) -> dict[str, float]:
        """One gradient step on `batch` (a fresh `sample()` if None)."""
        slices, imagined = batch if batch is not None else self.sample()
        metrics = self.agent.update(slices, num_expert=self.cfg.agent.batch_size, imagined=imagined)
        self.updates += 1
        return metrics

    def checkpoint(self, history: list[FinetuneEval]) -> Checkpoint:
        """The finetuned model with what `load_policy` needs and where it came from."""
        start, cfg = self.start, self.cfg
        extra = {"stage": "finetune", "agent": self.agent.state_dict(), "step": self.updates,
                 "updates": self.updates, "objective_config": asdict(start.objective_config),
                 "episode_length": start.episode_length, "history": [asdict(h) for h in history],
                 "pretrained": start.pretrained, "demos": self.demo_info, "finetune_config": asdict(cfg),
                 "behaviour": cfg.behaviour, "frozen": list(self.agent.frozen), "state_std_floored": self.floored,
                 "selection": self.selection.summary() if self.selection is not None else None}
        if start.task is not None:
            extra["task"] = start.task.name
        return make_checkpoint(self.agent.model, start.contract, extra)


def finetune(cfg: FinetuneConfig, on_eval: Callable[[FinetuneEval], None] | None = None) -> FinetuneRun:
    """Run stage 2; returns the evaluation history (also in eval.csv) and the checkpoint path."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from torch.utils.tensorboard import SummaryWriter

    console = Console()
    out = Path(cfg.out_dir or ".")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    tuner = Finetuner(cfg, say=console.print)
    agent, start = tuner.agent, tuner.start
    # Before the evaluation env and the first update: the checkpoint must have somewhere to go.
    ckpt_bytes = checkpoint_bytes(agent.model, start.objective)
    check_output_dir(out, 2 * ckpt_bytes + LOG_MARGIN_BYTES,
                     f"checkpoints/last.pt and a temp file while saving, about {fmt_bytes(ckpt_bytes)} each, and "
                     f"{fmt_bytes(LOG_MARGIN_BYTES)} for logs and videos")
    task_name = start.task.name if start.task is not None else "unknown"
    console.print(f"finetune task={task_name} from={'scratch' if cfg.scratch else cfg.checkpoint} "
                  f"objective={start.objective.name} behaviour={cfg.behaviour} freeze={list(agent.frozen)} "
                  f"demos={tuner.demo_info['episodes']} ({tuner.demo_info['transitions']} steps) "
                  f"gamma={tuner.discount:.3f} device={tuner.device}")

    eval_env = None
    if cfg.eval_backend:
        import tasks

        if start.task is None:
            raise ValueError(f"eval_backend={cfg.eval_backend}: the checkpoint names no task; set task=...")
        eval_env = tasks.make_env(start.task, backend=cfg.eval_backend, num_envs=1,
                                  domain=resolve_domain(cfg.eval_domain))
        start.contract.check(eval_env.contract, mine="model", theirs=f"{cfg.eval_backend} env",
                             source=cfg.checkpoint or "scratch model")

    metrics_log, eval_log = CsvLog(out / "metrics.csv"), CsvLog(out / "eval.csv")
    tb = SummaryWriter(str(out / "tb"))
    history: list[FinetuneEval] = []
    timers = {"update": 0.0, "eval": 0.0}
    begin = time.perf_counter()

    def run_eval() -> None:
        video = out / "videos" / f"eval_{tuner.updates:08d}.mp4" if cfg.eval_video else None
        stats, seconds = evaluate_training_agent(agent, eval_env, cfg.eval_episodes, video)
        timers["eval"] += seconds
        result = FinetuneEval(task_name, tuner.updates, time.perf_counter() - begin, stats.success_once,
                              stats.success_at_end, stats.env_return)
        history.append(result)
        log_eval(result, eval_log, tb, result.step)
        if on_eval is not None:
            on_eval(result)

    if eval_env is not None and not cfg.scratch:
        run_eval()  # zero-shot: the pretrained model in the target domain
    selection = tuner.selection
    select_log = CsvLog(out / "select.csv")

    def check_held_out() -> None:
        score = selection.check(tuner.updates, agent.model, start.objective, start.contract, tuner.device)
        select_log.write({"step": tuner.updates, "wall_s": round(time.perf_counter() - begin, 2),
                          "heldout_action_mse": score})
        tb.add_scalar("select/heldout_action_mse", score, tuner.updates)

    if selection is not None:
        check_held_out()
    with Progress(TextColumn("[bold]finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bar = progress.add_task("finetune", total=cfg.steps, status="")
        while tuner.updates < cfg.steps:
            tick = time.perf_counter()
            metrics = tuner.update()
            timers["update"] += time.perf_counter() - tick
            step = tuner.updates
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, "wall_s": round(time.perf_counter() - begin, 2), **metrics}
                metrics_log.write(row)
                for key, value in metrics.items():
                    if math.isfinite(value):
                        tb.add_scalar(f"train/{key}", value, step)
            if selection is not None and (step % cfg.select_every == 0 or step == cfg.steps):
                check_held_out()
            if eval_env is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                run_eval()
            progress.update(bar, completed=step, status=_status(metrics, history))
            if selection is not None and selection.exhausted:
                console.print(f"finetune: stopping at {step} updates, {selection.stale} held-out checks "
                              f"without a better score (patience={cfg.patience})")
                break
    if selection is not None:
        selection.restore(agent.model, start.objective)
        console.print(f"finetune: kept the weights of update {selection.best_step} "
                      f"(heldout_action_mse {selection.best_score:.4g} on {len(selection.held_out)} held-out episodes)")
    path = save_checkpoint(out / "checkpoints" / "last.pt", tuner.checkpoint(history))
    tb.close()
    if eval_env is not None:
        eval_env.close()
    return FinetuneRun(history=history, updates=tuner.updates, update_s=timers["update"], eval_s=timers["eval"],
                       checkpoint=str(path), out_dir=str(out))


def _status(metrics: dict[str, float], history: list[FinetuneEval]) -> str:
    parts = [f"success {history[-1].success_at_end:.2f}"] if history else []
    for key in ("consistency_loss", "q_loss", "iq_loss", "pi_bc_loss", "reward_expert", "reward_online"):
        if key in metrics and math.isfinite(metrics[key]):
            parts.append(f"{key} {metrics[key]:.3g}")
    return " | ".join(parts)
