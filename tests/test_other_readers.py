"""ManiSkill trajectory and robomimic HDF5 readers, format detection and dispatch over every
format including ours, and scripts/convert_data.py + scripts/inspect_data.py on them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from sim2real.data import (DatasetError, DatasetMetadata, Episode, Part, dataset_config, detect_format, read_dataset,
                           read_episodes, write_dataset)
from tasks.spec import task_contract

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write_maniskill(path: Path, lengths: list[int], control_mode: str = "pd_ee_delta_pos", rgb: bool = True,
                    seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A ManiSkill trajectory file (obs_mode rgb: state_dict groups plus a camera) and its JSON."""
    rng = np.random.default_rng(seed)
    truth = []
    with h5py.File(path, "w") as f:
        for i, n in enumerate(lengths):
            g = f.create_group(f"traj_{i}")
            data = {"qpos": rng.normal(size=(n + 1, 9)), "qvel": rng.normal(size=(n + 1, 9)),
                    "tcp_pose": rng.normal(size=(n + 1, 7)), "obj_pose": rng.normal(size=(n + 1, 7)),
                    "goal_pos": rng.normal(size=(n + 1, 3)), "actions": rng.uniform(-1, 1, size=(n, 4)),
                    "success": np.arange(n) >= n - 2, "rewards": rng.normal(size=n),
                    "rgb": rng.integers(0, 255, size=(n + 1, 16, 16, 3), dtype=np.uint8)}
            data = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in data.items()}
            data["actions"][0, 0] = 1.5  # outside [-1, 1]: clipped and counted
            g["obs/agent/qpos"], g["obs/agent/qvel"] = data["qpos"], data["qvel"]
            g["obs/extra/tcp_pose"], g["obs/extra/obj_pose"] = data["tcp_pose"], data["obj_pose"]
            g["obs/extra/goal_pos"] = data["goal_pos"]
            if rgb:
                g["obs/sensor_data/base_camera/rgb"] = data["rgb"]
            g["actions"], g["success"], g["rewards"] = data["actions"], data["success"], data["rewards"]
            g["terminated"], g["truncated"] = data["success"], np.zeros(n, bool)
            truth.append(data)
    episodes = [{"episode_id": i, "episode_seed": 40 + i, "control_mode": control_mode, "elapsed_steps": n,
                 "reset_kwargs": {"seed": 40 + i}, "success": True} for i, n in enumerate(lengths)]
    path.with_suffix(".json").write_text(json.dumps({
        "env_info": {"env_id": "PushCube-v1", "env_kwargs": {"obs_mode": "rgb", "control_mode": control_mode},
                     "max_episode_steps": 50}, "episodes": episodes}))
    return truth


def test_maniskill_round_trip(tmp_path: Path):
    path = tmp_path / "trajectory.h5"
    truth = write_maniskill(path, [5, 7])
    assert detect_format(path) == "maniskill"
    metadata, episodes = read_episodes(path, obs_mode="rgb", image_size=16)  # task from env_id PushCube-v1
    assert metadata.task == "push_cube" and metadata.backend == "maniskill"
    assert metadata.contract == task_contract("push_cube", "rgb", image_size=16)
    assert metadata.extra["env_id"] == "PushCube-v1" and metadata.extra["clipped_actions"] == 2
    for data, ep in zip(truth, episodes):
        for name in ("qpos", "qvel", "tcp_pose", "goal_pos"):
            assert torch.equal(ep.obs[name], torch.from_numpy(data[name]))
        assert torch.equal(ep.obs["rgb"], torch.from_numpy(data["rgb"].transpose(0, 3, 1, 2)))
        assert torch.equal(ep.actions, torch.from_numpy(np.clip(data["actions"], -1, 1)))
        assert ep.success.tolist() == [False] + data["success"].tolist()
        assert torch.equal(ep.rewards, torch.from_numpy(data["rewards"]))
    assert [e.seed for e in episodes] == [40, 41]


