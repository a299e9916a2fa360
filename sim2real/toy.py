"""A toy latent task: build a world model and plan with it, end to end, in seconds.

The world model's own latent dynamics serve as the environment. Each episode starts
from the latent of a random observation; the goal is a latent reached from there by a
few random actions (so it is reachable), and the reward is the negative squared
distance to it. Three controllers drive the same dynamics: uniform random actions, the
(untrained) policy prior, and MPPI with the configured planner. The run then saves a
checkpoint, reloads it and checks that planning from the reloaded model is identical.

This exercises every component a later stage uses (encoder, dynamics, policy prior,
Q ensemble, planner, checkpoint) without a simulator; the pretraining pipeline replaces
it as the main job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sim2real.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from sim2real.config import ToyConfig
from sim2real.contract import Contract, Feature
from sim2real.device import resolve_device
from sim2real.planner import Planner, discount_from_episode_length, td_value
from sim2real.stats import percentile
from sim2real.world_model import WorldModel

CONTROLLERS = ("random", "policy prior", "mppi")


@dataclass
class ToyResult:
    returns: dict[str, float]
    final_distance: dict[str, float]
    mppi_p50_ms: float
    mppi_p99_ms: float
    checkpoint: Path
    reload_identical: bool


def run_toy(cfg: ToyConfig, console: Console | None = None) -> ToyResult:
    """Run the toy latent planning task and return its figures."""
    console = console or Console()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    contract = Contract(features={"state": Feature((cfg.obs_dim,))}, action_dim=cfg.action_dim,
                        control_mode="toy_latent", control_freq=20.0)
    model = WorldModel(cfg.model, contract.model_obs_shapes(), cfg.action_dim).to(device).eval()
    sizes = model.describe()
    console.print(f"[bold]world model[/] preset={cfg.model.name} device={device.type} "
                  f"params={sizes['total']:,} (encoder {sizes['encoder']:,}, dynamics {sizes['dynamics']:,}, "
                  f"pi {sizes['pi']:,}, Q {sizes['Qs']:,})")
    console.print(f"[bold]planner[/] {cfg.planner.name}: mpc={cfg.planner.mpc} horizon={cfg.planner.horizon} "
                  f"iterations={cfg.planner.iterations} samples={cfg.planner.num_samples} "
                  f"elites={cfg.planner.num_elites} pi_trajs={cfg.planner.num_pi_trajs}")
    discount = discount_from_episode_length(cfg.episode_steps)

    returns = {c: 0.0 for c in CONTROLLERS}
    distance = {c: 0.0 for c in CONTROLLERS}
    latencies: list[float] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with torch.no_grad(), Progress(*columns, console=console) as progress:
        task = progress.add_task("toy latent episodes", total=cfg.episodes * len(CONTROLLERS))
        for _ in range(cfg.episodes):
            z0 = model.encode({"state": torch.randn(1, cfg.obs_dim, device=device)})
            z_goal = z0
            for _ in range(cfg.goal_steps):
                z_goal = model.next(z_goal, torch.rand(1, cfg.action_dim, device=device) * 2 - 1)

            def reward(z: torch.Tensor, a: torch.Tensor, goal: torch.Tensor = z_goal) -> torch.Tensor:
                return -(z - goal).pow(2).sum(-1, keepdim=True)

            planner = Planner(model, td_value(reward, discount), cfg.planner)
            for controller in CONTROLLERS:
                progress.update(task, description=f"toy latent episodes: {controller}")
                z, total = z0, 0.0
                planner.reset()
                for _ in range(cfg.episode_steps):
                    if controller == "random":
                        a = torch.rand(1, cfg.action_dim, device=device) * 2 - 1
                    elif controller == "policy prior":
                        a = model.pi(z)[1].mean
                    else:
                        start = time.perf_counter()
                        a = planner.act_latent(z)
                        latencies.append((time.perf_counter() - start) * 1e3)
                    total += float(reward(z, a))
                    z = model.next(z, a)
                returns[controller] += total / cfg.episodes
                distance[controller] += float((z - z_goal).pow(2).sum()) / cfg.episodes
                progress.advance(task)

    table = Table(title=f"toy latent task: {cfg.episodes} episodes x {cfg.episode_steps} steps")
    for col in ("controller", "mean return", "final squared distance"):
        table.add_column(col, justify="right")
    for c in CONTROLLERS:
        table.add_row(c, f"{returns[c]:.3f}", f"{distance[c]:.4f}")
    console.print(table)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    console.print(f"mppi decision latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} decisions")

    path = save_checkpoint(Path(cfg.output_dir) / "toy_world_model.pt",
                           make_checkpoint(model, contract, extra={"discount": discount}))
    reloaded = load_checkpoint(path, expect_contract=contract).build_model(device).eval()
    identical = _same_plan(model, reloaded, cfg, discount, device)
    console.print(f"checkpoint {path}: reload {'reproduces the plan bit-for-bit' if identical else 'DIFFERS'}")
    return ToyResult(returns, distance, p50, p99, path, identical)


def _same_plan(a: WorldModel, b: WorldModel, cfg: ToyConfig, discount: float, device: torch.device) -> bool:
    obs = {"state": torch.randn(3, cfg.obs_dim, device=device)}
    actions = []
    for model in (a, b):
        torch.manual_seed(cfg.seed + 1)
        value = td_value(lambda z, act: -z.pow(2).sum(-1, keepdim=True), discount)
        actions.append(Planner(model, value, cfg.planner).act(obs))
    return torch.equal(actions[0], actions[1])
