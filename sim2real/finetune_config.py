"""Stage 2's settings: `FinetuneConfig` (the `finetune_schema` that configs/finetune.yaml
composes), the composed config -> dataclass step, and domain specs -> DomainParams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from sim2real.agent import AgentConfig
from sim2real.config import ModelConfig, PlannerConfig
from sim2real.data import DatasetConfig
from sim2real.imitation import CONFIGS
from sim2real.world_model import STATE_STD_FLOOR

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
        interpolate: the kept model is this blend of the finetuned weights with the starting
            (pretrained) ones, parameter by parameter: 1 keeps the finetuned weights, 0 the
            pretrained. Weight-space blending keeps much of what finetuning gained near the
            demos and of the pretrained model's behaviour where they do not reach (robust
            finetuning, WiSE-FT). Ignored with scratch=true. Why 0.5 by default: README's
            transfer benchmark section.
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
    interpolate: float = 0.5
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
    from sim2real.pretrain_config import register_schemas as register_pretrain_schemas

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
