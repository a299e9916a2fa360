"""A trained checkpoint as a policy: the model, its objective's reward and the planner.

This is what deployment (robot_bridge), evaluation scripts and finetuning load. A
checkpoint from any stage carries the objective's config and state (for CDRED, the frozen
random targets), so the reward the planner maximises is the one the model was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sim2real.checkpoint import Checkpoint, load_checkpoint
from sim2real.config import PlannerConfig
from sim2real.contract import Contract
from sim2real.imitation import CONFIGS, Objective, make_objective
from sim2real.planner import Planner, discount_from_episode_length


class PlanningPolicy:
    """Named observation features [N, ...] -> actions [N, A] in [-1, 1], by MPPI or the prior.

    Args:
        ckpt: a loaded checkpoint (stage "pretrain" or later).
        planner: how to act (e.g. `load_preset("planner", "deploy", PlannerConfig)`).
        device: where the model runs.
        episode_length: sets the planner's discount as in training; None reads it from the
            checkpoint (or uses 50, the tasks' default).
    """

    def __init__(self, ckpt: Checkpoint, planner: PlannerConfig, device: str | torch.device = "cpu",
                 episode_length: int | None = None) -> None:
        self.ckpt = ckpt
        self.contract: Contract = ckpt.contract
        self.model = ckpt.build_model(device).eval()
        self.objective = load_objective(ckpt, self.model)
        length = episode_length or int(ckpt.extra.get("episode_length", 50))
        self.discount = discount_from_episode_length(length)
        self.planner = Planner(self.model, self.objective.value_fn(self.discount), planner)
        self.device = torch.device(device)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = self.contract.model_inputs({k: torch.as_tensor(v).to(self.device) for k, v in obs.items()})
        return self.planner.act(inputs, explore=False)

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        self.planner.reset(env_mask)


def load_objective(ckpt: Checkpoint, model: Any) -> Objective:
    """Rebuild the checkpoint's objective (config + state, e.g. CDRED's random targets)."""
    extra = ckpt.extra
    if "objective_config" not in extra or "agent" not in extra:
        raise ValueError("checkpoint has no objective (objective_config/agent): it was not written by a "
                         "training stage (pretrain or finetune)")
    config = dict(extra["objective_config"])
    name = config.get("name")
    if name not in CONFIGS:
        raise ValueError(f"checkpoint objective_config.name={name!r}; expected one of {sorted(CONFIGS)}")
    objective = make_objective(CONFIGS[name](**config), model)
    objective.load_state_dict(extra["agent"]["objective"])
    return objective.to(next(model.parameters()).device).eval()


def load_policy(path: str | Path, planner: PlannerConfig, device: str | torch.device = "cpu",
                expect_contract: Contract | None = None) -> PlanningPolicy:
    """Load a checkpoint file as a PlanningPolicy (optionally checking its contract)."""
    return PlanningPolicy(load_checkpoint(path, expect_contract=expect_contract), planner, device)
