"""rosbag2 logs -> Episodes (sim2real/data/rosbag.py), on bags written here with rosbags (no DDS).

Expected values are computed independently of the reader: the zero-order hold on the 20 Hz grid
from the message times chosen below, joints by name, and actions built forwards with
sim2real.robot.arm_model (the policy node's own conversion), which the reader must invert.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from sim2real.ros import messages as m
from robot_bridge.bag_recorder import BagRecorder
from sim2real.robot.arm_model import ActionScales, RobotModel, ee_delta_action_to_joint_targets
from sim2real.ros.observation import JOINT_NAMES, mujoco_quat
from sim2real.ros.images import crop_resize
from sim2real.contract import Contract, Feature
from sim2real.data import DatasetError, read_dataset, read_episodes, write_dataset
from tasks.spec import task_contract

from hand_transport import HandTransport

NS = 1_000_000_000
BASE = 5 * NS  # bag clock origin: the first message
JS, OBJ, CMD, CAM = "/joint_states", "/object_pose", "/arm_controller/joint_trajectory", "/camera/image_raw/compressed"
FWD, MARKER, EPISODE = "/arm_controller/commands", "/sim2real/episode_marker", "/sim2real/episode"
GOAL_TABLE = [0.1, -0.05, 0.02]
# Joint states arrive in another order than the contract's (and differ per message below).
ORDER = [JOINT_NAMES[i] for i in (8, 2, 0, 5, 1, 7, 3, 6, 4)]
REST = np.array([0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04])
BASE_IN_TASK = np.array([-0.615, 0.0, 0.0])
SCALES = ActionScales()


@pytest.fixture(scope="module")
def model() -> RobotModel:
    return RobotModel.from_urdf()


def ms(t: float) -> int:
    """Bag time of t seconds after the bag start (exact: t given in whole milliseconds)."""
    return BASE + round(t * 1000) * 1_000_000


def q_at(t: float) -> np.ndarray:
    """Joint positions at t: every joint moves at its own rate."""
    return REST + 0.05 * t * np.arange(1, 10) / 9 * np.array([1, -1, 1, 1, -1, 1, -1, 0, 0])


def qd_at(t: float) -> np.ndarray:
    return np.arange(9) * 0.1 + t


def js_msg(t: float, order: list[str] = ORDER, q: np.ndarray | None = None) -> Any:
    q = q_at(t) if q is None else q
    idx = [JOINT_NAMES.index(n) for n in order]
    return m.joint_state(order, q[idx], qd_at(t)[idx], stamp=t)


def obj_pos(t: float) -> np.ndarray:
    return np.array([0.7 + t, 0.02, 0.02])  # base frame


def obj_msg(t: float) -> Any:
    half = 0.3 * t
    return m.pose_stamped("panda_link0", obj_pos(t), [0.0, 0.0, math.sin(half), math.cos(half)], stamp=t)


def write_bag(path: Path, items: list[tuple[str, str, int, Any]], storage: str = "mcap") -> Path:
    """A bag of (topic, type, bag time, message), in time order."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: dict[str, Any] = {}
        for topic, type_name, stamp, msg in sorted(items, key=lambda item: item[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, type_name, typestore=m.TYPESTORE)
            writer.write(conns[topic], stamp, m.serialize(msg))
    return path


def states(until: float = 1.0, js_hz: int = 100, obj_hz: int = 50) -> list[tuple[str, str, int, Any]]:
    items = []
    for k in range(int(until * js_hz) + 1):
        t = k / js_hz
        order = ORDER if k % 2 else list(reversed(ORDER))
        items.append((JS, m.JOINT_STATE, ms(t), js_msg(t, order)))
    for k in range(int(until * obj_hz) + 1):
        t = k / obj_hz
        items.append((OBJ, m.POSE_STAMPED, ms(t), obj_msg(t)))
    return items


# Commands at 20 Hz from 0.105 s with a few ms of jitter either way; the grid is anchored at the first.
CMD_TIMES = [0.105 + 0.05 * k + j for k, j in enumerate([0, 0.003, -0.004, 0.002, 0.0, -0.003, 0.004, 0.001, -0.002,
                                                         0.003])]
GRID = [0.105 + 0.05 * k for k in range(11)]


def held_joint_time(t: float, hz: int = 100) -> float:
    return math.floor(t * hz + 1e-9) / hz


def demo_actions(steps: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.9, 0.9, size=(steps, dim))


def joint_commands(actions: np.ndarray, interface: str = "trajectory",
                   names: list[str] | None = None) -> list[tuple[str, str, int, Any]]:
    """pd_joint_delta_pos actions -> the targets a policy node would have sent from each grid observation."""
    names = names or list(reversed(JOINT_NAMES))
    items = []
    for k, action in enumerate(actions):
        q = q_at(held_joint_time(GRID[k]))
        targets = np.concatenate([q[:7] + SCALES.joint_delta_pos * action[:7],
                                  [SCALES.gripper_target(action[7])] * 2])
        values = targets[[JOINT_NAMES.index(n) if n in JOINT_NAMES else 8 for n in names]]
        if interface == "trajectory":
            items.append((CMD, m.JOINT_TRAJECTORY, ms(CMD_TIMES[k]), m.joint_trajectory(names, [values], [0.05])))
        else:
            items.append((FWD, m.FLOAT64_MULTI_ARRAY, ms(CMD_TIMES[k]), m.float64_multi_array(values)))
    return items


def joint_contract() -> Contract:
    return task_contract("push_cube", "state", "pd_joint_delta_pos")


def read(path: Path, model: RobotModel, **options: Any):
    # The synthetic demos drive the fingers to random openings: the exact (linear) inverse reads them back.
    options = {"task": "push_cube", "control_mode": "pd_joint_delta_pos", "goal_pos": GOAL_TABLE,
               "goal_frame": "table", "gripper": "linear", **options}
    return read_episodes(path, model=model, **options)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_one_episode_per_bag_exact_alignment_reordering_and_actions(tmp_path: Path, model: RobotModel, storage: str):
    actions = demo_actions(10, 8)
    bag = write_bag(tmp_path / "bag", states() + joint_commands(actions), storage)
    metadata, episodes = read(bag, model)
    assert len(episodes) == 1 and metadata.contract == joint_contract() and metadata.task == "push_cube"
    ep = episodes[0]
    assert ep.length == 10
    held = [held_joint_time(t) for t in GRID]
    np.testing.assert_allclose(ep.obs["qpos"].numpy(), np.stack([q_at(t) for t in held]), atol=1e-6)
    np.testing.assert_allclose(ep.obs["qvel"].numpy(), np.stack([qd_at(t) for t in held]), atol=1e-6)
    tcp = []
    for t in held:
        rot, pos = model.fk_matrix(q_at(t)[:7])
        tcp.append(np.concatenate([pos + BASE_IN_TASK, mujoco_quat(rot)]))
    np.testing.assert_allclose(ep.obs["tcp_pose"].numpy(), np.stack(tcp), atol=1e-6)
    obj_t = [math.floor(t * 50 + 1e-9) / 50 for t in GRID]
    expected_obj = [np.concatenate([obj_pos(t) + BASE_IN_TASK, [math.cos(0.3 * t), 0, 0, math.sin(0.3 * t)]])
                    for t in obj_t]
    np.testing.assert_allclose(ep.obs["obj_pose"].numpy(), np.stack(expected_obj), atol=1e-6)
    np.testing.assert_allclose(ep.obs["goal_pos"].numpy(), np.tile(GOAL_TABLE, (11, 1)), atol=1e-7)
    np.testing.assert_allclose(ep.actions.numpy(), actions, atol=1e-5)
    assert ep.success.tolist() == [False] * 11  # no success stated anywhere
    assert ep.meta["clipped_actions"] == 0 and ep.meta["held_commands"] == 0 and ep.meta["skipped_commands"] == 0
    assert ep.meta["start_s"] == pytest.approx(0.105)
    ep.validate(metadata.contract)


def test_float64_multi_array_commands_in_controller_order(tmp_path: Path, model: RobotModel):
    actions = demo_actions(10, 8, seed=1)
    names = list(JOINT_NAMES[3:]) + list(JOINT_NAMES[:3])
    bag = write_bag(tmp_path / "bag", states() + joint_commands(actions, "forward", names))
    _, (ep,) = read(bag, model, command_topic=FWD, command_joints=names)
    np.testing.assert_allclose(ep.actions.numpy(), actions, atol=1e-5)


def test_ee_delta_actions_invert_the_bridge_kinematics_and_clip(tmp_path: Path, model: RobotModel):
    actions = demo_actions(10, 4, seed=2) * 0.3
    items = states()
    for k, action in enumerate(actions):
        q = q_at(held_joint_time(GRID[k]))
        targets = ee_delta_action_to_joint_targets(model, q[:7], action)
        if k == 4:  # a teleoperated jump far beyond one step: clipped and counted
            targets[:7] = q[:7] + 0.5
        items.append((CMD, m.JOINT_TRAJECTORY, ms(CMD_TIMES[k]), m.joint_trajectory(JOINT_NAMES, [targets], [0.05])))
    metadata, (ep,) = read(write_bag(tmp_path / "bag", items), model, control_mode="pd_ee_delta_pos")
    keep = [k for k in range(10) if k != 4]
    np.testing.assert_allclose(ep.actions.numpy()[keep], actions[keep], atol=2e-3)
    assert ep.actions.abs().max() <= 1.0 and ep.meta["clipped_actions"] >= 1
    assert metadata.extra["clipped_actions"] == ep.meta["clipped_actions"]


def test_command_periods_hold_and_skip(tmp_path: Path, model: RobotModel):
    """A missing command holds the previous target; two in one period keep the later."""
    actions = demo_actions(10, 8, seed=3)
    commands = joint_commands(actions)
    del commands[3]                                           # period 3 holds command 2
    extra = joint_commands(actions[6:7] * 0.5)[0]             # a second command in period 6, later
    commands.append((CMD, extra[1], ms(CMD_TIMES[6] + 0.01), extra[3]))
    _, (ep,) = read(write_bag(tmp_path / "bag", states() + commands), model)
    q3 = q_at(held_joint_time(GRID[3]))
    q2 = q_at(held_joint_time(GRID[2]))
    expected3 = (q2[:7] + 0.1 * actions[2, :7] - q3[:7]) / 0.1
    np.testing.assert_allclose(ep.actions[3, :7].numpy(), expected3, atol=1e-5)
    np.testing.assert_allclose(ep.actions[6, :7].numpy(), actions[6, :7] * 0.5 + (q_at(held_joint_time(GRID[0]))[:7]
                               - q_at(held_joint_time(GRID[6]))[:7]) / 0.1, atol=1e-5)
    assert ep.meta["held_commands"] == 1 and ep.meta["skipped_commands"] == 1


def marker(t: float, event: str, **fields: Any) -> tuple[str, str, int, Any]:
    return MARKER, m.STRING, ms(t), m.string_msg(json.dumps({"event": event, **fields}))


def test_marker_split_episodes_with_metadata(tmp_path: Path, model: RobotModel):
    items = states(until=2.0)
    spans = [(0.1, 0.7), (0.75, 0.95), (1.1, 1.8)]
    for s, e in spans:  # commands every 50 ms from s + 5 ms to the end of the span
        for k in range(round((e - s) / 0.05)):
            t = s + 0.005 + 0.05 * k
            q = q_at(held_joint_time(t))
            items.append((CMD, m.JOINT_TRAJECTORY, ms(t), m.joint_trajectory(JOINT_NAMES, [q], [0.05])))
    items += [marker(0.1, "start", task="push_cube", seed=11), marker(0.7, "stop", success=True),
              marker(0.75, "start", seed=12), marker(0.95, "abort"),
              (MARKER, m.STRING, ms(1.1), m.string_msg("start")), marker(1.8, "stop", success=False)]
    metadata, episodes = read(write_bag(tmp_path / "bag", items), model)
    assert [e.seed for e in episodes] == [11, None]
    assert [e.success.tolist()[-1] for e in episodes] == [True, False]
    assert [e.success_once for e in episodes] == [True, False]
    assert [e.meta["start_s"] for e in episodes] == pytest.approx([0.105, 1.105])
    # 12 and 14 commands, but the final observation must come before the stop marker.
    assert [e.length for e in episodes] == [11, 13]
    assert all(float(e.actions[:, 7].abs().max()) < 1.0 + 1e-6 for e in episodes)
    assert metadata.extra["format"] == "rosbag2"


def test_bags_from_bag_recorder_carry_task_seed_and_success(tmp_path: Path, model: RobotModel):
    """Bags as robot_bridge.bag_recorder writes them (sqlite3): task from /sim2real/episode, no task given."""
    clock = [BASE]
    transport = HandTransport()
    recorder = BagRecorder(transport, {JS: m.JOINT_STATE, OBJ: m.POSE_STAMPED, CMD: m.JOINT_TRAJECTORY},
                           tmp_path / "bags", storage="sqlite3", marker_topic=None, clock=lambda: clock[0],
                           contract=joint_contract())
    actions = demo_actions(10, 8, seed=4)
    for episode in range(2):
        clock[0] = BASE
        recorder.start(task="push_cube", seed=100 + episode)
        for _, _, stamp, msg in sorted(states() + joint_commands(actions), key=lambda item: item[2]):
            clock[0] = stamp
            topic = {m.JOINT_STATE: JS, m.POSE_STAMPED: OBJ, m.JOINT_TRAJECTORY: CMD}[m.type_of(msg)]
            for callback in transport.subs[topic]:
                callback(msg)
        clock[0] = ms(1.0) + 1
        recorder.stop(success=episode == 0)
    metadata, episodes = read_episodes(tmp_path / "bags", model=model, goal_pos=GOAL_TABLE, goal_frame="table",
                                       gripper="linear")
    assert metadata.task == "push_cube" and metadata.contract == joint_contract()
    assert [e.seed for e in episodes] == [100, 101] and [e.success_at_end for e in episodes] == [True, False]
    for ep in episodes:
        np.testing.assert_allclose(ep.actions.numpy(), actions, atol=1e-5)
        assert ep.meta["task"] == "push_cube"


def test_camera_frames_are_held_decoded_and_resized_like_the_node(tmp_path: Path, model: RobotModel):
    frames = []
    items = states() + joint_commands(demo_actions(10, 8))
    for k in range(31):  # 30 Hz PNG frames whose colour is their index
        t = k / 30
        frame = np.zeros((24, 32, 3), np.uint8)
        frame[..., 0], frame[..., 1], frame[:, 16:, 2] = k, 2 * k, 255
        frames.append(frame)
        ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        items.append((CAM, m.COMPRESSED_IMAGE, ms(round(t, 3)), m.compressed_image(png.tobytes(), "png", stamp=t)))
    metadata, (ep,) = read(write_bag(tmp_path / "bag", items), model, obs_mode="rgb", image_size=16, camera_topic=CAM,
                           object_pose_topic="")
    assert list(metadata.contract.features) == ["qpos", "qvel", "tcp_pose", "goal_pos", "rgb"]
    held = [max(k for k in range(31) if round(k / 30, 3) <= t + 1e-9) for t in GRID]
    expected = np.stack([crop_resize(frames[k], 16) for k in held])
    assert ep.obs["rgb"].dtype == torch.uint8 and torch.equal(ep.obs["rgb"], torch.from_numpy(expected))


def test_convert_to_our_hdf5_and_read_back_equal(tmp_path: Path, model: RobotModel):
    bag = write_bag(tmp_path / "bag", states() + joint_commands(demo_actions(10, 8)))
    metadata, episodes = read(bag, model)
    write_dataset(tmp_path / "out.h5", episodes, metadata)
    metadata2, episodes2 = read_dataset(tmp_path / "out.h5", expect_contract=joint_contract())
    assert metadata2.extra["format"] == "rosbag2" and metadata2.backend == "real"
    for a, b in zip(episodes, episodes2):
        assert all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs)
        assert torch.equal(a.actions, b.actions) and torch.equal(a.success, b.success) and a.meta == b.meta


