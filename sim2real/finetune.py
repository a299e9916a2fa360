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
the demonstrator's (`sim2real.selection`). The run keeps the best-scoring weights (the
pretrained ones when no update beats them) and stops after `patience` checks without a gain.
Held-out target demos recorded in a narrow part of the workspace cannot see what finetuning
undoes elsewhere, and there it did harm (push_cube, target region x1.5, demos from half of it:
wide-region success fell from 0.82 to 0.60-0.75 over 500 updates on every seed while the
held-out error kept falling). So the kept weights are then blended with the pretrained ones
(`interpolate`, default 0.5; robust finetuning in weight space, WiSE-FT): the benchmark numbers
are in README's transfer section.

A run writes `metrics.csv`, `eval.csv`, `select.csv` (the held-out checks), TensorBoard events (`tb/`) and `checkpoints/last.pt`
(atomic) under `out_dir`, checked for writes and free space before the first update
(`sim2real.preflight`); the checkpoint loads like a pretrained one
(`sim2real.inference.load_policy`) and records where it came from in `extra`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.agent import Agent, ImaginedBatch
from sim2real.buffer import EpisodeBuffer, SliceBatch, cat_batches, expert_buffer
from sim2real.checkpoint import Checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from sim2real.contract import Contract
from sim2real.data import read_episodes
from sim2real.device import resolve_device
from sim2real.evaluate import evaluate_training_agent, log_eval
from sim2real.finetune_config import AUTO_SIM_DEMOS, BEHAVIOURS, FinetuneConfig, resolve_domain
from sim2real.finetune_demos import file_sha256, load_demos, recorded_sim_demos, sim_buffer, split_holdout
from sim2real.imitation import CONFIGS, make_objective
from sim2real.inference import load_objective
from sim2real.planner import discount_from_episode_length
from sim2real.preflight import LOG_MARGIN_BYTES, check_output_dir, checkpoint_bytes, fmt_bytes
from sim2real.csv_log import CsvLog
from sim2real.pretrain import state_statistics
from sim2real.selection import Selection, snapshot
from sim2real.world_model import WorldModel

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
        contract = task_contract(task.name, task.obs_mode, task.mode, task.image_size, task.arm)
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
        ckpt.contract.check(task_contract(task.name, task.obs_mode, task.mode, task.image_size, task.arm),
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
        if not 0.0 <= cfg.interpolate <= 1.0:
            raise ValueError(f"interpolate={cfg.interpolate}: expected a weight in [0, 1] (1: the finetuned weights)")
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
        # The weights finetuning starts from (normalisation floored), for `interpolate`.
        self.initial = None if cfg.scratch or cfg.interpolate == 1.0 else snapshot(start.model, start.objective)

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

    def blend_with_start(self) -> None:
        """Replace the model's and objective's weights by `interpolate` x themselves +
        (1 - interpolate) x the starting ones (nothing with scratch=true or interpolate=1)."""
        if self.initial is None:
            return
        w = self.cfg.interpolate
        for name, module in (("model", self.start.model), ("objective", self.start.objective)):
            start = self.initial[name]
            module.load_state_dict({k: torch.lerp(start[k], v, w) if v.is_floating_point() else v
                                    for k, v in module.state_dict().items()})

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
    if tuner.initial is not None:
        tuner.blend_with_start()
        console.print(f"finetune: kept interpolate={cfg.interpolate:g} x the finetuned weights + "
                      f"{1 - cfg.interpolate:g} x the pretrained ones")
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
