"""LeRobot SO-100 datasets (joints in degrees, 30 fps absolute targets) -> SO-100 Episodes, on tiny
synthetic v3 datasets written here (no camera: tests/test_lerobot_reader.py covers video)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sim2real.data import DatasetError, read_episodes
from sim2real.data.formats import dataset_config
from tasks.spec import task_contract

NAMES = ["main_shoulder_pan", "main_shoulder_lift", "main_elbow_flex", "main_wrist_flex", "main_wrist_roll",
         "main_gripper"]
# Near configs/arm/so100.yaml's rest pose, in degrees; the jaw half open.
REST_DEG = np.array([0.0, -80.0, 80.0, 40.0, 0.0, 20.0])
FPS = 30
JOINT_DELTA = 0.05  # configs/arm/so100.yaml control.joint_delta
needs_urdf = pytest.mark.skipif(importlib.util.find_spec("mani_skill") is None,
                                reason="the SO-100 URDF ships with mani_skill")


def write_so100(root: Path, lengths: list[int], width: int = 6, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """A LeRobot v3 SO-100 dataset in degrees: state, absolute joint targets and an environment state
    (cube pose 7 + goal 3) per frame, every episode in one data file."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("observation.state", "action", "observation.environment_state",
                                              "timestamp", "frame_index", "episode_index", "index", "task_index")}
    truth: dict[str, list[np.ndarray]] = {"state": [], "action": [], "env": []}
    episodes = []
    for e, n in enumerate(lengths):
        state = (np.resize(REST_DEG, width) + rng.normal(scale=3.0, size=(n, width))).astype(np.float32)
        action = (state + rng.uniform(-2.0, 2.0, size=(n, width))).astype(np.float32)  # within 0.7 of a step
        env = rng.normal(scale=0.05, size=(n, 10)).astype(np.float32)
        for key, values in (("state", state), ("action", action), ("env", env)):
            truth[key].append(values)
        for i in range(n):
            rows["observation.state"].append(state[i].tolist())
            rows["action"].append(action[i].tolist())
            rows["observation.environment_state"].append(env[i].tolist())
            rows["timestamp"].append(np.float32(i / FPS))
            rows["frame_index"].append(i)
            rows["episode_index"].append(e)
            rows["index"].append(len(rows["index"]))
            rows["task_index"].append(0)
        episodes.append({"episode_index": e, "tasks": ["pick the cube"], "length": n, "data/chunk_index": 0,
                         "data/file_index": 0})
    names = (NAMES + ["main_extra"])[:width]
    info = {"codebase_version": "v3.0", "robot_type": "so100", "fps": FPS, "total_episodes": len(lengths),
            "features": {"observation.state": {"dtype": "float32", "shape": [width], "names": names},
                         "action": {"dtype": "float32", "shape": [width], "names": names},
                         "observation.environment_state": {"dtype": "float32", "shape": [10], "names": None}},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    vector = pa.list_(pa.float32())
    types = {"observation.state": vector, "action": vector, "observation.environment_state": vector,
             "timestamp": pa.float32()}
    pq.write_table(pa.table({k: pa.array(v, type=types.get(k, pa.int64())) for k, v in rows.items()}),
                   root / "data" / "chunk-000" / "file-000.parquet")
    return truth


def held_rows(steps: int) -> list[int]:
    """30 fps frames held at the 20 Hz control grid: the latest frame at or before k x 50 ms."""
    return [int(np.floor(k * FPS / 20 + 1e-9)) for k in range(steps + 1)]


def jaw_commands(targets_rad: np.ndarray) -> np.ndarray:
    from sim2real.robot.description import Gripper

    # configs/arm/so100.yaml's jaw, without its URDF: open 1.1, closed -1.1.
    jaw = Gripper("revolute_jaw", ("gripper",), open=1.1, closed=-1.1)
    return np.array([jaw.command([t]) for t in targets_rad])


# The preset without what needs the URDF (forward kinematics): the sim-side fields as constants.
NO_FK = ["lerobot.derive=[qvel]", "lerobot.features.tcp_pose=[{value: [0, 0, 0, 1, 0, 0, 0]}]"]


def test_degrees_become_radians_and_joint_delta_actions(tmp_path: Path):
    truth = write_so100(tmp_path / "ds", [10, 7])
    metadata, episodes = read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK))
    assert metadata.contract.arm == "so100" and metadata.robot == "so100"
    assert metadata.contract == task_contract("pick_cube", "state", "pd_joint_delta_pos", arm="so100")
    assert [e.length for e in episodes] == [6, 4]  # 0.3 s and 0.2 s of 30 fps frames at 20 Hz
    for e, ep in enumerate(episodes):
        rows = held_rows(ep.length)
        state = np.deg2rad(truth["state"][e].astype(np.float64))
        assert ep.obs["qpos"].shape == (ep.length + 1, 6) and ep.actions.shape == (ep.length, 6)
        np.testing.assert_allclose(ep.obs["qpos"].numpy(), state[rows], atol=1e-6)
        assert torch.equal(ep.obs["obj_pose"], torch.from_numpy(truth["env"][e][rows, :7]))
        assert torch.equal(ep.obs["goal_pos"], torch.from_numpy(truth["env"][e][rows, 7:]))
        times = (np.arange(len(state)) / FPS).astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(ep.obs["qvel"].numpy(), np.gradient(state, times, axis=0)[rows], rtol=1e-4,
                                   atol=1e-4)
        targets = np.deg2rad(truth["action"][e].astype(np.float64))[rows[:-1]]
        qpos = ep.obs["qpos"][:-1].double().numpy()
        arm = np.clip((targets[:, :5] - qpos[:, :5]) / JOINT_DELTA, -1, 1)
        np.testing.assert_allclose(ep.actions[:, :5].numpy(), arm, atol=1e-5)
        np.testing.assert_allclose(ep.actions[:, 5].numpy(), jaw_commands(targets[:, 5]), atol=1e-6)