def test_goal_success_and_tcp_topics(tmp_path: Path, model: RobotModel):
    items = states() + joint_commands(demo_actions(10, 8))
    goal = m.header("table", 0.0)
    point = m.TYPESTORE.types["geometry_msgs/msg/PointStamped"](
        header=goal, point=m.TYPESTORE.types["geometry_msgs/msg/Point"](x=0.1, y=0.2, z=0.3))
    items.append(("/goal", "geometry_msgs/msg/PointStamped", ms(0.0), point))  # latched: sent once
    items += [("/success", m.BOOL, ms(0.0), m.bool_msg(False)), ("/success", m.BOOL, ms(0.4), m.bool_msg(True))]
    items += [("/tcp", m.POSE_STAMPED, ms(k / 100), obj_msg(k / 100)) for k in range(101)]
    _, (ep,) = read(write_bag(tmp_path / "bag", items), model, goal_topic="/goal", goal_pos=[],
                    success_topic="/success", tcp_pose_topic="/tcp")
    np.testing.assert_allclose(ep.obs["goal_pos"].numpy(), np.tile([0.1, 0.2, 0.3], (11, 1)), atol=1e-7)
    assert ep.success.tolist() == [t >= 0.4 for t in GRID]
    np.testing.assert_allclose(ep.obs["tcp_pose"][:, :3].numpy(),
                               np.stack([obj_pos(held_joint_time(t)) + BASE_IN_TASK for t in GRID]), atol=1e-6)


