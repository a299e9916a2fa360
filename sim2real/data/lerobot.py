"""LeRobotDataset v3 -> canonical Episodes, read with pyarrow and PyAV (not the lerobot package).

The v3 layout (codebase_version "v3.0"):

    meta/info.json                  fps, features {name: {dtype, shape, names, info}}, and the path
                                    templates data_path and video_path, e.g.
                                    "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" and
                                    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    meta/episodes/chunk-*/file-*.parquet
                                    one row per episode: episode_index, length, tasks,
                                    data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                                    videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}
    data/chunk-*/file-*.parquet     one row per frame, many episodes per file: episode_index,
                                    frame_index, timestamp (s from the episode start), index, task_index,
                                    observation.state, action, ... (list columns for vectors)
    videos/<key>/chunk-*/file-*.mp4 many episodes per file; episode e's frames lie between its
                                    from_timestamp and to_timestamp

Frame i holds the observation at timestamp i and the action taken after it. An episode of N
frames becomes T = N - 1 steps at the dataset's own rate; at another rate the frames are
sampled on the control grid by zero-order hold (sim2real/data/resample.py). Delta actions
cannot be resampled (a 30 fps delta is not a 20 Hz delta): such datasets must store absolute
joint targets (`action_kind: joint_targets`), which are converted to the control mode against
the sampled joint positions, as the rosbag reader converts commands.

Joint values belong to the contract's arm (configs/arm/<arm>.yaml): its joint count, action
scales and gripper mapping convert the targets, and sim2real/data/joint_units.py turns a
dataset's units and calibration (LeRobot's SO-100 sets: degrees) into the description's and
derives the features such sets lack (tcp_pose by forward kinematics, qvel by differences).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.robot.kinematics import KinematicChain
from sim2real.contract import Contract
from sim2real.data.actions import clip_actions, next_state_actions, targets_to_actions
from sim2real.data.config import ACTION_KINDS, LeRobotOptions, Part
from sim2real.data.episode import DatasetError, Episode
from sim2real.data.joint_units import DatasetArm, check_derive, joint_targets
from sim2real.data.keymap import assemble, feature_parts, image_frames, part_label
from sim2real.data.resample import NS, grid, hold_indices, period_ns, to_ns

INFO = Path("meta") / "info.json"
STATE_COLUMN = "observation.state"
CAMERA_DTYPES = ("video", "image")


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError("reading LeRobot datasets needs pyarrow (pip install pyarrow)") from exc
    return pq


def _read_table(path: Path, columns: list[str] | None = None) -> Any:
    pq = _pyarrow()
    import pyarrow as pa

    if not path.is_file():
        raise DatasetError(f"{path}: Parquet file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: unreadable Parquet file (truncated or corrupt?): {exc}") from exc
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DatasetError(f"{path}: column {missing[0]!r} is missing (columns: {', '.join(table.column_names)})")
        table = table.select(columns)
    return table


def _column(table: Any, name: str, path: Path) -> np.ndarray:
    """A column as numpy: [N] for scalars, [N, D] for fixed-length lists."""
    import pyarrow as pa

    column = table.column(name).combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
            pa.types.is_fixed_size_list(column.type):
        lengths = np.asarray(column.value_lengths() if not pa.types.is_fixed_size_list(column.type)
                             else [column.type.list_size] * len(column))
        if len(column) and (lengths != lengths[0]).any():
            raise DatasetError(f"{path}: column {name!r} has rows of different lengths {sorted(set(lengths.tolist()))}")
        values = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
        return values.reshape(len(column), -1)
    return np.asarray(column.to_numpy(zero_copy_only=False))


class LeRobotDataset:
    """The metadata of a LeRobotDataset v3 directory and its episodes' rows."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        info_path = self.root / INFO
        try:
            self.info = json.loads(info_path.read_text())
        except FileNotFoundError as exc:
            raise DatasetError(f"{self.root}: not a LeRobot dataset ({INFO} is missing)") from exc
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{info_path}: unreadable JSON ({exc})") from exc
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise DatasetError(f"{info_path}: codebase_version {version!r}; this reader reads LeRobotDataset v3 "
                               f"(convert older datasets with lerobot's convert_dataset_v21_to_v30)")
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise DatasetError(f"{info_path}: field {key!r} is missing")
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.episodes = self._episode_rows()
        self._tables: dict[Path, Any] = {}

    def _episode_rows(self) -> list[dict[str, Any]]:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{self.root}: no episode metadata (meta/episodes/chunk-*/file-*.parquet)")
        rows = []
        for path in files:
            table = _read_table(path)
            keep = [c for c in table.column_names if not c.startswith("stats/")]
            rows += table.select(keep).to_pylist()
        for row in rows:
            if "episode_index" not in row:
                raise DatasetError(f"{self.root}/meta/episodes: rows lack 'episode_index'")
        return sorted(rows, key=lambda r: r["episode_index"])

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]

    def file(self, template_key: str, row: dict[str, Any], prefix: str, **kw: str) -> Path:
        template = self.info.get(template_key)
        if template is None:
            raise DatasetError(f"{self.root / INFO}: field {template_key!r} is missing")
        try:
            return self.root / template.format(chunk_index=int(row[f"{prefix}/chunk_index"]),
                                               file_index=int(row[f"{prefix}/file_index"]), **kw)
        except KeyError as exc:
            raise DatasetError(f"{self.root}/meta/episodes: episode {row['episode_index']} lacks column {exc}") from exc

    def frames(self, row: dict[str, Any]) -> tuple[Path, Any]:
        """The data file of an episode and its rows (a pyarrow table), ordered by frame_index."""
        import pyarrow.compute as pc

        path = self.file("data_path", row, "data")
        if path not in self._tables:
            self._tables[path] = _read_table(path)
        table = self._tables[path]
        for column in ("episode_index", "frame_index", "timestamp"):
            if column not in table.column_names:
                raise DatasetError(f"{path}: column {column!r} is missing")
        rows = table.filter(pc.equal(table.column("episode_index"), row["episode_index"]))
        rows = rows.sort_by("frame_index")
        if rows.num_rows == 0:
            raise DatasetError(f"{path}: no rows of episode {row['episode_index']}")
        if "length" in row and rows.num_rows != int(row["length"]):
            raise DatasetError(f"{path}: episode {row['episode_index']} has {rows.num_rows} rows, meta/episodes says "
                               f"length {row['length']} (truncated data file?)")
        return path, rows


