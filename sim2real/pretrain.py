"""Stage 1: reward-free online imitation pretraining in simulation.

The loop interleaves acting and learning as TD-MPC2 does: `seed_steps` env steps of
uniform random actions, then one burst of `seed_steps` updates, then `utd_ratio` updates
per env step, each on a batch of `batch_size` expert slices + `batch_size` online slices.
The environment reward is never used for learning; it is logged next to the learned
reward, with their correlation, for diagnosis only.

Everything a run produces goes under `out_dir`: `metrics.csv` (one row per log/eval point),
`eval.csv`, checkpoints (`checkpoints/step_<n>.pt`, `checkpoints/last.pt`, atomic), and
the online buffer when `save_buffer` is set. `resume=true` continues from `last.pt`:
step and update counts, optimisers, RNG states and (if saved) the online buffer; the CSV
rows past its step are dropped. Before anything else the output directory is checked for
writes and free space (`sim2real.preflight`).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.agent import Agent
from sim2real.buffer import EpisodeBuffer, cat_batches, expert_buffer
from sim2real.checkpoint import load_checkpoint, make_checkpoint, remove_temp_files, save_checkpoint
from sim2real.csv_log import CsvLog
from sim2real.curriculum import ReverseCurriculum
from sim2real.data import Episode, EpisodeRecorder, read_dataset
from sim2real.device import resolve_device
from sim2real.evaluate import evaluate_training_agent, log_eval
from sim2real.imitation import make_objective
from sim2real.planner import discount_from_episode_length
from sim2real.preflight import check_output_dir, pretrain_output_bytes
from sim2real.pretrain_config import LoopConfig, PretrainConfig
from sim2real.rng_state import rng_state, set_rng_state
from sim2real.world_model import WorldModel


@dataclass
class EvalResult:
    env_steps: int
    updates: int
    wall_s: float
    success_once: float
    success_at_end: float
    env_return: float


@dataclass
class PretrainRun:
    """What `pretrain` returns: the evaluation history and where the time went.

    Attributes:
        act_s / env_s / update_s / eval_s: wall seconds spent choosing actions, stepping
            the envs, in gradient updates and in evaluations (this process only: a resumed
            run counts from its restart).
    """

    history: list[EvalResult]
    env_steps: int
    updates: int
    act_s: float
    env_s: float
    update_s: float
    eval_s: float
    out_dir: str
    env_steps_this_process: int = 0
    updates_this_process: int = 0

    @property
    def env_steps_per_s(self) -> float:
        """Env steps per second of acting + stepping (learning and evaluation excluded)."""
        return self.env_steps_this_process / max(self.act_s + self.env_s, 1e-9)

    @property
    def updates_per_s(self) -> float:
        return self.updates_this_process / max(self.update_s, 1e-9)


def eval_line(cfg: PretrainConfig, r: EvalResult) -> str:
    """The line printed at every evaluation (scripts/pretrain.py, benchmarks/pretrain_curve.py)."""
    return (f"pretrain task={cfg.task.name} objective={cfg.objective.name} model={cfg.model.name} "
            f"env_steps={r.env_steps} updates={r.updates} wall_s={r.wall_s:.1f} success={r.success_at_end:.2f}")


def _demo_path(cfg: LoopConfig, task: str) -> str:
    domain = getattr(cfg, "domain", None)
    return cfg.demos or f"data/{task}_{cfg.backend}_{domain.name if domain is not None else 'source'}.h5"


def load_demos(cfg: LoopConfig, task_cfg: Any, contract: Any, say: Callable[[str], None]) -> list[Episode]:
    """The expert episodes, collected with the scripted expert first if the file is missing."""
    path = _demo_path(cfg, task_cfg.name)
    if not Path(path).exists():
        from tasks.collect import CollectConfig, collect_demos
        say(f"demo file {path} not found: collecting {cfg.num_demos} episodes with the scripted expert")
        # In the pretraining domain: a shifted source (transfer benchmark) gets its own demos.
        domain = getattr(cfg, "domain", None)
        extra = {"domain": domain} if domain is not None else {}
        collect_demos(CollectConfig(task=task_cfg, backend=cfg.backend, episodes=cfg.num_demos, seed=10_000,
                                    out=path, **extra))
    _, episodes = read_dataset(path, expect_contract=contract)
    if len(episodes) < cfg.num_demos:
        say(f"{path} holds {len(episodes)} episodes; using all of them (num_demos={cfg.num_demos})")
    return episodes[:cfg.num_demos]


def state_statistics(episodes: list[Episode], contract: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the encoder's state vector over the demos."""
    states = torch.cat([contract.model_inputs(e.obs)["state"] for e in episodes])
    return states.mean(0), states.std(0)


