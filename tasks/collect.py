"""Roll out a scripted expert in a batched env and cut the stream into `Episode`s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from hydra.core.config_store import ConfigStore

from sim2real.data import Episode, EpisodeRecorder
from tasks.domain import DomainParams
from tasks.env import TaskEnv
from tasks.experts import Expert
from tasks.spec import TaskConfig


@dataclass
class CollectConfig:
    """`scripts/collect_demos.py`: scripted-expert demonstrations into one HDF5 file.

    Args:
        task: the task/ group (name, obs mode, control mode, ...).
        domain: the domain/ group (source, target, or any overrides).
        backend: "maniskill" or "mujoco".
        episodes: how many episodes to record (successful or not: all are kept).
        num_envs: parallel envs.
        seed: base seed; episode k of the file has seed `seed + k`.
        expert_noise_std: Gaussian noise on the expert's motion actions, for diverse demos.
        out: output file; empty means `data/<task>_<backend>_<domain>.h5`.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    domain: DomainParams = field(default_factory=DomainParams)
    backend: str = "maniskill"
    episodes: int = 100
    num_envs: int = 1
    seed: int = 0
    expert_noise_std: float = 0.0
    out: str = ""


ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


def expert_episodes(env: TaskEnv, expert: Expert, episodes: int, seed: int = 0,
                    on_step: Callable[[], None] | None = None, privileged: bool = True) -> Iterator[Episode]:
    """Yield `episodes` expert episodes, `env.num_envs` at a time.

    Batch b resets with seed `seed + b * num_envs`; env i of that batch gets episode seed
    `seed + b * num_envs + i` (on CPU backends, resetting one env with that seed
    reproduces the episode's initial state). Every episode runs the full episode length:
    success is recorded per step, never used to stop early.

    Args:
        env: the environment; its obs mode and contract decide what is recorded.
        expert: acts on `env.privileged_obs()`, or with `privileged=False` on the observation
            the episode records (with the domain's sensor noise, as an expert behind sensors does).
        episodes: how many to yield (the last batch may be cut short).
        seed: base seed.
        on_step: called after every control step (e.g. to advance a progress bar).
    """
    n = env.num_envs
    recorder = EpisodeRecorder(n)
    done = 0
    batch = 0
    while done < episodes:
        batch_seed = seed + batch * n
        obs, info = env.reset(seed=batch_seed)
        expert.reset()
        recorder.start(obs, info["success"], torch.ones(n, dtype=torch.bool))
        for _ in range(env.episode_length):
            action = expert.act(env.privileged_obs() if privileged else obs)
            obs, reward, _, _, info = env.step(action)
            recorder.step(action, obs, reward, info["success"])
            if on_step is not None:
                on_step()
        for i in range(min(n, episodes - done)):
            yield recorder.finish(i, seed=batch_seed + i, meta={"domain": env.env_domains[i].values()})
        done += n
        batch += 1


@dataclass
class CollectResult:
    path: str
    episodes: int
    success_rate: float  # solved at the last step
    success_once_rate: float  # solved at some step


def collect_demos(cfg: CollectConfig) -> CollectResult:
    """Run the expert, stream episodes into `cfg.out` atomically, print the summary line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import tasks
    from sim2real.data import DatasetMetadata, DatasetWriter
    from tasks.experts import make_expert

    if cfg.episodes < 1:
        raise ValueError(f"episodes={cfg.episodes}: expected >= 1")
    out = cfg.out or f"data/{cfg.task.name}_{cfg.backend}_{cfg.domain.name}.h5"
    env = tasks.make_env(cfg.task, backend=cfg.backend, num_envs=cfg.num_envs, domain=cfg.domain)
    try:
        expert = make_expert(cfg.task.name, env.num_envs, noise_std=cfg.expert_noise_std,
                             control_mode=env.control_mode, arm=env.arm,
                             generator=torch.Generator().manual_seed(cfg.seed))
        metadata = DatasetMetadata(
            task=cfg.task.name, backend=cfg.backend, contract=env.contract, domain=cfg.domain.name,
            domain_values=cfg.domain.values(), seed=cfg.seed,
            extra={"expert": type(expert).__name__, "expert_noise_std": cfg.expert_noise_std,
                   "episode_length": env.episode_length, "obs_mode": env.obs_mode,
                   "domain_randomize": cfg.domain.randomize})
        total_steps = -(-cfg.episodes // env.num_envs) * env.num_envs * env.episode_length
        solved_end = solved_once = count = 0
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("env steps  {task.fields[status]}"), TimeElapsedColumn()) as progress, \
                DatasetWriter(out, metadata) as writer:
            bar = progress.add_task(f"{cfg.task.name}/{cfg.backend}", total=total_steps, status="")
            step = lambda: progress.advance(bar, env.num_envs)  # noqa: E731
            for episode in expert_episodes(env, expert, cfg.episodes, cfg.seed, on_step=step):
                writer.append(episode)
                count += 1
                solved_end += episode.success_at_end
                solved_once += episode.success_once
                progress.update(bar, status=f"| episodes {count} success {solved_end / count:.2f}")
    finally:
        env.close()
    result = CollectResult(out, count, solved_end / count, solved_once / count)
    print(f"wrote {out} ({count} episodes; solved at some step: {result.success_once_rate:.2f})")
    print(f"demos task={cfg.task.name} backend={cfg.backend} domain={cfg.domain.name} episodes={count} "
          f"success_rate={result.success_rate:.2f}")
    return result