def test_header_time_source_removes_transport_delay(tmp_path: Path, model: RobotModel):
    """Joint states received 7 ms late: receive times hold the previous one, header stamps the right one."""
    items = []
    for k in range(101):
        t = k / 100
        msg = js_msg(t)
        msg.header.stamp = m.stamp_from_ns(ms(t))
        items.append((JS, m.JOINT_STATE, ms(t) + 7_000_000, msg))
        pose = obj_msg(t)
        pose.header.stamp = m.stamp_from_ns(ms(t))
        items.append((OBJ, m.POSE_STAMPED, ms(t), pose))
    items += joint_commands(demo_actions(10, 8))
    bag = write_bag(tmp_path / "bag", items)
    _, (by_header,) = read(bag, model, time_source="header")
    _, (by_receipt,) = read(bag, model)
    held = np.stack([q_at(held_joint_time(t)) for t in GRID])
    late = np.stack([q_at(held_joint_time(t - 0.007)) for t in GRID])
    np.testing.assert_allclose(by_header.obs["qpos"].numpy(), held, atol=1e-6)
    np.testing.assert_allclose(by_receipt.obs["qpos"].numpy(), late, atol=1e-6)


def test_gripper_from_measured_fingers_when_commands_have_none(tmp_path: Path, model: RobotModel):
    items = states() + joint_commands(demo_actions(10, 8), names=list(JOINT_NAMES[:7]))
    bag = write_bag(tmp_path / "bag", items)
    with pytest.raises(DatasetError, match=r"bag: topic /arm_controller/joint_trajectory: commands carry no finger "
                                           r"joint \['panda_finger_joint1', 'panda_finger_joint2'\]"):
        read(bag, model)
    _, (ep,) = read(bag, model, gripper_from_state=True)
    np.testing.assert_allclose(ep.actions[:, 7].numpy(), 1.0)  # fingers measured fully open


