"""`scripts/inspect_data.py --suggest` on a recording that looks like a lab's, not ours: other topic
names, the arm's joints shuffled with an extra joint, poses in `world` placed by /tf_static
(rotated), a 160 ms gap in the joint states, a JPEG camera, MCAP and sqlite3 bags side by side.
The suggested YAML then reads the recording with `--dataset` and nothing else."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from rich.console import Console

from sim2real.data import read_episodes
from sim2real.data.formats import dataset_config
from sim2real.data.suggest import suggest, survey, to_yaml
from sim2real.robot.arm_model import RobotModel
from sim2real.ros import messages as m
from sim2real.ros.frames import TF_MESSAGE, pose_matrix, tf_message, transform_stamped
from sim2real.ros.observation import JOINT_NAMES, POINT_STAMPED
from tasks.layout import ROBOT_BASE_POS

from test_rosbag_reader import write_bag

NS = 1_000_000_000
JS, CUBE, GOAL = "/franka/joint_states", "/vision/cube_pose", "/task/goal_point"
CMD, CAM = "/position_trajectory_controller/joint_trajectory", "/realsense/color/image_raw/compressed"
SHUFFLED = ["lab_rail_joint", *[JOINT_NAMES[i] for i in (4, 8, 0, 6, 2, 7, 1, 5, 3)]]
REST = np.array([0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04])
# The robot base in the lab's world frame: on a 75 cm table, turned 90 degrees about z.
BASE_IN_WORLD = pose_matrix([0.3, -0.2, 0.75], [0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])


def q_at(t: float) -> np.ndarray:
    q = REST + 0.1 * math.sin(2 * t) * np.array([1, -1, 1, 1, -1, 1, -1, 0, 0])
    q[7:] = 0.04 if t < 1.0 else 0.02  # closes on the cube after a second
    return q


def cube_in_world(t: float) -> np.ndarray:
    return (BASE_IN_WORLD @ np.array([0.6 + 0.02 * t, 0.05, 0.02, 1.0]))[:3]


def lab_bag(path: Path, storage: str, seconds: float = 2.0, commands: bool = True) -> Path:
    items: list[tuple[str, str, int, Any]] = []
    ns = lambda t: round(t * NS)  # noqa: E731
    world_base = transform_stamped("world", "panda_link0", BASE_IN_WORLD, 0.0)
    items.append(("/tf_static", TF_MESSAGE, ns(0.0), tf_message([world_base])))
    for k in range(int(seconds * 100)):
        t = k / 100
        if 0.8 < t < 0.96:  # the lab's 160 ms hiccup
            continue
        q = q_at(t)
        values = [0.0 if n == "lab_rail_joint" else q[JOINT_NAMES.index(n)] for n in SHUFFLED]
        items.append((JS, m.JOINT_STATE, ns(t), m.joint_state(SHUFFLED, values, np.zeros(10), stamp=t)))
    for k in range(int(seconds * 30)):
        t = k / 30
        items.append((CUBE, m.POSE_STAMPED, ns(t), m.pose_stamped("world", cube_in_world(t), [0, 0, 0, 1], stamp=t)))
    for k in range(int(seconds * 5)):
        t = k / 5
        items.append((GOAL, POINT_STAMPED, ns(t), point("world", cube_in_world(0.0) + [0, 0, 0.1], t)))
    names = list(reversed(JOINT_NAMES))
    for k in range(int(seconds * 20) - 1 if commands else 0):
        t = 0.05 * k + 0.002
        target = q_at(t + 0.05)
        items.append((CMD, m.JOINT_TRAJECTORY, ns(t), m.joint_trajectory(names, [target[[JOINT_NAMES.index(n)
                                                                                          for n in names]]], [0.05])))
    image = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    for k in range(int(seconds * 15)):
        t = k / 15
        items.append((CAM, m.COMPRESSED_IMAGE, ns(t), m.compressed_image(image, "jpeg", stamp=t, frame_id="cam")))
    return write_bag(path, items, storage)


def point(frame: str, xyz: np.ndarray, t: float) -> Any:
    types = m.TYPESTORE.types
    return types[POINT_STAMPED](header=m.header(frame, t), point=types["geometry_msgs/msg/Point"](*map(float, xyz)))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab")
    lab_bag(root / "demo_morning", "mcap")
    lab_bag(root / "demo_afternoon", "sqlite3")
    return root


def test_the_survey_and_the_choices(lab: Path) -> None:
    found = survey(lab)
    assert found.storage == {"mcap", "sqlite3"} and len(found.bags) == 2
    assert found.topics[JS].joint_names == SHUFFLED and found.topics[JS].max_gap_s == pytest.approx(0.17, abs=0.011)
    choices = suggest(found, task="pick_cube")
    value = {k: c.value for k, c in choices.items()}
    assert value["arm"] == "panda" and value["task"] == "pick_cube"
    assert value["rosbag.joint_states_topic"] == JS and value["rosbag.ignore_unknown_joints"] is True
    assert value["rosbag.object_pose_topic"] == CUBE and value["rosbag.goal_topic"] == GOAL
    assert value["rosbag.command_topic"] == CMD and value["rosbag.actions_from"] == "command"
    assert value["rosbag.camera_topic"] == CAM and value["rosbag.tf_static_topic"] == "/tf_static"
    assert value["rosbag.episodes"] == "bag" and value["rosbag.max_gap_periods"] == 4.0
    assert "resolve to panda_link0" in choices["rosbag.object_pose_topic"].why
    assert not [k for k, c in choices.items() if c.undecided]


def test_suggest_then_dataset_reads_the_lab_recording(lab: Path, tmp_path: Path, capsys) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("inspect_data", Path(__file__).parents[1] / "scripts" /
                                                  "inspect_data.py")
    inspect_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inspect_data)  # type: ignore[union-attr]
    # Without a dataset YAML the recording does not read (our topic names are not the lab's).
    assert inspect_data.main([str(lab), "--task", "pick_cube"], console=Console(width=200)) == 1
    out = tmp_path / "lab.yaml"
    assert inspect_data.main([str(lab), "--suggest", "--task", "pick_cube", "--out", str(out)]) == 0
    text = out.read_text()
    assert "# UNDECIDED" not in text and "ignore_unknown_joints: true" in text
    yaml.safe_load(text)  # plain YAML
    assert inspect_data.main([str(lab), "--dataset", str(out)], console=Console(width=200)) == 0
    assert "episodes" in capsys.readouterr().out
    # The poses went world -> base (the recorded /tf_static, rotated) -> task frame.
    config = dataset_config(str(out))
    _, episodes = read_episodes(lab, config.format, config)
    assert len(episodes) == 2
    ep = episodes[0]
    expected = np.array([0.6, 0.05, 0.02]) + np.array(ROBOT_BASE_POS)  # the cube at t = 0, in the task frame
    np.testing.assert_allclose(ep.obs["obj_pose"].numpy()[0, :3], expected, atol=2e-3)
    model = RobotModel.from_urdf()
    tcp = model.fk_matrix(ep.obs["qpos"].numpy()[0, :7].astype(np.float64))[1] + np.array(ROBOT_BASE_POS)
    np.testing.assert_allclose(ep.obs["tcp_pose"].numpy()[0, :3], tcp, atol=1e-4)
    assert ep.actions.numpy()[:, -1].min() == -1.0  # the gripper closed on the cube


def test_a_hand_guided_recording_reads_from_its_joint_states(tmp_path: Path) -> None:
    lab_bag(tmp_path / "guided" / "demo", "mcap", commands=False)
    choices = suggest(survey(tmp_path / "guided"), task="pick_cube")
    assert choices["rosbag.actions_from"].value == "next_state" and choices["rosbag.command_topic"].value == ""
    assert [k for k, c in choices.items() if c.undecided] == ["rosbag.next_state_gain"]
    out = tmp_path / "guided.yaml"
    out.write_text(to_yaml(choices, "guided"))
    config = dataset_config(str(out))
    _, (ep,) = read_episodes(tmp_path / "guided", config.format, config)
    assert ep.meta["action_source"] == "next_state" and ep.length >= 35


def test_a_recording_through_the_policy_node_is_read_with_its_decided_actions(tmp_path: Path) -> None:
    """Bags written through the node carry ~/action with per-input stamps in its layout; --suggest
    recognises it as the decided actions (not as a Float64MultiArray command)."""
    from test_demo_fidelity import record_expert

    bags, _ = record_expert(tmp_path, "push_cube", [3])
    choices = suggest(survey(bags))
    assert choices["rosbag.action_topic"].value == "/sim2real_policy_node/action"
    assert choices["rosbag.actions"].value == "auto"
    assert choices["rosbag.command_topic"].value == "/arm_controller/joint_trajectory"
