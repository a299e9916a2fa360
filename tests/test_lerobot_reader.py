"""LeRobotDataset v3 -> Episodes (sim2real/data/lerobot.py) on small synthetic datasets written
here with pyarrow (Parquet) and PyAV (MP4): the v3 layout with several episodes per data and
video file, as LeRobot writes it."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sim2real.robot.arm_model import ActionScales
from sim2real.data import DatasetError, read_dataset, read_episodes
from sim2real.data.config import Part
from tasks.spec import task_contract

CAM = "observation.images.front"
STATE_DIM = 35  # qpos 9, qvel 9, tcp_pose 7, obj_pose 7, goal_pos 3: push_cube's state contract in order
REST = np.array([0.0, 0.39, 0.0, -1.96, 0.0, 2.36, 0.79, 0.04, 0.04])


def colour(episode: int, frame: int) -> tuple[int, int, int]:
    """A solid frame colour unique per frame, far enough apart to survive H.264."""
    return (20 * frame + 10) % 250, 40 + 60 * episode, 200 - 15 * frame % 200


# LeRobot encodes AV1 (SVT-AV1) by default, H.264 as an option.
CODEC_OPTIONS = {"libsvtav1": {"crf": "20", "preset": "12", "g": "2"}, "libx264": {"crf": "0"}}


def write_video(path: Path, frames: list[np.ndarray], fps: int, codec: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = CODEC_OPTIONS[codec]
        stream.codec_context.time_base = Fraction(1, fps)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_dataset(root: Path, lengths: list[int], fps: int = 20, camera: str | None = "video",
                  action_dim: int = 8, version: str = "v3.0", seed: int = 0,
                  codec: str = "libsvtav1") -> dict[str, Any]:
    """A LeRobot v3 dataset: every episode in data/chunk-000/file-000.parquet and one video file."""
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {k: [] for k in ("observation.state", "action", "timestamp", "frame_index",
                                                     "episode_index", "index", "task_index", "next.success")}
    if camera == "image":
        columns[CAM] = []
    episodes, frames, video_t = [], [], 0.0
    truth = {"state": [], "action": []}
    for e, n in enumerate(lengths):
        state = rng.normal(size=(n, STATE_DIM)).astype(np.float32)
        state[:, :9] = REST + 0.01 * rng.normal(size=(n, 9))
        action = rng.uniform(-0.8, 0.8, size=(n, action_dim)).astype(np.float32)
        truth["state"].append(state)
        truth["action"].append(action)
        for i in range(n):
            columns["observation.state"].append(state[i].tolist())
            columns["action"].append(action[i].tolist())
            columns["timestamp"].append(np.float32(i / fps))
            columns["frame_index"].append(i)
            columns["episode_index"].append(e)
            columns["index"].append(len(columns["index"]))
            columns["task_index"].append(0)
            columns["next.success"].append(i == n - 2)
            image = np.zeros((64, 64, 3), np.uint8)
            image[:] = colour(e, i)
            if camera == "image":
                ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                columns[CAM].append({"bytes": png.tobytes(), "path": None})
            frames.append(image)
        row = {"episode_index": e, "tasks": ["push the cube"], "length": n, "data/chunk_index": 0,
               "data/file_index": 0, "dataset_from_index": sum(lengths[:e]), "dataset_to_index": sum(lengths[:e + 1]),
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
               "stats/action/mean": action.mean(0).tolist()}
        if camera == "video":
            row.update({f"videos/{CAM}/chunk_index": 0, f"videos/{CAM}/file_index": 0,
                        f"videos/{CAM}/from_timestamp": video_t, f"videos/{CAM}/to_timestamp": video_t + n / fps})
        video_t += n / fps
        episodes.append(row)
    features = {"observation.state": {"dtype": "float32", "shape": [STATE_DIM], "names": None},
                "action": {"dtype": "float32", "shape": [action_dim], "names": None},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None}}
    if camera:
        features[CAM] = {"dtype": camera, "shape": [64, 64, 3], "names": ["height", "width", "channels"]}
    info = {"codebase_version": version, "robot_type": "panda", "fps": fps, "total_episodes": len(lengths),
            "chunks_size": 1000, "features": features,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    types = {"observation.state": pa.list_(pa.float32()), "action": pa.list_(pa.float32()), "timestamp": pa.float32(),
             "frame_index": pa.int64(), "episode_index": pa.int64(), "index": pa.int64(), "task_index": pa.int64(),
             "next.success": pa.bool_()}
    arrays = {k: pa.array(v, type=types.get(k)) for k, v in columns.items()}
    pq.write_table(pa.table(arrays), root / "data" / "chunk-000" / "file-000.parquet")
    if camera == "video":
        write_video(root / "videos" / CAM / "chunk-000" / "file-000.mp4", frames, fps, codec)
    return truth


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_round_trip_at_the_control_rate_with_video(tmp_path: Path, codec: str):
    truth = write_dataset(tmp_path / "ds", [6, 8], action_dim=8, codec=codec)
    metadata, episodes = read_episodes(tmp_path / "ds", task="push_cube", obs_mode="rgb", image_size=24,
                                       control_mode="pd_joint_delta_pos", success_key="next.success",
                                       features={"qpos": [{"key": "observation.state", "stop": 9}],
                                                 "qvel": [{"key": "observation.state", "start": 9, "stop": 18}],
                                                 "tcp_pose": [{"key": "observation.state", "start": 18, "stop": 25}],
                                                 "goal_pos": [{"key": "observation.state", "start": 32, "stop": 35}],
                                                 "rgb": [{"key": CAM}]})
    assert metadata.extra["format"] == "lerobot" and metadata.backend == "real" and metadata.extra["fps"] == 20
    assert [e.length for e in episodes] == [5, 7]
    for e, ep in enumerate(episodes):
        state = truth["state"][e]
        assert torch.equal(ep.obs["qpos"], torch.from_numpy(state[:, :9]))
        assert torch.equal(ep.obs["goal_pos"], torch.from_numpy(state[:, 32:35]))
        assert torch.equal(ep.actions, torch.from_numpy(truth["action"][e][:-1]))
        # next.success is True after the second-to-last frame's action: the final observation.
        assert ep.success.tolist() == [False] * ep.length + [True]
        assert ep.obs["rgb"].shape == (ep.length + 1, 3, 24, 24) and ep.obs["rgb"].dtype == torch.uint8
        for i in range(ep.length + 1):  # each observation got its own frame, from the right episode
            mean = ep.obs["rgb"][i].float().mean(dim=(1, 2)).numpy()
            np.testing.assert_allclose(mean, colour(e, i), atol=3)
        assert ep.meta["instruction"] == ["push the cube"] and ep.meta["episode_index"] == e


def test_default_map_resampling_and_joint_target_actions(tmp_path: Path):
    """40 fps -> 20 Hz: every other frame; absolute joint targets become pd_joint_delta_pos actions."""
    truth = write_dataset(tmp_path / "ds", [9], fps=40, camera="image", action_dim=9)
    targets = truth["action"][0].astype(np.float64)
    targets[:, :7] = REST[:7] + 0.05 * targets[:, :7]
    targets[:, 7:] = 0.02
    table = pq.read_table(tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet")
    table = table.set_column(table.column_names.index("action"), "action",
                             pa.array(targets.astype(np.float32).tolist(), type=pa.list_(pa.float32())))
    pq.write_table(table, tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet")
    _, (ep,) = read_episodes(tmp_path / "ds", task="push_cube", control_mode="pd_joint_delta_pos",
                             action_kind="joint_targets", assume_success=False)
    rows = [0, 2, 4, 6, 8]
    state = truth["state"][0]
    assert ep.length == 4
    assert torch.equal(ep.obs["qpos"], torch.from_numpy(state[rows, :9]))
    assert torch.equal(ep.obs["obj_pose"], torch.from_numpy(state[rows, 25:32]))  # contract order by default
    t32 = targets.astype(np.float32).astype(np.float64)
    expected = (t32[rows[:-1], :7] - state[rows[:-1], :7].astype(np.float64)) / 0.1
    np.testing.assert_allclose(ep.actions[:, :7].numpy(), np.clip(expected, -1, 1), atol=1e-5)
    gripper = 2 * (0.02 - ActionScales().finger_closed) / (0.04 - ActionScales().finger_closed) - 1
    np.testing.assert_allclose(ep.actions[:, 7].numpy(), gripper, atol=1e-5)
    assert ep.meta["clipped_actions"] == int((np.abs(expected) > 1).sum())
    assert not ep.success.any()


def test_image_feature_is_decoded(tmp_path: Path):
    write_dataset(tmp_path / "ds", [4], camera="image", action_dim=4)
    _, (ep,) = read_episodes(tmp_path / "ds", task="push_cube", obs_mode="rgb", image_size=16)
    expected = torch.tensor([colour(0, i) for i in range(4)], dtype=torch.uint8)
    assert torch.equal(ep.obs["rgb"][:, :, 0, 0], expected)  # PNG is lossless; resizing a solid frame too


def test_convert_script_writes_our_hdf5(tmp_path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_data", Path(__file__).parents[1] / "scripts" /
                                                  "convert_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_dataset(tmp_path / "ds", [5, 6], action_dim=4, camera=None)
    assert module.main([str(tmp_path / "ds"), str(tmp_path / "out.h5"), "--task", "push_cube"]) == 0
    metadata, converted = read_dataset(tmp_path / "out.h5", expect_contract=task_contract("push_cube"))
    _, direct = read_episodes(tmp_path / "ds", task="push_cube")
    assert [e.length for e in converted] == [4, 5]
    for a, b in zip(direct, converted):
        assert all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs) and torch.equal(a.actions, b.actions)


# ---- bad datasets -----------------------------------------------------------------------------

def test_delta_actions_at_another_rate_are_refused(tmp_path: Path):
    write_dataset(tmp_path / "ds", [6], fps=30, camera=None, action_dim=4)
    with pytest.raises(DatasetError, match=r"info\.json: fps 30 differs from the control frequency 20 Hz and "
                                           r"action_kind is 'task'"):
        read_episodes(tmp_path / "ds", task="push_cube")


def test_nan_gap_and_missing_column(tmp_path: Path):
    write_dataset(tmp_path / "ds", [6, 6], camera=None, action_dim=4)
    path = tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    state = np.array(table.column("observation.state").to_pylist())
    state[9, 3] = np.nan  # episode 1, frame 3
    bad = table.set_column(0, "observation.state", pa.array(state.tolist(), type=pa.list_(pa.float32())))
    pq.write_table(bad, path)
    with pytest.raises(DatasetError, match=r"file-000\.parquet: episode 1: qpos is NaN/inf at t=0\.150 s \(frame 3\)"):
        read_episodes(tmp_path / "ds", task="push_cube")

    ts = np.array(table.column("timestamp").to_pylist(), dtype=np.float32)
    ts[3:6] += 0.2  # episode 0: 0.1 s -> 0.35 s
    pq.write_table(table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts)), path)
    with pytest.raises(DatasetError, match=r"episode 0: gap of 0\.250 s from t=0\.100 s to t=0\.350 s "
                                           r"\(max_gap_periods 3 = 0\.150 s\)"):
        read_episodes(tmp_path / "ds", task="push_cube")

    pq.write_table(table.drop_columns(["action"]), path)
    with pytest.raises(DatasetError, match=r"column 'action' is missing \(episode 0"):
        read_episodes(tmp_path / "ds", task="push_cube")


def test_truncated_parquet_wrong_version_and_key_map(tmp_path: Path):
    write_dataset(tmp_path / "ds", [6], camera=None, action_dim=4)
    with pytest.raises(DatasetError, match=r"feature 'qpos' gets 7 values per step from observation\.state\[0:7\]; "
                                           r"the contract expects 9"):
        read_episodes(tmp_path / "ds", task="push_cube",
                      features={"qpos": [Part(key="observation.state", stop=7)]})
    with pytest.raises(DatasetError, match=r"contract mismatch: obs_dim 35 in dataset, 28 in checkpoint"):
        read_episodes(tmp_path / "ds", task="push_cube", contract=task_contract("push_cube", "rgb"))
    path = tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"file-000\.parquet: unreadable Parquet file \(truncated or corrupt\?\)"):
        read_episodes(tmp_path / "ds", task="push_cube")
    write_dataset(tmp_path / "old", [6], camera=None, action_dim=4, version="v2.1")
    with pytest.raises(DatasetError, match=r"codebase_version 'v2\.1'; this reader reads LeRobotDataset v3"):
        read_episodes(tmp_path / "old", task="push_cube")


def test_truncated_video(tmp_path: Path):
    write_dataset(tmp_path / "ds", [6, 8], action_dim=4, codec="libx264")
    video = tmp_path / "ds" / "videos" / CAM / "chunk-000" / "file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"file-000\.mp4: undecodable video \(truncated or corrupt\?\) "
                                           r"\(episode 0, observation\.images\.front\)"):
        read_episodes(tmp_path / "ds", task="push_cube", obs_mode="rgb")


def test_a_set_without_actions_reads_them_from_the_next_state(tmp_path: Path):
    """action_kind next_state (a hand-guided set, no action column): the joint deltas between
    consecutive observations, at the arm's scale, and the gripper read as open or closed."""
    write_dataset(tmp_path / "ds", [9], camera=None, action_dim=9)
    table = pq.read_table(tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet")
    state = np.array(table.column("observation.state").to_pylist(), dtype=np.float32)
    state[:, 7:9] = np.where(np.arange(9) < 4, 0.04, 0.025)[:, None]  # the fingers close on a cube at frame 4
    table = table.set_column(table.column_names.index("observation.state"), "observation.state",
                             pa.array(state.tolist(), type=pa.list_(pa.float32())))
    pq.write_table(table.drop(["action"]), tmp_path / "ds" / "data" / "chunk-000" / "file-000.parquet")
    _, (ep,) = read_episodes(tmp_path / "ds", task="push_cube", control_mode="pd_joint_delta_pos",
                             action_kind="next_state", assume_success=False)
    q = state[:, :9].astype(np.float64)
    expected = np.clip((q[1:, :7] - q[:-1, :7]) / ActionScales().joint_delta_pos, -1, 1)
    np.testing.assert_allclose(ep.actions[:, :7].numpy(), expected, atol=1e-5)
    assert ep.actions[:, 7].tolist() == [1.0] * 3 + [-1.0] * 5
    _, (half,) = read_episodes(tmp_path / "ds", task="push_cube", control_mode="pd_joint_delta_pos",
                               action_kind="next_state", next_state_gain=0.5, assume_success=False)
    np.testing.assert_allclose(half.actions[:, :7].numpy(), np.clip(2 * expected, -1, 1), atol=1e-5)
    with pytest.raises(DatasetError, match="next_state_gain=0.0"):
        read_episodes(tmp_path / "ds", task="push_cube", action_kind="next_state", next_state_gain=0.0)