def default_features(contract: Contract, dataset: LeRobotDataset, derived: list[str]) -> dict[str, list[Part]]:
    """observation.state = the contract's state features in order, less the derived ones; rgb = the only camera."""
    features: dict[str, list[Part]] = {}
    offset = 0
    for name, feature in contract.features.items():
        if name in derived:
            continue
        if feature.kind == "rgb":
            cameras = dataset.camera_keys
            if len(cameras) != 1:
                raise DatasetError(f"{dataset.root}: the contract has rgb and the dataset has cameras {cameras}: set "
                                   f"lerobot.features.rgb to one of them")
            features[name] = [Part(key=cameras[0])]
        else:
            features[name] = [Part(key=STATE_COLUMN, start=offset, stop=offset + feature.size)]
            offset += feature.size
    return features


def decode_video(path: Path, times: np.ndarray, tolerance: float, shape: tuple[int, int, int],
                 crop: list[int], where: str) -> np.ndarray:
    """Frames of `path` at `times` (seconds in the video) as uint8 [len(times), *shape], with PyAV."""
    try:
        import av
    except ImportError as exc:
        raise DatasetError("reading LeRobot videos needs PyAV (pip install av)") from exc
    if not path.is_file():
        raise DatasetError(f"{path}: video file not found ({where})")
    lo, hi = float(times.min()), float(times.max())
    found_t: list[float] = []
    found: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if lo > 0:  # to the keyframe before the episode's first frame
                container.seek(int(lo / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.time is None or frame.time < lo - tolerance:
                    continue
                if frame.time > hi + tolerance:
                    break
                found_t.append(float(frame.time))
                found.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise DatasetError(f"{path}: undecodable video (truncated or corrupt?) ({where}): {exc}") from exc
    if not found:
        raise DatasetError(f"{path}: no frames between {lo:.3f} s and {hi:.3f} s ({where})")
    frame_t = np.asarray(found_t)
    nearest = np.abs(frame_t[None, :] - times[:, None]).argmin(axis=1)
    off = np.abs(frame_t[nearest] - times)
    if (off > tolerance).any():
        k = int(off.argmax())
        raise DatasetError(f"{path}: no frame within {tolerance:g} s of t={times[k]:.4f} s in the video ({where}); "
                           f"nearest at {frame_t[nearest[k]]:.4f} s")
    return image_frames(np.stack([found[i] for i in nearest]), shape, crop, f"{path} ({where})")


def decode_images(column: Any, path: Path, shape: tuple[int, int, int], crop: list[int], where: str) -> np.ndarray:
    """An `image` feature (structs of PNG/JPEG bytes) -> uint8 [N, *shape]."""
    import cv2

    frames = []
    for i, cell in enumerate(column.to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise DatasetError(f"{path}: image at row {i} cannot be decoded ({where})")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return image_frames(np.stack(frames), shape, crop, f"{path} ({where})")


def _next_state_actions(obs: dict[str, torch.Tensor], contract: Contract, arm: DatasetArm,
                        options: LeRobotOptions, where: str) -> np.ndarray:
    """Actions [T, A] from each next observed joint state (a set without an action column; as
    the rosbag reader's actions_from: next_state, sim2real/data/bag_actions.py)."""
    if "qpos" not in obs:
        raise DatasetError(f"{where}: action_kind next_state needs qpos in the contract")
    scales = arm.joints.scales
    model = arm.chain() if contract.control_mode == "pd_ee_delta_pos" else None
    closed, opened = sorted((scales.finger_closed, scales.finger_open))
    return next_state_actions(contract.control_mode, obs["qpos"].double().numpy(), arm.joints.dof, model, scales,
                              options.next_state_gain, (closed, opened))


def read_lerobot(root: str | os.PathLike, contract: Contract, options: LeRobotOptions,
                 model: KinematicChain | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """Every (selected) episode of a LeRobotDataset v3 directory, and a summary for the metadata.

    `model`: the arm's kinematics for pd_ee_delta_pos actions (default: the contract arm's description).
    """
    if options.action_kind not in ACTION_KINDS:
        raise DatasetError(f"lerobot option action_kind={options.action_kind!r}: expected one of {ACTION_KINDS}")
    check_derive(options.derive, contract, "lerobot")
    arm = DatasetArm.build(contract.arm, options.joint_units, options.gripper_units, options.joint_signs,
                           options.joint_offsets, model, "lerobot")
    dataset = LeRobotDataset(root)
    period = period_ns(contract.control_freq)
    if not 0.0 < options.next_state_gain <= 1.0:
        raise DatasetError(f"lerobot option next_state_gain={options.next_state_gain}: expected a share in (0, 1]")
    if options.action_kind == "task" and not math.isclose(dataset.fps, contract.control_freq, rel_tol=1e-6):
        raise DatasetError(f"{dataset.root / INFO}: fps {dataset.fps:g} differs from the control frequency "
                           f"{contract.control_freq:g} Hz and action_kind is 'task': delta actions cannot be "
                           f"resampled; store absolute joint targets and set action_kind: joint_targets")
    features = dict(options.features) or default_features(contract, dataset, list(options.derive))
    rows = dataset.episodes
    if options.episodes:
        known = {r["episode_index"] for r in rows}
        missing = [e for e in options.episodes if e not in known]
        if missing:
            raise DatasetError(f"{dataset.root}: episodes {missing} are not in meta/episodes")
        rows = [r for r in rows if r["episode_index"] in set(options.episodes)]
    episodes = [_episode(dataset, row, contract, features, options, period, arm) for row in rows]
    clipped = sum(e.meta["clipped_actions"] for e in episodes)
    values = sum(e.length for e in episodes) * contract.action_dim
    return episodes, {"codebase_version": dataset.info.get("codebase_version"), "fps": dataset.fps,
                      "robot_type": dataset.info.get("robot_type"), "clipped_actions": clipped,
                      "clipped_fraction": clipped / values if values else 0.0, "options": asdict(options)}


def _episode(dataset: LeRobotDataset, row: dict[str, Any], contract: Contract, features: dict[str, list[Part]],
             options: LeRobotOptions, period: int, arm: DatasetArm) -> Episode:
    path, table = dataset.frames(row)
    index = int(row["episode_index"])
    where = f"episode {index}"
    ts = to_ns(_column(table, "timestamp", path))
    n = len(ts)
    if n < 2:
        raise DatasetError(f"{path}: {where} has {n} frame; an episode needs at least 2")
    tol = round(options.timestamp_tolerance_s * NS)
    steps_ns = np.diff(ts)
    if (steps_ns <= 0).any():
        k = int(np.argmax(steps_ns <= 0))
        raise DatasetError(f"{path}: {where}: timestamps do not increase at t={ts[k + 1] / NS:.3f} s "
                           f"(frame {k + 1})")
    max_gap = round(options.max_gap_periods * period)
    if (steps_ns > max_gap + tol).any():
        k = int(np.argmax(steps_ns > max_gap + tol))
        raise DatasetError(f"{path}: {where}: gap of {steps_ns[k] / NS:.3f} s from t={ts[k] / NS:.3f} s to "
                           f"t={ts[k + 1] / NS:.3f} s (max_gap_periods {options.max_gap_periods:g} = "
                           f"{max_gap / NS:.3f} s)")
    steps = int((ts[-1] - ts[0] + tol) // period)
    if steps < 1:
        raise DatasetError(f"{path}: {where} is shorter than one control period")
    idx = hold_indices(ts, grid(int(ts[0]), steps, period), tol)

    def get(key: str) -> np.ndarray:
        if key not in table.column_names:
            raise DatasetError(f"{path}: column {key!r} is missing ({where}; columns: {', '.join(table.column_names)})")
        return _column(table, key, path)

    def checked(name: str, values: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            raise DatasetError(f"{path}: {where}: {name} is NaN/inf at t={ts[k] / NS:.3f} s (frame {k})")
        return values

    # Per-frame state features in the description's units; the derived ones need qpos first.
    values: dict[str, np.ndarray] = {}
    for name, feature in contract.features.items():
        if feature.kind == "rgb" or name in options.derive:
            continue
        parts = feature_parts(features, name, "lerobot", str(dataset.root))
        raw = checked(name, assemble(name, parts, get, n, feature.size, f"{path}: {where}"))
        values[name] = (arm.joint_map.positions(raw) if name == "qpos" else
                        arm.joint_map.velocities(raw) if name == "qvel" else raw)
    for name in options.derive:
        values[name] = arm.derive(name, values["qpos"], ts / NS, f"{path}: {where}")
    obs: dict[str, torch.Tensor] = {}
    for name, feature in contract.features.items():
        if feature.kind == "rgb":
            parts = feature_parts(features, name, "lerobot", str(dataset.root))
            obs[name] = torch.from_numpy(_camera(dataset, row, table, path, parts, idx, ts[idx],
                                                 feature.shape, options, where))
        else:
            obs[name] = torch.from_numpy(values[name][idx].astype(np.float32).reshape(len(idx), *feature.shape))

    act_idx = idx[:-1]
    if options.action_kind == "next_state":
        raw = _next_state_actions(obs, contract, arm, options, f"{path}: {where}")
    elif options.action_kind == "task":
        raw = checked("action", assemble("action", options.action, get, n, contract.action_dim, f"{path}: {where}"))
        raw = raw[act_idx]
    else:
        if "qpos" not in obs:
            raise DatasetError(f"{path}: action_kind joint_targets needs qpos in the contract")
        stored = checked("action", assemble("action", options.action, get, n, None, f"{path}: {where}"))
        names = dataset.features.get(options.action[0].key, {}).get("names") if options.action else None
        source = " + ".join(part_label(p) for p in options.action)
        targets = joint_targets(stored, arm.joints, arm.joint_map, f"{path}: {where}", source, names)[act_idx]
        dof = arm.joints.dof
        model = arm.chain() if contract.control_mode == "pd_ee_delta_pos" else None
        raw = targets_to_actions(contract.control_mode, obs["qpos"][:-1].double().numpy(), targets[:, :dof],
                                 targets[:, dof:].mean(axis=1), model, arm.joints.scales)
    actions, clipped = clip_actions(raw)
    success = np.zeros(len(idx), dtype=bool)
    if options.success_key:
        flags = get(options.success_key).reshape(n, -1)[:, 0].astype(bool)
        # next.success of frame i says whether the action after frame i solved the task.
        success[1:] = [flags[i - 1] if i >= 1 else False for i in idx[1:]]
    else:
        success[-1] = options.assume_success
    tasks = row.get("tasks")
    meta = {"source": str(dataset.root), "episode_index": index, "clipped_actions": clipped}
    if tasks:
        meta["instruction"] = list(tasks) if isinstance(tasks, (list, tuple)) else str(tasks)
    return Episode(obs=obs, actions=torch.from_numpy(actions), success=torch.from_numpy(success), meta=meta)


def _camera(dataset: LeRobotDataset, row: dict[str, Any], table: Any, path: Path, parts: list[Part],
            frames: np.ndarray, times_ns: np.ndarray, shape: tuple[int, ...], options: LeRobotOptions,
            where: str) -> np.ndarray:
    """The camera frames of rows `frames` (at episode times `times_ns`)."""
    if len(parts) != 1 or not parts[0].key:
        raise DatasetError(f"{dataset.root}: rgb takes one part naming a camera feature, got {parts}")
    key = parts[0].key
    kind = dataset.features.get(key, {}).get("dtype")
    if kind not in CAMERA_DTYPES:
        raise DatasetError(f"{dataset.root / INFO}: feature {key!r} is {kind!r}, expected a camera "
                           f"({' or '.join(CAMERA_DTYPES)}; cameras: {dataset.camera_keys})")
    image_shape = (shape[0], shape[1], shape[2])
    if kind == "image":
        if key not in table.column_names:
            raise DatasetError(f"{path}: column {key!r} is missing ({where})")
        return decode_images(table.column(key).take(frames), path, image_shape, options.camera_crop, where)
    video = dataset.file("video_path", row, f"videos/{key}", video_key=key)
    start = float(row.get(f"videos/{key}/from_timestamp", 0.0))
    return decode_video(video, start + times_ns / NS, options.timestamp_tolerance_s, image_shape,
                        options.camera_crop, f"{where}, {key}")