def test_scripts_convert_and_inspect_a_bag(tmp_path: Path, capsys):
    import importlib.util

    def script(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main

    bag = write_bag(tmp_path / "bag", states() + joint_commands(demo_actions(10, 8)))
    args = ["--dataset", "ros2_panda", "--task", "push_cube", "--control-mode", "pd_joint_delta_pos",
            "--set", "rosbag.goal_pos=[0.1,-0.05,0.02]"]
    assert script("convert_data")([str(bag), str(tmp_path / "out.h5"), *args]) == 0
    assert capsys.readouterr().out.split()[:4] == ["converted", "episodes=1", "steps=10", "format=rosbag2"]
    assert script("inspect_data")([str(bag), *args]) == 0
    text = "".join(capsys.readouterr().out.split())  # rich folds long values at the terminal width
    assert "backendreal" in text and "obj_pose[6]" in text
    # How far the actions can be trusted: all reconstructed from commands, none outside the range.
    assert "on0steps,reconstructedfromcommandson10,fromthenextjointstateon0;0.0%ofstepswithvaluesoutside[-1,1]" in text, text
    assert script("inspect_data")([str(bag), "--task", "push_cube"]) == 1  # no --dataset: no goal source
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "feature 'goal_pos' has no source" in err and "Traceback" not in err


# ---- bad logs -----------------------------------------------------------------------------------

def _bad(tmp_path: Path, model: RobotModel, items: list, match: str, **options: Any) -> None:
    bag = write_bag(tmp_path / "bad", items)
    with pytest.raises(DatasetError, match=match):
        read(bag, model, **options)


def test_missing_topic(tmp_path: Path, model: RobotModel):
    items = [i for i in states() + joint_commands(demo_actions(10, 8)) if i[0] != OBJ]
    _bad(tmp_path, model, items, r"bad: topic /object_pose \(obj_pose\) is not in the bag; it has "
                                 r"/arm_controller/joint_trajectory, /joint_states")


def test_wrong_message_type(tmp_path: Path, model: RobotModel):
    items = states() + [(CMD, m.STRING, ms(0.1), m.string_msg("x"))]
    _bad(tmp_path, model, items, r"topic /arm_controller/joint_trajectory \(actions\) has type std_msgs/msg/String, "
                                 r"expected trajectory_msgs/msg/JointTrajectory or std_msgs/msg/Float64MultiArray")


def test_unknown_joint_names(tmp_path: Path, model: RobotModel):
    items = states() + joint_commands(demo_actions(10, 8))
    odd = m.joint_state(ORDER[:-1] + ["elbow_joint"], q_at(0.3)[:9], qd_at(0.3)[:9], stamp=0.3)
    items = [i for i in items if not (i[0] == JS and i[2] == ms(0.3))] + [(JS, m.JOINT_STATE, ms(0.3), odd)]
    _bad(tmp_path, model, items, r"bad: topic /joint_states at t=0\.300 s: joint state has unknown joints "
                                 r"\['elbow_joint'\].*lacks joints \['panda_joint5'\]")


def test_unknown_command_joint(tmp_path: Path, model: RobotModel):
    items = states() + joint_commands(demo_actions(10, 8), names=list(JOINT_NAMES[:8]) + ["gripper"])
    _bad(tmp_path, model, items, r"topic /arm_controller/joint_trajectory at t=0\.105 s: command has unknown joints "
                                 r"\['gripper'\]")


def test_gap_longer_than_max_periods(tmp_path: Path, model: RobotModel):
    items = [i for i in states() + joint_commands(demo_actions(10, 8))
             if not (i[0] == JS and ms(0.3) < i[2] < ms(0.5))]
    _bad(tmp_path, model, items, r"bad: topic /joint_states: gap of 0\.200 s from t=0\.300 s to t=0\.500 s "
                                 r"\(max_gap_periods 3 = 0\.150 s\)")
    # A looser limit accepts the same log.
    bag = tmp_path / "bad"
    _, (ep,) = read(bag, model, max_gap_periods=5)
    assert ep.length == 10


def test_nan_in_joint_state(tmp_path: Path, model: RobotModel):
    q = q_at(0.2)
    q[2] = np.nan
    items = [i for i in states() if not (i[0] == JS and i[2] == ms(0.2))] + [(JS, m.JOINT_STATE, ms(0.2),
                                                                               js_msg(0.2, q=q))]
    _bad(tmp_path, model, items + joint_commands(demo_actions(10, 8)),
         r"bad: topic /joint_states at t=0\.200 s: joint state has NaN/inf for \['panda_joint3'\]")


def test_nan_in_command(tmp_path: Path, model: RobotModel):
    commands = joint_commands(demo_actions(10, 8))
    topic, type_name, stamp, msg = commands[5]
    msg.points[0].positions[0] = np.nan
    _bad(tmp_path, model, states() + commands, r"bad: topic /arm_controller/joint_trajectory at t=0\.352 s: command "
                                               r"has NaN/inf for panda_finger_joint2")


def test_truncated_bag(tmp_path: Path, model: RobotModel):
    bag = write_bag(tmp_path / "bad", states() + joint_commands(demo_actions(10, 8)))
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"bad: not a readable rosbag2 bag \(truncated or corrupt\?\)"):
        read(bag, model)