def _pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    a, b = torch.tensor(x), torch.tensor(y)
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def pretrain(cfg: PretrainConfig, on_eval: Callable[[EvalResult], None] | None = None) -> PretrainRun:
    """Run stage 1; returns the evaluation history (also in eval.csv) and timings."""
    task_cfg, domain, model_cfg, planner_cfg = cfg.task, cfg.domain, cfg.model, cfg.planner
    objective_cfg, agent_cfg = cfg.objective, cfg.agent
    import tasks
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if cfg.budget_minutes < 0:
        raise ValueError(f"budget_minutes={cfg.budget_minutes}: expected minutes > 0, or 0 for no limit")
    console = Console()
    out = Path(cfg.out_dir or ".")
    # Before demos, envs or training: a run that cannot write its checkpoints stops here.
    check_output_dir(out, *pretrain_output_bytes(cfg))
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    for tmp in remove_temp_files(out / "checkpoints"):
        console.print(f"removed {tmp}: the temp file of a save that never finished")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    env = tasks.make_env(task_cfg, backend=cfg.backend, num_envs=cfg.num_envs, domain=domain)
    eval_env = tasks.make_env(task_cfg, backend=cfg.backend, num_envs=1, domain=domain)
    contract = env.contract
    demos = load_demos(cfg, task_cfg, contract, console.print)
    horizon = agent_cfg.horizon
    expert = expert_buffer(demos, horizon, device=device)
    online = EpisodeBuffer(cfg.buffer_size, horizon, device=device)
    discount = discount_from_episode_length(env.episode_length)
    seed_steps = cfg.seed_steps or max(1000, 5 * env.episode_length)

    model = WorldModel(model_cfg, contract.model_obs_shapes(), contract.action_dim)
    if "state" in contract.model_obs_shapes():
        model.set_state_normalization(*state_statistics(demos, contract))
    model.to(device)
    objective = make_objective(objective_cfg, model).to(device)
    agent = Agent(model, objective, contract, agent_cfg, planner_cfg, discount)

    curriculum = ReverseCurriculum(cfg.curriculum, env.num_envs, env.episode_length, horizon + 1,
                                   generator=torch.Generator().manual_seed(cfg.seed))
    scripted = None  # the scripted expert that starts curriculum episodes
    if cfg.curriculum.enabled:
        from tasks.experts import make_expert
        scripted = make_expert(task_cfg.name, env.num_envs, control_mode=task_cfg.mode, arm=task_cfg.arm)

    step = updates = 0
    history: list[EvalResult] = []
    last = out / "checkpoints" / "last.pt"
    if cfg.resume and last.exists():
        ckpt = load_checkpoint(last, expect_contract=contract)
        model.load_state_dict(ckpt.model_state)
        agent.load_state_dict(ckpt.extra["agent"])
        step, updates = int(ckpt.extra["step"]), int(ckpt.extra["updates"])
        history = [EvalResult(**h) for h in ckpt.extra["history"]]
        if "online_buffer" in ckpt.extra:
            online.load_state_dict(ckpt.extra["online_buffer"])
        if "curriculum" in ckpt.extra:
            curriculum.load_state_dict(ckpt.extra["curriculum"])
        set_rng_state(ckpt.extra["rng"])
        console.print(f"resumed from {last} at env step {step} ({updates} updates, "
                      f"{online.num_episodes} online episodes)")
    elif cfg.resume:
        console.print(f"resume=true but {last} does not exist: starting from scratch")

    console.print(f"pretrain task={task_cfg.name} backend={cfg.backend} objective={objective.name} "
                  f"model={model_cfg.name} params={model.describe()['total']} demos={len(demos)} "
                  f"gamma={discount:.3f} seed_steps={seed_steps} device={device}")

    def save(tag: str) -> None:
        extra: dict[str, Any] = {"agent": agent.state_dict(), "step": step, "updates": updates,
                                 "history": [asdict(h) for h in history], "rng": rng_state(),
                                 "objective_config": asdict(objective_cfg), "stage": "pretrain",
                                 "episode_length": env.episode_length,
                                 "domain": asdict(domain) if is_dataclass(domain) else domain,
                                 "task": task_cfg.name, "backend": cfg.backend,
                                 "curriculum": curriculum.state_dict(),
                                 # the sim demos, for baselines that must see the same ones
                                 "demos": {"path": str(Path(_demo_path(cfg, task_cfg.name)).resolve()),
                                           "episodes": len(demos)}}
        if cfg.save_buffer:
            extra["online_buffer"] = online.state_dict()
        ckpt = make_checkpoint(model, contract, extra)
        save_checkpoint(out / "checkpoints" / f"{tag}.pt", ckpt)
        save_checkpoint(last, ckpt)

    metrics_log, eval_log = CsvLog(out / "metrics.csv"), CsvLog(out / "eval.csv")
    if cfg.resume:  # rows logged after the checkpoint by the run that died are logged again
        for log in (metrics_log, eval_log):
            log.drop_rows_after("env_steps", step)
    from torch.utils.tensorboard import SummaryWriter
    tb = SummaryWriter(str(out / "tb"), purge_step=step or None)
    timers = {"act": 0.0, "env": 0.0, "update": 0.0, "eval": 0.0}
    first_step, first_updates = step, updates
    start = time.perf_counter()
    wall_offset = history[-1].wall_s if history else 0.0
    recorder = EpisodeRecorder(env.num_envs)
    # Every reset is seeded by the count of episode batches started, so a resumed run meets
    # the same initial states as an uninterrupted one (checkpoints fall on episode ends).
    episode_batches = int(step // (env.episode_length * env.num_envs))
    obs, info = env.reset(seed=cfg.seed * 100_003 + episode_batches * env.num_envs)
    agent.reset()
    all_envs = torch.ones(env.num_envs, dtype=torch.bool)
    since_reset = torch.zeros(env.num_envs, dtype=torch.long)
    # Curriculum episodes are recorded from their handover: the expert's part is not the agent's.
    recorder.start(obs, info["success"], curriculum.begin(all_envs) == 0)
    if scripted is not None:
        scripted.reset()
    last_metrics: dict[str, float] = {}
    # (env reward, learned reward) of recent transitions: diagnosis only, never a training signal.
    reward_pairs: deque[tuple[float, float]] = deque(maxlen=5000)
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_log = (step // cfg.log_every + 1) * cfg.log_every

    def run_eval() -> None:
        video = out / "videos" / f"eval_{step:08d}.mp4" if cfg.eval_video else None
        stats, seconds = evaluate_training_agent(agent, eval_env, cfg.eval_episodes, video)
        timers["eval"] += seconds
        result = EvalResult(step, updates, wall_offset + time.perf_counter() - start, stats.success_once,
                            stats.success_at_end, stats.env_return)
        history.append(result)
        log_eval(result, eval_log, tb, step)
        if on_eval is not None:
            on_eval(result)

    with Progress(TextColumn("[bold]pretrain"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bar = progress.add_task("pretrain", total=cfg.steps, completed=step, status="")
        deadline = start + 60.0 * cfg.budget_minutes if cfg.budget_minutes > 0 else math.inf
        while step < cfg.steps and time.perf_counter() < deadline:
            tick = time.perf_counter()
            learning = updates > 0
            if step < seed_steps:
                action = torch.rand(env.num_envs, env.action_dim) * 2 - 1
            else:
                action = agent.act(obs, explore=True).cpu()
            expert_acts = curriculum.expert_acts(since_reset)
            if scripted is not None and expert_acts.any():
                action[expert_acts] = scripted.act(env.privileged_obs())[expert_acts]
            if learning:
                with torch.no_grad():
                    z = agent.encode_batch({k: v.unsqueeze(0).to(device) for k, v in obs.items()})[0]
                    learned = objective.reward(model, z, action.to(device)).flatten().cpu()
            tock = time.perf_counter()
            timers["act"] += tock - tick
            obs, reward, terminated, truncated, info = env.step(action.to(env.device))
            recorder.step(action, obs, reward, info["success"])
            if learning:
                reward_pairs.extend(zip(reward.cpu().tolist(), learned.tolist()))
            step += env.num_envs
            since_reset += 1
            handed_over = curriculum.handed_over(since_reset)
            if handed_over.any():
                recorder.start(obs, info["success"], handed_over)
                agent.reset(handed_over)
            done = terminated | truncated
            if done.any():
                for i in done.nonzero().flatten().tolist():
                    episode = recorder.finish(i)
                    curriculum.finish(i, bool(info["success"][i]))
                    # An episode shorter than the horizon holds no full training slice.
                    if episode.length >= online.horizon:
                        online.add(episode, terminated=bool(terminated[i]))
                episode_batches += 1
                obs, info = env.reset(seed=cfg.seed * 100_003 + episode_batches * env.num_envs, env_mask=done)
                agent.reset(done)
                since_reset[done.cpu()] = 0
                recorder.start(obs, info["success"], done & (curriculum.begin(done).to(done.device) == 0))
                if scripted is not None:
                    scripted.reset(done)
            tick = time.perf_counter()
            timers["env"] += tick - tock

            if step >= seed_steps and len(online) > 0:
                burst = seed_steps if updates == 0 else 0
                todo = burst or max(1, round(cfg.utd_ratio * env.num_envs))
                for _ in range(todo):
                    half = agent_cfg.batch_size
                    batch = cat_batches(expert.sample(half), online.sample(half))
                    last_metrics = agent.update(batch, num_expert=half)
                    updates += 1
                timers["update"] += time.perf_counter() - tick

            progress.update(bar, completed=min(step, cfg.steps),
                            status=f"updates {updates} | {_status(last_metrics, history)}")
            if step >= next_log and last_metrics:  # columns are fixed once learning has started
                next_log += cfg.log_every
                env_r, learned_r = zip(*reward_pairs) if reward_pairs else ((), ())
                row = {"env_steps": step, "updates": updates,
                       "wall_s": round(wall_offset + time.perf_counter() - start, 2),
                       "env_reward": sum(env_r) / max(len(env_r), 1),
                       "learned_reward": sum(learned_r) / max(len(learned_r), 1),
                       "reward_corr": _pearson(list(env_r), list(learned_r)), **last_metrics}
                metrics_log.write(row)
                for key, value in row.items():
                    if key != "env_steps" and isinstance(value, (int, float)) and math.isfinite(value):
                        tb.add_scalar(f"train/{key}", value, step)
            if step >= next_eval:
                next_eval += cfg.eval_every
                run_eval()
            if step >= next_ckpt:
                next_ckpt += cfg.checkpoint_every
                save(f"step_{step}")
        if not history or history[-1].env_steps != step:
            run_eval()
        save(f"step_{step}")
    tb.close()
    env.close()
    eval_env.close()
    return PretrainRun(history=history, env_steps=step, updates=updates, act_s=timers["act"], env_s=timers["env"],
                       update_s=timers["update"], eval_s=timers["eval"], out_dir=str(out),
                       env_steps_this_process=step - first_step, updates_this_process=updates - first_updates)


def _status(metrics: dict[str, float], history: list[EvalResult]) -> str:
    parts = []
    if history:
        parts.append(f"success {history[-1].success_at_end:.2f}")
    for key in ("consistency_loss", "q_loss", "iq_loss", "reward_expert", "reward_online"):
        if key in metrics and math.isfinite(metrics[key]):
            parts.append(f"{key} {metrics[key]:.3g}")
    return " | ".join(parts)
