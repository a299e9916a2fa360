"""Checks a run makes before it starts: its output directory exists, takes writes, and has
room for what the run will write.

A run that cannot write its checkpoints must stop before it collects demos, builds
environments or trains, not at its first checkpoint an hour later. The room needed is an
estimate from the run's settings (the sizes of the model, objective and optimiser state,
how many checkpoints it keeps, the online buffer when it is saved with them) plus a fixed
margin for logs, TensorBoard events and videos.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

# metrics.csv, eval.csv, TensorBoard events and evaluation videos of a typical run.
LOG_MARGIN_BYTES = 64 * 2**20
# Per checkpoint beyond the tensors: the zip container, RNG states, history, provenance.
CHECKPOINT_OVERHEAD_BYTES = 256 * 2**10


class OutputDirError(RuntimeError):
    """The output directory cannot be created, is not writable, or lacks the space a run needs."""


def fmt_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def check_output_dir(path: str | os.PathLike, need_bytes: int, what: str) -> Path:
    """Create `path` if needed, prove it takes a write, and check its free space.

    The write test writes, fsyncs and removes a small probe file: permission bits alone say
    nothing for root, read-only mounts or full disks.

    Args:
        path: the output directory (`out_dir`).
        need_bytes: what the run is expected to write there.
        what: what `need_bytes` is made of and the settings that drive it, for the message.

    Raises:
        OutputDirError: naming the directory, and for space the free and needed bytes.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"out_dir={path}: cannot create the output directory: "
                             f"{type(err).__name__}: {err}") from err
    probe = None
    try:
        fd, probe = tempfile.mkstemp(prefix=".preflight-", suffix=".tmp", dir=path)
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputDirError(f"out_dir={path}: the output directory is not writable: "
                             f"{type(err).__name__}: {err}") from err
    finally:
        if probe is not None:
            Path(probe).unlink(missing_ok=True)
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise OutputDirError(f"out_dir={path}: {fmt_bytes(free)} ({free} bytes) free, the run needs about "
                             f"{fmt_bytes(need_bytes)} ({need_bytes} bytes): {what}. Free space, choose another "
                             f"out_dir, or change the settings named")
    return path


def checkpoint_bytes(*modules: nn.Module) -> int:
    """Size of a checkpoint of `modules`: their state (weights and buffers) and the two Adam
    moments of every trainable parameter, plus the fixed overhead."""
    total = CHECKPOINT_OVERHEAD_BYTES
    for module in modules:
        total += sum(t.numel() * t.element_size() for t in module.state_dict().values())
        total += sum(2 * p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return total


def buffer_bytes(contract: Any, transitions: int, episode_length: int) -> int:
    """Size of a saved online buffer of `transitions` steps of `contract`'s features (uint8
    images, float32 state; T+1 observations per episode of T steps)."""
    obs = sum(f.size * (1 if f.kind == "rgb" else 4) for f in contract.features.values())
    per_step = obs * (1 + 1 / max(episode_length, 1)) + 4 * contract.action_dim + 4 + 1
    return int(transitions * per_step)


def pretrain_output_bytes(cfg: Any) -> tuple[int, str]:
    """What a pretraining run (`sim2real.pretrain_config.PretrainConfig`) writes to `out_dir`: bytes
    and a description naming the settings behind them.

    Every checkpoint is kept (`checkpoints/step_<n>.pt`) besides `last.pt`, and a save
    needs a temp file beside its target. The model and objective are built on the meta
    device: shapes only, no memory, no random numbers.
    """
    from sim2real.config import to_dataclass
    from sim2real.imitation import CONFIGS, make_objective
    from sim2real.world_model import WorldModel
    from tasks.spec import task_contract, task_spec

    task = cfg.task
    contract = task_contract(task.name, task.obs_mode, task.mode, task.image_size, task.arm)
    objective_cfg = to_dataclass(cfg.objective, CONFIGS[cfg.objective.name])
    if hasattr(objective_cfg, "target_seed"):
        # An unset seed is drawn with .item(), which meta tensors refuse; it changes no size.
        objective_cfg = dataclasses.replace(objective_cfg, target_seed=0)
    with torch.device("meta"):
        model = WorldModel(cfg.model, contract.model_obs_shapes(), contract.action_dim)
        objective = make_objective(objective_cfg, model)
    ckpt = checkpoint_bytes(model, objective)
    every = max(cfg.checkpoint_every, 1)
    steps = list(range(every, cfg.steps + 1, every))
    if not steps or steps[-1] != cfg.steps:
        steps.append(cfg.steps)
    episode_length = task.episode_length or task_spec(task.name).episode_length

    def saved_buffer(step: int) -> int:
        return buffer_bytes(contract, min(step, cfg.buffer_size), episode_length) if cfg.save_buffer else 0

    largest = ckpt + saved_buffer(cfg.steps)
    need = sum(ckpt + saved_buffer(s) for s in steps) + 2 * largest + LOG_MARGIN_BYTES
    what = (f"{len(steps)} checkpoints/step_<n>.pt, last.pt and a temp file while saving, about {fmt_bytes(ckpt)} "
            f"each (model={cfg.model.name}, objective={objective.name}, steps={cfg.steps}, "
            f"checkpoint_every={cfg.checkpoint_every})")
    if cfg.save_buffer:
        what += (f", each with the online buffer, up to {fmt_bytes(saved_buffer(cfg.steps))} "
                 f"(save_buffer=true, buffer_size={cfg.buffer_size})")
    return need, what + f", and {fmt_bytes(LOG_MARGIN_BYTES)} for logs and videos"