def test_contract_mismatch_with_a_checkpoint(tmp_path: Path, model: RobotModel):
    bag = write_bag(tmp_path / "bad", states() + joint_commands(demo_actions(10, 8)))
    checkpoint = task_contract("push_cube", "state", "pd_ee_delta_pos")
    with pytest.raises(DatasetError, match=r"bad: contract mismatch: action_dim 8 in dataset, 4 in checkpoint; "
                                           r"control_mode 'pd_joint_delta_pos' in dataset"):
        read(bag, model, contract=checkpoint)
    odd = Contract(features={"qpos": Feature((7,)), "goal_pos": Feature((3,))}, action_dim=8,
                   control_mode="pd_joint_delta_pos")
    with pytest.raises(DatasetError, match=r"cannot give this contract:.*feature 'qpos' is \[7\] in the checkpoint, "
                                           r"arm 'panda' gives \[9\]"):
        read(bag, model, task="", contract=odd)


def test_unterminated_marker_and_missing_goal_source(tmp_path: Path, model: RobotModel):
    items = states() + joint_commands(demo_actions(10, 8)) + [marker(0.1, "start")]
    _bad(tmp_path, model, items, r"topic /sim2real/episode_marker: the episode started at t=0\.100 s has no stop "
                                 r"or abort marker")
    with pytest.raises(DatasetError, match=r"feature 'goal_pos' has no source: set goal_topic or goal_pos"):
        read(tmp_path / "bad", model, goal_pos=[])