def test_maniskill_refuses_another_control_mode_and_missing_keys(tmp_path: Path):
    path = tmp_path / "t.h5"
    write_maniskill(path, [3], control_mode="pd_joint_pos", rgb=False)
    with pytest.raises(DatasetError, match=r"t\.json: episodes\[0\]: control_mode 'pd_joint_pos', the contract's is "
                                           r"'pd_ee_delta_pos'"):
        read_episodes(path)
    write_maniskill(path, [3], rgb=False)
    with pytest.raises(DatasetError, match=r"t\.h5: traj_0/obs/sensor_data/base_camera/rgb is missing"):
        read_episodes(path, obs_mode="rgb")
    with h5py.File(path, "a") as f:
        f["traj_0/obs/agent/qpos"][1, 4] = np.nan
    with pytest.raises(DatasetError, match=r"t\.h5: traj_0: feature 'qpos' is NaN/inf at step 1"):
        read_episodes(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(DatasetError, match=r"t\.json: the trajectory JSON of .*t\.h5 is missing"):
        read_episodes(path)


def write_robomimic(path: Path, lengths: list[int], control_freq: float = 20.0, seed: int = 0) -> list[dict]:
    """robosuite-style keys: quaternions (x, y, z, w), gripper +1 closed; obs and next_obs."""
    rng = np.random.default_rng(seed)
    truth = []
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1,
                                             "env_kwargs": {"control_freq": control_freq}})
        for i, n in enumerate(lengths):
            g = data.create_group(f"demo_{i}")
            obs = {"robot0_joint_pos": rng.normal(size=(n + 1, 7)), "robot0_gripper_qpos": rng.normal(size=(n + 1, 2)),
                   "robot0_joint_vel": rng.normal(size=(n + 1, 7)), "robot0_gripper_qvel": rng.normal(size=(n + 1, 2)),
                   "robot0_eef_pos": rng.normal(size=(n + 1, 3)), "robot0_eef_quat": rng.normal(size=(n + 1, 4)),
                   "object": rng.normal(size=(n + 1, 10))}
            for key, value in obs.items():
                g[f"obs/{key}"], g[f"next_obs/{key}"] = value[:-1], value[1:]
            g["actions"] = rng.uniform(-1, 1, size=(n, 7))
            g["dones"] = (np.arange(n) == n - 1).astype(np.int64)
            g["rewards"] = g["dones"][()].astype(np.float64)
            g.attrs["num_samples"] = n
            truth.append({**obs, "actions": g["actions"][()]})
        data.attrs["total"] = sum(lengths)
    return truth


def test_robomimic_round_trip_with_the_lift_preset(tmp_path: Path):
    path = tmp_path / "lift.hdf5"
    truth = write_robomimic(path, [4, 6])
    assert detect_format(path) == "robomimic"
    metadata, episodes = read_episodes(path, config=dataset_config("robomimic_lift"))
    assert metadata.task == "pick_cube" and metadata.backend == "robomimic" and metadata.extra["env_name"] == "Lift"
    for data, ep in zip(truth, episodes):
        qpos = np.concatenate([data["robot0_joint_pos"], data["robot0_gripper_qpos"]], axis=1)
        np.testing.assert_allclose(ep.obs["qpos"].numpy(), qpos, rtol=1e-6)
        tcp = np.concatenate([data["robot0_eef_pos"], data["robot0_eef_quat"][:, [3, 0, 1, 2]]], axis=1)
        np.testing.assert_allclose(ep.obs["tcp_pose"].numpy(), tcp, rtol=1e-6)
        np.testing.assert_allclose(ep.obs["goal_pos"].numpy(), data["object"][:, :3] + [0, 0, 0.2], rtol=1e-6)
        expected = np.concatenate([data["actions"][:, :3] * 0.5, -data["actions"][:, 6:7]], axis=1)
        np.testing.assert_allclose(ep.actions.numpy(), expected, rtol=1e-6)
        assert ep.success.tolist() == [False] * ep.length + [True]
    assert [e.length for e in episodes] == [4, 6]


