"""Choosing the finetuned weights to keep without a target simulator: the deployed prior's
action error on held-out target demos, checked every few updates, the best weights kept and
the run stopped when the score stops improving.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sim2real.contract import Contract
from sim2real.data import Episode
from sim2real.world_model import WorldModel


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


def snapshot(model: WorldModel, objective: Any) -> dict[str, dict[str, torch.Tensor]]:
    """Detached copies of the model's and objective's weights ({"model": ..., "objective": ...})."""
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in (("model", model), ("objective", objective))}


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
            self._best = snapshot(model, objective)
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
