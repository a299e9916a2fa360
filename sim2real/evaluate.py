"""Policy evaluation on fresh simulated episodes, shared by every stage and baseline.

Anything with `act(obs) -> actions` and `reset(env_mask)` is a policy here: the agent
(planner or policy prior), a BC policy, a finetuned model. Success is read from the task's
`info["success"]`: `success_once` counts episodes solved at any step, `success_at_end`
those solved at their last step (the stricter figure, reported as "success").
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sim2real.atomic import atomic_path


class Policy(Protocol):
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def reset(self, env_mask: torch.Tensor | None = None) -> None: ...


@dataclass
class EvalStats:
    episodes: int
    success_once: float
    success_at_end: float
    env_return: float


def evaluate_policy(policy: Policy, env: Any, episodes: int, seed: int,
                    video_path: str | Path | None = None) -> EvalStats:
    """Run `episodes` episodes (in batches of env.num_envs) with seeds seed, seed+1, ...

    Args:
        policy: what acts; called without gradients.
        env: a tasks.TaskEnv.
        episodes: how many episodes to score.
        seed: seed of the first episode batch (evaluation seeds should differ from training's).
        video_path: if given and the backend renders, the first episode of env 0 is written
            there as an MP4 (atomically).
    """
    if episodes < 1:
        raise ValueError(f"evaluate_policy: episodes={episodes}, expected >= 1")
    once: list[bool] = []
    end: list[bool] = []
    returns: list[float] = []
    frames: list[np.ndarray] | None = [] if video_path is not None else None
    batch = 0
    with torch.no_grad():
        while len(end) < episodes:
            obs, info = env.reset(seed=seed + batch * env.num_envs)
            policy.reset()
            solved = info["success"].clone().cpu()
            ret = torch.zeros(env.num_envs)
            for _ in range(env.episode_length):
                if frames is not None and batch == 0:
                    frames = _grab(env, frames)
                obs, reward, _terminated, _truncated, info = env.step(policy.act(obs).to(env.device))
                solved |= info["success"].cpu()
                ret += reward.float().cpu()
            if frames is not None and batch == 0:
                frames = _grab(env, frames)
            once += solved.tolist()
            end += info["success"].cpu().tolist()
            returns += ret.tolist()
            batch += 1
    if frames:
        write_video(video_path, frames, fps=env.contract.control_freq)  # type: ignore[arg-type]
    n = episodes
    return EvalStats(n, sum(once[:n]) / n, sum(end[:n]) / n, sum(returns[:n]) / n)


# Evaluations during training use these episode seeds, far from the training envs' seeds, so
# successive evaluations of one run (and of pretraining vs finetuning) score the same episodes.
TRAINING_EVAL_SEED = 1_000_000


def evaluate_training_agent(agent: Any, env: Any, episodes: int,
                            video_path: str | Path | None = None) -> tuple[EvalStats, float]:
    """One in-training evaluation: the model in eval mode for the episodes, back in train mode
    after, on the TRAINING_EVAL_SEED episodes. Returns the stats and the seconds taken."""
    tick = time.perf_counter()
    agent.model.eval()
    try:
        stats = evaluate_policy(agent, env, episodes, seed=TRAINING_EVAL_SEED, video_path=video_path)
    finally:
        agent.model.train()
    return stats, time.perf_counter() - tick


def log_eval(record: Any, log: Any, tb: Any, step: int) -> None:
    """Append an evaluation record (a dataclass with success_once, success_at_end, env_return)
    to `log` (a sim2real.csv_log.CsvLog) and its three figures to TensorBoard at `step`."""
    log.write(asdict(record))
    for key in ("success_once", "success_at_end", "env_return"):
        tb.add_scalar(f"eval/{key}", getattr(record, key), step)
    tb.flush()


def _grab(env: Any, frames: list[np.ndarray]) -> list[np.ndarray] | None:
    """Append env 0's frame; None (stop trying) when the backend cannot render."""
    try:
        frames.append(env.render()[0].cpu().numpy())
    except NotImplementedError:
        return None
    return frames


def write_video(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    """Frames [H, W, 3] uint8 -> MP4 (H.264 through imageio-ffmpeg), written atomically."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        # macro_block_size=1 keeps small frames (e.g. 128x128) at their size instead of
        # padding them; yuv420p makes the file playable in browsers.
        with imageio.get_writer(tmp, fps=max(1, int(round(fps))), codec="libx264", macro_block_size=1,
                                pixelformat="yuv420p") as writer:
            for frame in frames:
                writer.append_data(frame)
    return Path(path)


def binomial_ci95(successes: int, trials: int) -> tuple[float, float]:
    """Wilson score interval for a success rate (robust at 0 and 1)."""
    if trials <= 0:
        return (math.nan, math.nan)
    z = 1.959963984540054
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
