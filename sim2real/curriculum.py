"""Reverse curriculum along the expert's trajectories: episodes that start late in a demo.

RFCL resets training episodes to states along the demonstrations, starting near their ends
and moving the start back as the agent succeeds from there. Here the scripted expert (free in
simulation) drives each such episode from its reset to the handover step and the agent acts
from there on, so the same curriculum runs on every engine without setting simulator state,
and the handover states are those the expert's demos pass through. Only the agent's part of
an episode enters the online buffer.

Stages: every curriculum episode hands over at the current stage's step (less a random
0..stage_steps-1, so consecutive stages overlap). Once `window` of them have ended, and
their success at the end reaches `success_threshold`, the stage moves `stage_steps`
earlier; at step 0 the curriculum is done and every episode is the agent's from its reset.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class CurriculumConfig:
    """Args:
        enabled: start some training episodes with the scripted expert (see module doc).
        fraction: share of training episodes that do while the curriculum runs; the others
            are the agent's from the reset, as evaluations are.
        start_step: handover step of the first stage; 0 = 80 % of the episode.
        stage_steps: how many control steps earlier each next stage hands over.
        success_threshold: success rate of a stage's episodes that moves to the next stage.
        window: episodes of a stage that rate is measured over.
    """

    enabled: bool = False
    fraction: float = 0.5
    start_step: int = 0
    stage_steps: int = 5
    success_threshold: float = 0.5
    window: int = 20


class ReverseCurriculum:
    """Per-env handover steps for a batch of training envs, and the stage bookkeeping.

    Args:
        cfg: curriculum settings.
        num_envs: training envs.
        episode_length: control steps per episode.
        min_agent_steps: the agent acts for at least this many steps of every episode (a
            training slice's horizon), so a handover is never later than
            episode_length - min_agent_steps.
        generator: random stream for the draws (seed it for reproducible runs).
    """

    def __init__(self, cfg: CurriculumConfig, num_envs: int, episode_length: int, min_agent_steps: int,
                 generator: torch.Generator | None = None) -> None:
        if not 0.0 <= cfg.fraction <= 1.0:
            raise ValueError(f"curriculum.fraction={cfg.fraction}: expected a share in [0, 1]")
        if cfg.stage_steps < 1 or cfg.window < 1 or cfg.start_step < 0:
            raise ValueError(f"curriculum: stage_steps ({cfg.stage_steps}) and window ({cfg.window}) must be "
                             f">= 1 and start_step ({cfg.start_step}) >= 0")
        if not 0.0 <= cfg.success_threshold <= 1.0:
            raise ValueError(f"curriculum.success_threshold={cfg.success_threshold}: expected a rate in [0, 1]")
        self.cfg = cfg
        latest = max(episode_length - min_agent_steps, 0)
        self.stage = min(cfg.start_step or int(0.8 * episode_length), latest) if cfg.enabled else 0
        self.handover = torch.zeros(num_envs, dtype=torch.long)
        self.of_stage = torch.zeros(num_envs, dtype=torch.long)  # the stage each env's handover was drawn at
        self.chosen = torch.zeros(num_envs, dtype=torch.bool)  # the env's episode is a curriculum episode
        self.outcomes: deque[bool] = deque(maxlen=cfg.window)
        self.generator = generator

    @property
    def done(self) -> bool:
        return self.stage == 0

    def begin(self, env_mask: torch.Tensor) -> torch.Tensor:
        """Draw handover steps for the envs in env_mask [N] (their episodes begin); returns all [N]."""
        idx = env_mask.cpu().nonzero().flatten()
        if len(idx):
            if self.done:
                self.handover[idx] = 0
                self.chosen[idx] = False
            else:
                chosen = torch.rand(len(idx), generator=self.generator) < self.cfg.fraction
                back = torch.randint(self.cfg.stage_steps, (len(idx),), generator=self.generator)
                self.handover[idx] = torch.where(chosen, (self.stage - back).clamp(min=0), 0)
                self.chosen[idx] = chosen
            self.of_stage[idx] = self.stage
        return self.handover

    def expert_acts(self, steps_since_reset: torch.Tensor) -> torch.Tensor:
        """Envs [N] whose expert still acts at this step (steps_since_reset [N] before the step)."""
        return steps_since_reset.cpu() < self.handover

    def handed_over(self, steps_since_reset: torch.Tensor) -> torch.Tensor:
        """Envs [N] whose agent takes over now (steps_since_reset [N] after the step)."""
        return (self.handover > 0) & (steps_since_reset.cpu() == self.handover)

    def finish(self, i: int, success: bool) -> None:
        """Env i's episode ended: count it for its stage; move to the next stage when due."""
        if not self.chosen[i] or self.of_stage[i] != self.stage or self.done:
            return
        self.outcomes.append(bool(success))
        if len(self.outcomes) == self.cfg.window and sum(self.outcomes) / self.cfg.window >= self.cfg.success_threshold:
            self.stage = max(self.stage - self.cfg.stage_steps, 0)
            self.outcomes.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "outcomes": list(self.outcomes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.outcomes = deque((bool(x) for x in state["outcomes"]), maxlen=self.cfg.window)
