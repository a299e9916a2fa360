"""robomimic HDF5 datasets -> canonical Episodes.

The layout robomimic's tools read and write:

    data                       attrs: env_args (JSON: env_name, type, env_kwargs {control_freq, ...}),
                               total
    data/demo_<i>/obs/<key>    [T, ...] observations before each action
    data/demo_<i>/next_obs/<key>
                               [T, ...] observations after each action
    data/demo_<i>/actions      [T, A]; rewards, dones [T]; states [T, S]
    mask/<split>               demo names of a split (not used here)

An episode takes obs/<key> for its first T observations and next_obs/<key>[-1] for the final one
(without next_obs the last action, which has no observation after it, is dropped). Feature keys
name `obs/<key>`; robosuite's frames and conventions differ from the tasks' (quaternions x, y, z,
w; its own world origin), so the key map is explicit (configs/dataset/robomimic_lift.yaml).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from sim2real.contract import Contract
from sim2real.data.actions import clip_actions
from sim2real.data.config import RobomimicOptions
from sim2real.data.episode import DatasetError, Episode
from sim2real.data.keymap import assemble, check_finite, feature_parts, image_frames
from sim2real.data.maniskill_h5 import open_h5, read_array

OBS_PREFIX = "obs/"


def env_args(f: h5py.File, path: Path) -> dict[str, Any]:
    """The `env_args` attribute of `data`, parsed ({} when absent)."""
    raw = f["data"].attrs.get("env_args")
    if raw is None:
        return {}
    try:
        value = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError as exc:
        raise DatasetError(f"{path}: data attribute env_args is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"{path}: data attribute env_args holds a JSON {type(value).__name__}, expected an object")
    return value


def demo_names(f: h5py.File) -> list[str]:
    """demo_<i> groups of `data`, by i."""
    names = [n for n in f["data"] if n.startswith("demo_") and n[5:].isdigit()]
    return sorted(names, key=lambda n: int(n[5:]))


def read_robomimic(path: str | os.PathLike, contract: Contract,
                   options: RobomimicOptions) -> tuple[list[Episode], dict[str, Any]]:
    """Every demo of a robomimic file, in order, and a summary for the metadata."""
    path = Path(path)
    if not options.features:
        raise DatasetError(f"{path}: robomimic.features is empty: robomimic keys do not name the tasks' features; "
                           f"give the key map (e.g. configs/dataset/robomimic_lift.yaml)")
    with open_h5(path) as f:
        if not isinstance(f.get("data"), h5py.Group):
            raise DatasetError(f"{path}: group 'data' is missing (not a robomimic dataset)")
        args = env_args(f, path)
        freq = (args.get("env_kwargs") or {}).get("control_freq")
        if isinstance(freq, (int, float)) and not math.isclose(float(freq), contract.control_freq, rel_tol=1e-6):
            raise DatasetError(f"{path}: env_args control_freq {freq:g} Hz, the contract's is "
                               f"{contract.control_freq:g} Hz")
        names = demo_names(f)
        if not names:
            raise DatasetError(f"{path}: data holds no demo_<i> groups")
        episodes = [_episode(f["data"][n], path, contract, options) for n in names]
    clipped = sum(e.meta["clipped_actions"] for e in episodes)
    return episodes, {"env_name": args.get("env_name"), "env_type": args.get("type"), "clipped_actions": clipped,
                      "options": asdict(options)}


def _episode(group: h5py.Group, path: Path, contract: Contract, options: RobomimicOptions) -> Episode:
    where = f"{path}: {group.name.lstrip('/')}"
    raw_actions = read_array(group, "actions", where)
    if raw_actions.ndim != 2 or raw_actions.shape[0] < 1:
        raise DatasetError(f"{where}/actions has shape {list(raw_actions.shape)}, expected [T, A] with T >= 1")
    has_next = isinstance(group.get("next_obs"), h5py.Group)
    steps = raw_actions.shape[0] if has_next else raw_actions.shape[0] - 1
    if steps < 1:
        raise DatasetError(f"{where}: one action and no next_obs: no complete step")

    def observations(key: str) -> np.ndarray:
        # obs/<k> holds the T observations before each action; next_obs/<k>[-1] is the final one.
        if not key.startswith(OBS_PREFIX):
            raise DatasetError(f"{where}: feature key {key!r} must name an observation ({OBS_PREFIX}<key>)")
        before = read_array(group, key, where)
        if before.shape[0] != raw_actions.shape[0]:
            raise DatasetError(f"{where}/{key} has {before.shape[0]} steps, actions has {raw_actions.shape[0]}")
        if not has_next:
            return before
        after = read_array(group, "next_" + key, where)
        return np.concatenate([before, after[-1:]], axis=0)

    obs = {}
    for name, feature in contract.features.items():
        parts = feature_parts(options.features, name, "robomimic", where)
        if feature.kind == "rgb":
            if len(parts) != 1 or not parts[0].key:
                raise DatasetError(f"{where}: rgb takes one part naming an image key, got {parts}")
            obs[name] = torch.from_numpy(image_frames(observations(parts[0].key), feature.shape,  # type: ignore[arg-type]
                                                      options.camera_crop, f"{where}/{parts[0].key}"))
            continue
        values = assemble(name, parts, observations, steps + 1, feature.size, where)
        check_finite(values, f"{where}: feature {name!r}")
        obs[name] = torch.from_numpy(values.astype(np.float32).reshape(steps + 1, *feature.shape))

    raw = assemble("action", options.action, lambda key: read_array(group, key, where)[:steps], steps,
                   contract.action_dim, where)
    check_finite(raw, f"{where}/actions")
    actions, clipped = clip_actions(raw)
    success = np.zeros(steps + 1, dtype=bool)
    if options.success_key:
        success[1:] = read_array(group, options.success_key, where).reshape(-1)[:steps] > 0.5
    else:
        success[-1] = True
    rewards = None
    if "rewards" in group:
        rewards = torch.from_numpy(read_array(group, "rewards", where).reshape(-1)[:steps].astype(np.float32))
    meta = {"source": str(path), "demo": group.name.rsplit("/", 1)[-1], "clipped_actions": clipped}
    return Episode(obs=obs, actions=torch.from_numpy(actions), success=torch.from_numpy(success), rewards=rewards,
                   meta=meta)