def test_robomimic_refuses_rate_and_needs_a_key_map(tmp_path: Path):
    path = tmp_path / "r.hdf5"
    write_robomimic(path, [3], control_freq=10.0)
    with pytest.raises(DatasetError, match=r"r\.hdf5: env_args control_freq 10 Hz, the contract's is 20 Hz"):
        read_episodes(path, config=dataset_config("robomimic_lift"))
    write_robomimic(path, [3])
    with pytest.raises(DatasetError, match=r"robomimic\.features is empty"):
        read_episodes(path, task="pick_cube")
    with pytest.raises(DatasetError, match=r"r\.hdf5: data/demo_0/obs/robot0_joint_pos has 7 values per step; "
                                           r"index \[9\] is out of range \(feature 'qpos'\)"):
        read_episodes(path, config=dataset_config("robomimic_lift"),
                      features={**dataset_config("robomimic_lift").robomimic.features,
                                "qpos": [Part(key="obs/robot0_joint_pos", index=[9])]})


def _our_episodes(contract: Any, n: int = 2) -> list[Episode]:
    out = []
    for i in range(n):
        obs = {name: torch.randn(5, *f.shape) for name, f in contract.features.items()}
        out.append(Episode(obs=obs, actions=torch.rand(4, contract.action_dim) * 2 - 1,
                           success=torch.tensor([False, False, False, True, True]), seed=i))
    return out


def test_our_hdf5_through_dispatch_and_checks(tmp_path: Path):
    contract = task_contract("pick_cube")
    path = write_dataset(tmp_path / "ours.h5", _our_episodes(contract),
                         DatasetMetadata(task="pick_cube", backend="mujoco", contract=contract))
    assert detect_format(path) == "sim2real"
    metadata, episodes = read_episodes(path)
    assert metadata.task == "pick_cube" and len(episodes) == 2
    with pytest.raises(DatasetError, match=r"ours\.h5: contract mismatch: action_dim 4 in dataset, 8 in checkpoint"):
        read_episodes(path, contract=task_contract("pick_cube", control_mode="pd_joint_delta_pos"))
    with pytest.raises(DatasetError, match=r"ours\.h5: attribute task='pick_cube', expected 'push_cube'"):
        read_episodes(path, task="push_cube")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DatasetError, match=r"junk\.h5: not a readable HDF5 file"):
        read_episodes(tmp_path / "junk.h5")
    with pytest.raises(DatasetError, match=r"nothing: not found"):
        read_episodes(tmp_path / "nothing")


def test_convert_then_inspect_every_format(tmp_path: Path, capsys):
    convert, inspect = _script("convert_data"), _script("inspect_data")
    write_maniskill(tmp_path / "ms.h5", [3, 4], rgb=False)
    write_robomimic(tmp_path / "rm.hdf5", [3])
    for source, extra in ((tmp_path / "ms.h5", []), (tmp_path / "rm.hdf5", ["--dataset", "robomimic_lift"])):
        out = tmp_path / f"{source.stem}_out.h5"
        assert convert([str(source), str(out), *extra]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith("converted episodes=") and f"out={out}" in line
        _, direct = read_episodes(source, config=dataset_config(extra[1] if extra else None))
        _, converted = read_dataset(out)
        for a, b in zip(direct, converted):
            assert all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs) and torch.equal(a.actions, b.actions)
            assert torch.equal(a.success, b.success) and a.seed == b.seed
        assert inspect([str(source), *extra]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "qpos[8]" in text and "action[3]" in text and "format" in text
    assert inspect([str(tmp_path / "ms_out.h5")]) == 0
    assert "backend maniskill" in " ".join(capsys.readouterr().out.split())
    assert convert([str(tmp_path / "rm.hdf5"), str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no task: set task" in err and not (tmp_path / "x.h5").exists()
    assert convert([str(tmp_path / "ms.h5"), str(tmp_path / "x.h5"), "--set", "maniskill.nope=1"]) == 1
    assert "nope" in capsys.readouterr().err
