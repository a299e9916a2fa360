"""tf2 frames (sim2real/ros/frames.py): the graph, rotated mounts, the assembler, the node core and bags.

Expected values are composed here by hand with numpy from the transforms each test chooses; the
graph (pytransform3d underneath) must find and compose the same chains.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sim2real.contract import ContractMismatch
from sim2real.data import DatasetError
from sim2real.robot.arm_model import RobotModel
from sim2real.ros import messages as m
from sim2real.robot.rotations import matrix_to_quat
from sim2real.ros.frames import (
    TF_MESSAGE, FrameGraph, Frames, base_in_task_matrix, pose_matrix, quat_wxyz_multiply,
    tf_message, transform_stamped,
)
from sim2real.ros.observation import ObservationAssembler, mujoco_quat
from tasks.spec import task_contract

import test_rosbag_reader as rb


def rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def hom(r: np.ndarray, t: list[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = r, t
    return out


def xyzw(r: np.ndarray) -> list[float]:
    w, x, y, z = matrix_to_quat(r)
    return [x, y, z, w]


# A cell: the arm's base and a camera are placed in `world`, the task frame (`table`) too.
WORLD_BASE = hom(rot("z", math.pi / 2), [1.0, 2.0, 0.1])
WORLD_CAMERA = hom(rot("x", math.pi) @ rot("z", 0.3), [1.2, 1.9, 1.1])
WORLD_TABLE = hom(rot("z", math.pi / 2), [1.0, 2.615, 0.1])  # the base sits at (-0.615, 0, 0) in it


def cell_graph(history_s: float = 10.0) -> FrameGraph:
    graph = FrameGraph(history_s)
    msg = tf_message([transform_stamped("world", "panda_link0", WORLD_BASE),
                      transform_stamped("world", "camera_optical", WORLD_CAMERA),
                      transform_stamped("/world", "table", WORLD_TABLE)])
    assert graph.add_message(msg, static=True) == []
    return graph


def test_chains_with_rotations_compose_like_matrices() -> None:
    graph = cell_graph()
    expected = np.linalg.inv(WORLD_BASE) @ WORLD_CAMERA  # camera in the base frame
    np.testing.assert_allclose(graph.lookup("panda_link0", "camera_optical"), expected, atol=1e-12)
    np.testing.assert_allclose(graph.lookup("camera_optical", "panda_link0"), np.linalg.inv(expected), atol=1e-12)
    table_base = graph.lookup("table", "panda_link0")
    np.testing.assert_allclose(table_base, hom(np.eye(3), [-0.615, 0, 0]), atol=1e-12)
    assert graph.lookup("table", "nowhere") is None and graph.frames == {"world", "panda_link0", "camera_optical",
                                                                        "table"}
    # tf2's tree rule: a frame has one parent.
    with pytest.raises(ValueError, match="already has parent 'world'"):
        graph.set_transform("camera_optical", "panda_link0", np.eye(4))
    bad = tf_message([transform_stamped("world", "world", np.eye(4))])
    assert "two different" in graph.add_message(bad)[0]


def test_moving_frames_hold_their_latest_sample_and_refuse_the_past() -> None:
    graph = FrameGraph(history_s=1.0)
    graph.set_transform("world", "base", np.eye(4), static=True)
    for k in range(30):  # an object tracked at 10 Hz from t = 100 s, moving along x
        graph.set_transform("world", "object", hom(np.eye(3), [0.1 * k, 0, 0]), stamp=100.0 + 0.1 * k)
    assert graph.lookup("base", "object", time=102.05)[0, 3] == pytest.approx(2.0)
    assert graph.lookup("base", "object")[0, 3] == pytest.approx(2.9)  # latest
    # Older than the kept history (1 s before the newest sample): no transform, as tf2 extrapolation fails.
    assert graph.lookup("base", "object", time=101.0) is None
    assert graph.lookup("base", "base", time=0.0) is not None


def test_base_in_task_may_carry_a_rotation() -> None:
    np.testing.assert_allclose(base_in_task_matrix([1, 2, 3]), hom(np.eye(3), [1, 2, 3]))
    quarter = [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)]
    np.testing.assert_allclose(base_in_task_matrix([1, 2, 3, *quarter]), hom(rot("z", math.pi / 2), [1, 2, 3]),
                               atol=1e-12)
    with pytest.raises(ValueError, match=r"base_in_task=\[1, 2\]: expected 3 numbers"):
        base_in_task_matrix([1, 2])
    with pytest.raises(ValueError, match="norm"):
        base_in_task_matrix([1, 2, 3, 0, 0, 0, 0])


@pytest.fixture(scope="module")
def model() -> RobotModel:
    return RobotModel.from_urdf()


def assembler(model: RobotModel, frames: Frames) -> ObservationAssembler:
    contract = task_contract("push_cube", "state", "pd_ee_delta_pos")
    return ObservationAssembler(contract, model, {"obj_pose": "/object_pose", "goal_pos": "goal_pos"}, frames)


def test_assembler_resolves_poses_through_tf_and_a_rotated_mount(model: RobotModel) -> None:
    obs = assembler(model, Frames("panda_link0", "table", (0.0, 0.0, 0.0)))
    pose_w = hom(rot("y", 0.4) @ rot("z", -1.0), [1.3, 2.2, 0.15])  # the object in world
    msg = m.pose_stamped("world", pose_w[:3, 3], xyzw(pose_w[:3, :3]), stamp=5.0)
    reasons = obs.on_object_pose(msg, 5.0)
    assert len(reasons) == 1 and "frame 'world', which does not resolve" in reasons[0], reasons
    assert "no tf received" in reasons[0]
    assert obs.on_tf(tf_message([transform_stamped("world", "panda_link0", WORLD_BASE),
                                 transform_stamped("world", "table", WORLD_TABLE)]), static=True) == []
    assert obs.on_object_pose(msg, 5.0) == []
    expected = np.linalg.inv(WORLD_TABLE) @ pose_w
    got = obs.inputs["obj_pose"].value
    np.testing.assert_allclose(got[:3], expected[:3, 3], atol=1e-9)
    np.testing.assert_allclose(np.abs(got[3:]), np.abs(matrix_to_quat(expected[:3, :3])), atol=1e-9)
    # tcp_pose: FK in the base, then the base's pose in the task frame from tf (not base_in_task).
    q = rb.REST[:7]
    r_b, p_b = model.fk_matrix(q)
    table_base = np.linalg.inv(WORLD_TABLE) @ WORLD_BASE
    np.testing.assert_allclose(obs.tcp_pose(q), np.concatenate(
        [table_base[:3, :3] @ p_b + table_base[:3, 3], mujoco_quat(table_base[:3, :3] @ r_b)]), atol=1e-9)

    # Without tf, a mount turned 90 degrees about z given as base_in_task.
    quarter = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    turned = assembler(model, Frames("panda_link0", "table", (0.2, 0.1, 0.0, *quarter)))
    r_z = rot("z", math.pi / 2)
    np.testing.assert_allclose(turned.tcp_pose(q)[:3], r_z @ p_b + [0.2, 0.1, 0.0], atol=1e-9)
    np.testing.assert_allclose(turned.tcp_pose(q)[3:], mujoco_quat(r_z @ r_b), atol=1e-9)
    assert turned.on_object_pose(m.pose_stamped("panda_link0", [0.5, 0, 0.02], [0, 0, 0, 1], stamp=1.0), 1.0) == []
    got = turned.inputs["obj_pose"].value
    np.testing.assert_allclose(got, [0.2, 0.6, 0.02, math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], atol=1e-9)


def test_an_identity_frame_change_keeps_the_published_quaternion(model: RobotModel) -> None:
    obs = assembler(model, Frames())
    q = [0.0, 0.0, -0.6, -0.8]  # w < 0 as published: kept, sign and all
    assert obs.on_object_pose(m.pose_stamped("panda_link0", [0.5, 0, 0.02], q, stamp=1.0), 1.0) == []
    np.testing.assert_array_equal(obs.inputs["obj_pose"].value[3:], [-0.8, 0.0, 0.0, -0.6])
    np.testing.assert_allclose(quat_wxyz_multiply(np.array([1.0, 0, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])),
                               [0.1, 0.2, 0.3, 0.4])


def test_the_node_core_follows_tf(model: RobotModel) -> None:
    from robot_bridge.policies import ReachPolicy
    from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams

    params = PolicyNodeParams(policy="reach", reach_target=[0.1, 0.0, 0.1], goal_topic="")
    core = PolicyNodeCore(ReachPolicy(params.reach_target), params)
    msg = m.pose_stamped("camera_optical", [0.01, -0.02, 0.9], [0, 0, 0, 1], stamp=3.0)
    assert core.on_object_pose(msg, 3.0) and core.rejected == {"object_pose": 1}
    assert core.on_tf(tf_message([transform_stamped("world", "panda_link0", WORLD_BASE),
                                  transform_stamped("world", "camera_optical", WORLD_CAMERA)]), static=True) == []
    assert core.on_object_pose(msg, 3.0) == []
    expected = np.linalg.inv(WORLD_BASE) @ WORLD_CAMERA @ [0.01, -0.02, 0.9, 1.0]
    np.testing.assert_allclose(core.obs.inputs["obj_pose"].value[:3], expected[:3] + [-0.615, 0, 0], atol=1e-9)
    assert core.on_tf(tf_message([transform_stamped("panda_link0", "world", np.eye(4))]), static=False)
    assert core.rejected["tf"] == 1
    with pytest.raises(ValueError, match="parameter base_in_task"):
        PolicyNodeParams(policy="reach", reach_target=[0.1, 0.0, 0.1], base_in_task=[0, 0])


def test_tf_messages_round_trip_the_codec() -> None:
    msg = tf_message([transform_stamped("world", "panda_link0", WORLD_BASE, stamp=1.5)])
    back = m.deserialize(m.serialize(msg, TF_MESSAGE), TF_MESSAGE)
    graph = FrameGraph()
    graph.add_message(back)
    np.testing.assert_allclose(graph.lookup("world", "panda_link0"), WORLD_BASE, atol=1e-12)
    np.testing.assert_allclose(pose_matrix([1, 2, 3], xyzw(rot("x", 0.7)))[:3, :3], rot("x", 0.7), atol=1e-12)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bags_resolve_poses_through_their_recorded_tf(tmp_path: Path, model: RobotModel, storage: str) -> None:
    """The reader's own test bag, with every object pose re-expressed in `world` and the cell's
    /tf_static recorded: the episode must equal the one read from base-frame poses."""
    actions = rb.demo_actions(10, 8)
    plain = rb.write_bag(tmp_path / "plain", rb.states() + rb.joint_commands(actions), storage)
    items = []
    for topic, kind, stamp, msg in rb.states() + rb.joint_commands(actions):
        if topic == rb.OBJ:
            p = msg.pose.position
            o = msg.pose.orientation
            pose_w = WORLD_BASE @ pose_matrix([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
            msg = m.pose_stamped("world", pose_w[:3, 3], xyzw(pose_w[:3, :3]), stamp=msg.header.stamp)
        items.append((topic, kind, stamp, msg))
    static = tf_message([transform_stamped("world", "panda_link0", WORLD_BASE, stamp=0.0),
                         transform_stamped("world", "table", WORLD_TABLE, stamp=0.0)])
    items.append(("/tf_static", TF_MESSAGE, rb.ms(0.0), static))
    framed = rb.write_bag(tmp_path / "framed", items, storage)
    _, (want,) = rb.read(plain, model)
    _, (got,) = rb.read(framed, model, base_in_task=[9.0, 9.0, 9.0])  # tf wins over the fallback
    for name in ("qpos", "tcp_pose", "goal_pos"):
        np.testing.assert_allclose(got.obs[name].numpy(), want.obs[name].numpy(), atol=1e-6)
    obj_got, obj_want = got.obs["obj_pose"].numpy(), want.obs["obj_pose"].numpy()
    np.testing.assert_allclose(obj_got[:, :3], obj_want[:, :3], atol=1e-6)
    # The same rotation, up to the quaternion's sign.
    dots = np.abs(np.sum(obj_got[:, 3:] * obj_want[:, 3:], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)
    np.testing.assert_allclose(got.actions.numpy(), want.actions.numpy(), atol=1e-6)

    # Without the recorded tf the same poses cannot be placed, and the error says which frames would do.
    no_tf = rb.write_bag(tmp_path / "no_tf", [it for it in items if it[0] != "/tf_static"], storage)
    with pytest.raises(DatasetError, match="frame 'world', which does not resolve"):
        rb.read(no_tf, model)


def test_a_contract_mismatch_still_names_missing_sources(model: RobotModel) -> None:
    contract = task_contract("push_cube", "state", "pd_ee_delta_pos")
    with pytest.raises(ContractMismatch, match="obj_pose"):
        ObservationAssembler(contract, model, {"goal_pos": "goal_pos"})