@needs_urdf
def test_preset_derives_tcp_pose_in_the_task_frame(tmp_path: Path):
    from sim2real.robot.description import load_arm

    write_so100(tmp_path / "ds", [8])
    _, (ep,) = read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100"))
    arm = load_arm("so100")
    for q, tcp in zip(ep.obs["qpos"].double().numpy(), ep.obs["tcp_pose"].double().numpy()):
        pos, quat = arm.fk(q[:5])
        np.testing.assert_allclose(tcp[:3], pos + np.array([0.0, 0.265, 0.0]), atol=1e-6)
        np.testing.assert_allclose(abs(np.dot(tcp[3:], quat)), 1.0, atol=1e-6)  # same rotation, either sign


def test_percent_gripper_signs_and_offsets(tmp_path: Path):
    truth = write_so100(tmp_path / "ds", [7])
    signs, offsets = [1, -1, 1, 1, -1, 1], [0.1, 0.0, -0.2, 0.0, 0.0, 0.0]
    config = dataset_config("lerobot_so100", NO_FK + ["lerobot.gripper_units=percent", f"lerobot.joint_signs={signs}",
                                                      f"lerobot.joint_offsets={offsets}"])
    _, (ep,) = read_episodes(tmp_path / "ds", config=config)
    rows = held_rows(ep.length)
    raw = truth["state"][0].astype(np.float64)[rows]
    expected = np.deg2rad(raw) * signs + offsets
    expected[:, 5] = -1.1 + raw[:, 5] / 100 * 2.2  # 0-100 onto closed..open (offset 0 there)
    np.testing.assert_allclose(ep.obs["qpos"].numpy(), expected, atol=1e-6)
    jaw_pct = truth["action"][0].astype(np.float64)[rows[:-1], 5]
    np.testing.assert_allclose(ep.actions[:, 5].numpy(), np.clip(jaw_pct / 50 - 1, -1, 1), atol=1e-5)


def test_vectors_of_another_arm_are_refused(tmp_path: Path):
    write_so100(tmp_path / "ds", [6], width=7)
    data = r"data/chunk-000/file-000\.parquet: episode 0"
    with pytest.raises(DatasetError, match=data + r": feature 'qpos' gets 7 values per step from observation\.state; "
                                                  r"the contract expects 6"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK))
    state_ok = ["lerobot.features.qpos=[{key: observation.state, stop: 6}]"]
    with pytest.raises(DatasetError, match=data + r": action_kind joint_targets expects 6 values per frame for arm "
                                                  r"'so100' \(5 arm joints shoulder_pan, .*; the action parts "
                                                  r"\(action\) give 7 \(the dataset names them \['main_shoulder_pan'"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK + state_ok))


def test_arm_and_option_mistakes_are_named(tmp_path: Path):
    write_so100(tmp_path / "ds", [6])
    # The Panda's contract (the default arm) wants 9 joints.
    with pytest.raises(DatasetError, match=r"feature 'qpos' gets 6 values per step from observation\.state; the "
                                           r"contract expects 9"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK + ["arm=panda"]))
    with pytest.raises(DatasetError, match=r"contract mismatch: .*arm 'so100' in dataset, 'panda' in checkpoint"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK),
                      contract=task_contract("pick_cube", "state", "pd_joint_delta_pos"))
    with pytest.raises(DatasetError, match=r"lerobot option joint_units='grads': expected one of radians, degrees"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", NO_FK + ["lerobot.joint_units=grads"]))
    with pytest.raises(DatasetError, match=r"lerobot option joint_offsets has 5 values; arm 'so100' has 6 joints "
                                           r"\(shoulder_pan, .*, gripper\)"):
        read_episodes(tmp_path / "ds",
                      config=dataset_config("lerobot_so100", NO_FK + ["lerobot.joint_offsets=[0,0,0,0,0]"]))
    with pytest.raises(DatasetError, match=r"lerobot option derive: 'obj_pose' cannot be derived"):
        read_episodes(tmp_path / "ds", config=dataset_config("lerobot_so100", ["lerobot.derive=[obj_pose]"]))
