"""Stage 1's settings: the pretraining loop's fields, the full `scripts/pretrain.py` schema, and
its composition from Hydra (configs/pretrain.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from sim2real.agent import AgentConfig
from sim2real.config import ModelConfig, PlannerConfig
from sim2real.curriculum import CurriculumConfig


@dataclass
class LoopConfig:
    """The pretraining loop (what `scripts/pretrain.py` adds to task, domain, model, planner, objective).

    Args:
        backend: "maniskill" or "mujoco".
        num_envs: parallel training envs.
        steps: env steps to train for (all envs together).
        budget_minutes: stop earlier, at this much wall time (minutes, this process; 0 = no
            limit); the run ends as at `steps`: a final evaluation and checkpoint.
        seed_steps: random-action steps before learning; 0 means max(1000, 5 * episode_length).
        utd_ratio: gradient updates per env step after the seed phase.
        buffer_size: online buffer capacity in transitions.
        demos: expert demo file (our HDF5); empty means data/<task>_<backend>_<domain>.h5. A
            missing file is collected with the scripted expert in the pretraining domain first.
        num_demos: how many of the file's episodes to imitate.
        eval_every / eval_episodes: evaluation period (env steps) and episodes per evaluation.
        checkpoint_every: checkpoint period (env steps); a final one is always written.
        log_every: metrics.csv / TensorBoard period (env steps).
        curriculum: episodes that the scripted expert starts and the agent finishes, handing
            over earlier as the agent succeeds (sim2real/curriculum.py).
        eval_video: write an MP4 of the first evaluation episode at every evaluation
            (videos/eval_<env_steps>.mp4) when the backend renders.
        resume: continue from out_dir/checkpoints/last.pt.
        save_buffer: store the online buffer with every checkpoint (exact resume).
        seed: seeds torch, numpy, random and the envs.
        device: "auto", "cpu" or "cuda".
        out_dir: where everything is written ("" = the current directory).
    """

    backend: str = "maniskill"
    num_envs: int = 1
    steps: int = 20_000
    budget_minutes: float = 0.0
    seed_steps: int = 0
    utd_ratio: float = 1.0
    buffer_size: int = 100_000
    demos: str = ""
    num_demos: int = 50
    eval_every: int = 2_500
    eval_episodes: int = 10
    checkpoint_every: int = 5_000
    log_every: int = 500
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval_video: bool = True
    resume: bool = False
    save_buffer: bool = False
    seed: int = 1
    device: str = "auto"
    out_dir: str = ""


@dataclass
class PretrainConfig(LoopConfig):
    """`scripts/pretrain.py`: the loop settings above plus the groups task/, domain/, model/,
    planner/, objective/ and the agent's optimisation settings (`agent.batch_size=...`).

    task, domain and objective hold a TaskConfig, DomainParams and CdredConfig/IqConfig
    (typed loosely here so that this module does not import the task package).
    """

    task: Any = None
    domain: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    objective: Any = None
    agent: AgentConfig = field(default_factory=AgentConfig)


ConfigStore.instance().store(name="pretrain_schema", node=PretrainConfig)


def register_schemas() -> None:
    """Register every structured schema `configs/pretrain.yaml` composes (task/, domain/,
    objective/); call before Hydra composes it."""
    import sim2real.imitation  # noqa: F401
    import tasks.domain  # noqa: F401
    import tasks.spec  # noqa: F401


def pretrain_config(cfg: Any) -> PretrainConfig:
    """A composed `pretrain` DictConfig -> PretrainConfig with typed task, domain and objective."""
    from sim2real.config import to_dataclass
    from sim2real.imitation import CONFIGS
    from tasks.domain import DomainParams
    from tasks.spec import TaskConfig

    run = to_dataclass(cfg, PretrainConfig)
    run.task = to_dataclass(cfg.task, TaskConfig)
    run.domain = to_dataclass(cfg.domain, DomainParams)
    run.objective = to_dataclass(cfg.objective, CONFIGS[cfg.objective.name])
    return run
