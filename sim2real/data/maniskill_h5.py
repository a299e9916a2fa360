"""ManiSkill trajectory files (an .h5 plus the .json beside it) -> canonical Episodes.

What ManiSkill's RecordEpisode wrapper writes (mani_skill/utils/wrappers/record.py):

    x.h5    traj_<id>/obs/...       T+1 observations (a dict tree for obs_mode state_dict/rgb,
                                    e.g. obs/agent/qpos, obs/extra/tcp_pose,
                                    obs/sensor_data/base_camera/rgb [T+1, H, W, 3] uint8)
            traj_<id>/actions       [T, A] float32, normalised to [-1, 1]
            traj_<id>/success       [T] bool, after each action (optional)
            traj_<id>/rewards       [T] (optional), terminated, truncated, env_states/...
    x.json  env_info {env_id, env_kwargs {obs_mode, control_mode, ...}, max_episode_steps},
            episodes [{episode_id, episode_seed, reset_kwargs, control_mode, elapsed_steps, success}]

Features come from the key map (`ManiSkillOptions.features`, paths inside traj_<id>). Actions
are used as they are, so the trajectories' control mode must be the contract's: replay them
with ManiSkill's replay_trajectory tool (`-c pd_ee_delta_pos`) to convert first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from sim2real.contract import Contract
from sim2real.data.actions import clip_actions
from sim2real.data.config import ManiSkillOptions
from sim2real.data.episode import DatasetError, Episode
from sim2real.data.keymap import assemble, check_finite, feature_parts, image_frames

# ManiSkill env ids -> our tasks (ManiSkill's own tasks and the registered Sim2Real variants).
ENV_TASKS = {
    "PushCube-v1": "push_cube", "Sim2RealPushCube-v1": "push_cube",
    "PickCube-v1": "pick_cube", "Sim2RealPickCube-v1": "pick_cube",
    "StackCube-v1": "stack_cube", "Sim2RealStackCube-v1": "stack_cube",
    "Sim2RealOpenDrawer-v1": "open_drawer",
}


def open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({path.stat().st_size} bytes; truncated or "
                           f"corrupt?): {err}") from err


def read_array(group: h5py.Group, key: str, where: str) -> np.ndarray:
    """group[key] as numpy, with errors naming the file and the path."""
    if key not in group:
        raise DatasetError(f"{where}/{key} is missing")
    node = group[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{where}/{key} is a group, expected a dataset")
    try:
        return node[()]
    except OSError as err:  # a damaged chunk surfaces only when read
        raise DatasetError(f"{where}/{key}: unreadable data (corrupt file?): {err}") from err


def trajectory_json(path: Path, options: ManiSkillOptions) -> tuple[Path, dict[str, Any]]:
    json_path = Path(options.json_path) if options.json_path else path.with_suffix(".json")
    try:
        data = json.loads(json_path.read_text())
    except FileNotFoundError as exc:
        raise DatasetError(f"{json_path}: the trajectory JSON of {path} is missing (ManiSkill writes it beside the "
                           f".h5; set maniskill.json_path if it lives elsewhere)") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{json_path}: unreadable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise DatasetError(f"{json_path}: expected an object with an 'episodes' list")
    return json_path, data


def maniskill_task(path: str | os.PathLike, options: ManiSkillOptions) -> str | None:
    """Our task name for the trajectories' env_id, when it is one of ours."""
    _, data = trajectory_json(Path(path), options)
    env_id = (data.get("env_info") or {}).get("env_id")
    return ENV_TASKS.get(env_id) if isinstance(env_id, str) else None


def read_maniskill(path: str | os.PathLike, contract: Contract,
                   options: ManiSkillOptions) -> tuple[list[Episode], dict[str, Any]]:
    """Every trajectory listed in the JSON, in its order, and a summary for the metadata."""
    path = Path(path)
    json_path, data = trajectory_json(path, options)
    episodes = []
    with open_h5(path) as f:
        for i, info in enumerate(data["episodes"]):
            where = f"{json_path}: episodes[{i}]"
            if not isinstance(info, dict) or "episode_id" not in info:
                raise DatasetError(f"{where}: expected an object with 'episode_id'")
            mode = info.get("control_mode")
            if mode is not None and mode != contract.control_mode:
                raise DatasetError(f"{where}: control_mode {mode!r}, the contract's is {contract.control_mode!r} "
                                   f"(actions do not convert between control modes: replay the trajectories with "
                                   f"ManiSkill's replay_trajectory -c {contract.control_mode})")
            name = f"traj_{info['episode_id']}"
            if not isinstance(f.get(name), h5py.Group):
                raise DatasetError(f"{path}: group {name} is missing (listed in {where})")
            episodes.append(_episode(f[name], path, info, contract, options))
    clipped = sum(e.meta["clipped_actions"] for e in episodes)
    env_info = data.get("env_info") or {}
    return episodes, {"env_id": env_info.get("env_id"), "env_kwargs": env_info.get("env_kwargs"),
                      "clipped_actions": clipped, "options": asdict(options)}


def _episode(group: h5py.Group, path: Path, info: dict[str, Any], contract: Contract,
             options: ManiSkillOptions) -> Episode:
    where = f"{path}: {group.name.lstrip('/')}"
    actions_raw = read_array(group, "actions", where)
    if actions_raw.ndim != 2:
        raise DatasetError(f"{where}/actions has shape {list(actions_raw.shape)}, expected [T, A]")
    steps = actions_raw.shape[0]
    if steps < 1:
        raise DatasetError(f"{where}/actions is empty")
    if "elapsed_steps" in info and int(info["elapsed_steps"]) != steps:
        raise DatasetError(f"{where}/actions has {steps} steps, the JSON's elapsed_steps says {info['elapsed_steps']}")
    obs = {}
    for name, feature in contract.features.items():
        parts = feature_parts(options.features, name, "maniskill", where)
        if feature.kind == "rgb":
            if len(parts) != 1 or not parts[0].key:
                raise DatasetError(f"{where}: rgb takes one part naming an image dataset, got {parts}")
            frames = read_array(group, parts[0].key, where)
            if frames.shape[0] != steps + 1:
                raise DatasetError(f"{where}/{parts[0].key} has {frames.shape[0]} frames, expected {steps + 1} (T+1)")
            obs[name] = torch.from_numpy(image_frames(frames, feature.shape, options.camera_crop,  # type: ignore[arg-type]
                                                      f"{where}/{parts[0].key}"))
            continue
        values = assemble(name, parts, lambda key: read_array(group, key, where), steps + 1, feature.size, where)
        check_finite(values, f"{where}: feature {name!r}")
        obs[name] = torch.from_numpy(values.astype(np.float32).reshape(steps + 1, *feature.shape))
    raw = assemble("action", options.action, lambda key: read_array(group, key, where), steps, contract.action_dim,
                   where)
    check_finite(raw, f"{where}/actions")
    actions, clipped = clip_actions(raw)
    success = np.zeros(steps + 1, dtype=bool)
    if "success" in group:
        success[1:] = read_array(group, "success", where).reshape(steps).astype(bool)
    else:
        success[-1] = bool(info.get("success", False))
    rewards = None
    if "rewards" in group:
        rewards = torch.from_numpy(read_array(group, "rewards", where).reshape(steps).astype(np.float32))
    seed = info.get("episode_seed", (info.get("reset_kwargs") or {}).get("seed"))
    meta = {"source": str(path), "episode_id": info["episode_id"], "clipped_actions": clipped}
    return Episode(obs=obs, actions=torch.from_numpy(actions), success=torch.from_numpy(success), rewards=rewards,
                   seed=int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else None,
                   meta=meta)


