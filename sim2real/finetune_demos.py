"""What stage 2 trains on: the target demos (any supported format, checked against the model's
contract and task), the held-out split that chooses the weights kept, the sim demos a
checkpoint records as finetuning's anchor, and a pretraining's saved online buffer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.buffer import EpisodeBuffer
from sim2real.contract import Contract
from sim2real.data import DatasetConfig, DatasetError, Episode, detect_format, read_episodes


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_demos(sources: Any, contract: Contract, dataset: DatasetConfig, num_demos: int, horizon: int,
               say: Callable[[str], None], task: str | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """Every episode of the demo sources (checked against `contract`), and their provenance.

    Tasks can share a contract (push_cube and pick_cube do), so a source that records a
    known task must also record `task` when one is given. Episodes shorter than the
    horizon hold no training slice and are skipped with a note.
    """
    from tasks.spec import TASKS

    paths = [sources] if isinstance(sources, (str, Path)) else list(sources or [])
    if not paths:
        raise ValueError("demos=...: required (a demo file or directory, or a list of them)")
    episodes: list[Episode] = []
    files = []
    for path in paths:
        fmt = dataset.format if dataset.format != "auto" else detect_format(path)
        metadata, found = read_episodes(path, fmt, dataset, contract=contract)
        if task in TASKS and metadata.task in TASKS and metadata.task != task:
            raise DatasetError(f"{path}: demos of task {metadata.task!r}, the model is for task {task!r}")
        files.append({"path": str(Path(path).resolve()), "format": fmt, "episodes": len(found),
                      "task": metadata.task, "domain": metadata.domain, "backend": metadata.backend})
        episodes += found
    if num_demos > 0:
        episodes = episodes[:num_demos]
    usable = [e for e in episodes if e.length >= horizon]
    if len(usable) < len(episodes):
        say(f"skipping {len(episodes) - len(usable)} demo episodes shorter than the horizon H={horizon}")
    if not usable:
        raise ValueError(f"demos {paths}: no episode has the {horizon} steps a training slice needs")
    formats = sorted({f["format"] for f in files})
    info = {"paths": [f["path"] for f in files], "format": formats[0] if len(formats) == 1 else formats,
            "episodes": len(usable), "transitions": sum(e.length for e in usable), "files": files}
    return usable, info


def split_holdout(episodes: list[Episode], fraction: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """(training episodes, held-out episodes): round(fraction * n) episodes, at least one when
    fraction > 0 and n >= 2, drawn with `seed`; the two never share an episode."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout={fraction}: expected a fraction in [0, 1)")
    n = len(episodes)
    k = min(max(round(fraction * n), 1), n - 1) if fraction > 0 and n >= 2 else 0
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    return [e for i, e in enumerate(episodes) if i not in held], [e for i, e in enumerate(episodes) if i in held]


def recorded_sim_demos(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sim demos a checkpoint records ({"path", "episodes"}): a pretraining's own demos, or
    those a finetuned checkpoint was anchored with (`demos.sim_demos`); None when neither."""
    demos = extra.get("demos") or {}
    if "path" in demos:
        return demos
    anchor = demos.get("sim_demos")
    return anchor if isinstance(anchor, Mapping) and "path" in anchor else None


def sim_buffer(state: dict[str, Any], horizon: int, device: torch.device) -> EpisodeBuffer:
    """The pretraining online buffer from its state_dict, re-sliced for `horizon`."""
    saved = EpisodeBuffer(int(state["capacity"]), int(state["horizon"]), max_episodes=int(state["max_episodes"]))
    saved.load_state_dict(state)
    buffer = EpisodeBuffer(saved.capacity, horizon, device=device, max_episodes=saved.max_episodes)
    for episode, terminated in zip(saved.episodes(), state["terminated"].tolist()):
        if episode.length >= horizon:
            buffer.add(episode, terminated=terminated)
    if buffer.num_episodes == 0:
        raise ValueError(f"behaviour=sim_buffer: the saved online buffer has no episode of H={horizon} steps")
    return buffer
