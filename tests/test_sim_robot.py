"""The simulated ROS 2 arm without DDS: joint-target drives, both controller interfaces, bad
commands, domain shifts, episodes and the camera."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tasks  # noqa: E402
from sim2real.ros import messages as m  # noqa: E402
from sim2real.ros.observation import JOINT_NAMES  # noqa: E402
from sim2real.ros.images import decode_image  # noqa: E402
from robot_bridge.sim_robot import sim_robot_params  # noqa: E402
from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams  # noqa: E402
from sim2real.robot.arm_model import ActionScales  # noqa: E402
from tasks.mujoco.joint_drive import step_joint_targets  # noqa: E402

gripper_target = ActionScales().gripper_target


def test_joint_targets_drive_like_the_task_controller() -> None:
    a, b = (tasks.make_env("push_cube", backend="mujoco", control_mode="pd_joint_delta_pos") for _ in range(2))
    a.reset(seed=3)
    b.reset(seed=3)
    wa, wb = a.worlds[0], b.worlds[0]
    rng = np.random.default_rng(0)
    for _ in range(4):
        action = rng.uniform(-1, 1, 8)
        arm = np.clip(wb.data.qpos[wb.index.arm_qpos] + 0.1 * action[:7], wb.arm_low, wb.arm_high)
        wa.apply_action(action)
        step_joint_targets(wb, np.concatenate([arm, [gripper_target(action[7])] * 2]))
        assert np.array_equal(wa.data.qpos, wb.data.qpos) and np.array_equal(wa.data.qvel, wb.data.qvel)
    with pytest.raises(ValueError, match=r"shape \[9\]"):
        step_joint_targets(wb, np.zeros(7), 1)


@pytest.fixture(scope="module")
def core() -> SimRobotCore:
    return SimRobotCore(SimRobotParams(task="push_cube", seed=0, settle_s=0.1))


def test_trajectory_and_forward_commands_move_the_arm(core: SimRobotCore) -> None:
    core.reset(1)
    assert core.on_trajectory(m.joint_trajectory(JOINT_NAMES, [np.zeros(9)], [0.1]))[0].startswith("command ignored")
    core.advance(0.1)  # settled
    q0 = core.joint_state()[0]
    target = q0.copy()
    target[[0, 3]] += (0.3, 0.2)
    # Only two joints named, out of order: the others keep their targets.
    msg = m.joint_trajectory(["panda_joint4", "panda_joint1"], [[target[3], target[0]]], [0.5])
    assert core.on_trajectory(msg) == []
    core.advance(0.25)
    halfway = core.world.targets.copy()
    assert 0.1 < halfway[0] - q0[0] < 0.2  # interpolated, not a jump
    core.advance(1.0)
    assert np.allclose(core.joint_state()[0], target, atol=5e-3)
    # forward_command_controller: values in the controller's joint order.
    ordered = SimRobotCore(SimRobotParams(task="push_cube", controller_joints=["panda_joint2", "panda_joint1"],
                                          settle_s=0.0))
    start = ordered.joint_state()[0]
    assert ordered.on_forward(m.float64_multi_array([start[1] - 0.2, start[0] + 0.1])) == []
    ordered.advance(1.0)
    q = ordered.joint_state()[0]
    assert q[0] == pytest.approx(start[0] + 0.1, abs=5e-3) and q[1] == pytest.approx(start[1] - 0.2, abs=5e-3)


def test_bad_commands_are_rejected_with_reasons(core: SimRobotCore) -> None:
    core.reset(2)
    core.advance(0.1)
    before = core.rejected
    names = list(JOINT_NAMES)
    assert "expected distinct names" in core.on_trajectory(m.joint_trajectory(["elbow"], [[0.0]], [0.1]))[0]
    assert "no points" in core.on_trajectory(m.joint_trajectory(names, np.zeros((0, 9)), []))[0]
    assert "finite" in core.on_trajectory(m.joint_trajectory(names, [[np.nan] * 9], [0.1]))[0]
    assert "not ascending" in core.on_trajectory(m.joint_trajectory(names, np.zeros((2, 9)), [0.2, 0.1]))[0]
    assert "expected 9 finite values" in core.on_forward(m.float64_multi_array([0.0] * 7))[0]
    assert core.rejected == before + 5 and len(core.status()["last_reasons"]) == 5
    q = core.joint_state()[0]
    core.advance(0.2)
    assert np.allclose(core.joint_state()[0], q, atol=1e-3)  # nothing moved


def test_episodes_end_and_resets_are_reproducible() -> None:
    sim = SimRobotCore(SimRobotParams(task="push_cube", seed=5, episode_length=4, settle_s=0.05))
    first = sim.object_pose_msg(0.0).pose.position
    events = sim.advance(0.4)
    assert [e["event"] for e in events] == ["episode_end"] and events[0]["steps"] == 4
    assert sim.status()["state"] == "done"
    assert sim.on_forward(m.float64_multi_array([0.0] * 9))[0].startswith("command ignored")
    assert sim.reset(-1)["seed"] == 6 and sim.episode == 1
    assert sim.reset(5)["episode"] == 2
    again = sim.object_pose_msg(0.0).pose.position
    assert (again.x, again.y, again.z) == (first.x, first.y, first.z)
    # Object and goal are published in the base frame (the task frame shifted by the base position).
    goal = sim.goal_msg(0.0)
    assert goal.header.frame_id == "panda_link0"
    assert goal.point.x == pytest.approx(sim.env.rules.goal_pos(sim.world)[0] + 0.615)


def test_domain_shifts_reach_the_arm() -> None:
    params, _ = sim_robot_params(["--ros-args", "-p", "domain:=target", "-p", "domain.obs_noise_std:=0.01",
                                  "-p", "settle_s:=0.0"])
    sim = SimRobotCore(params)
    source = SimRobotCore(SimRobotParams(settle_s=0.0))
    drives = sim.env.index.arm_actuators
    gains = sim.world.model.actuator_gainprm[drives, 0]
    assert np.allclose(gains, 0.8 * source.world.model.actuator_gainprm[drives, 0])
    assert sim.latency_s == pytest.approx(0.05)
    published = np.asarray(sim.joint_state_msg(0.0).position)
    assert 0.001 < np.abs(published - sim.joint_state()[0]).max() < 0.06  # observation noise on published states
    q0 = sim.joint_state()[0]
    target = q0.copy()
    target[0] += 0.2
    sim.on_forward(m.float64_multi_array(target))
    sim.advance(0.04)  # inside the one-step action latency: the command has not started
    assert np.allclose(sim.world.targets[:7], q0[:7])
    sim.advance(0.02)
    assert sim.world.targets[0] == pytest.approx(target[0])
    with pytest.raises(ValueError, match="domain.friction: not a DomainParams field"):
        SimRobotCore(sim_robot_params(["--ros-args", "-p", "domain.friction:=0.5"])[0])


def test_camera_frames_are_jpeg_of_the_observation_camera() -> None:
    try:
        sim = SimRobotCore(SimRobotParams(camera=True, camera_size=96))
    except Exception as exc:  # no OpenGL on this machine
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    msg = sim.camera_msg(0.0)
    assert msg.format == "jpeg"
    frame = decode_image(msg.data, msg.format)
    assert frame.shape == (96, 96, 3) and frame.std() > 10
    raw = SimRobotCore(SimRobotParams(camera=True, camera_size=32, camera_format="raw")).camera_msg(0.0)
    assert (raw.encoding, raw.height, raw.width) == ("rgb8", 32, 32)
