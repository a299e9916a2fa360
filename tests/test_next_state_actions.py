"""Demos without a command topic (`rosbag.actions_from: next_state`, sim2real/data/bag_actions.py):
each action from the next measured joint state, for hand-guided, MoveIt and action-executed demos.

An arm that reaches every target within a period gives back its commanded actions exactly; the
simulated Panda, recorded through the policy node, gives them back once scaled by its tracking
gain, which is fitted on one episode and checked on others.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sim2real.data import DatasetError, read_episodes  # noqa: E402
from sim2real.data.bag_actions import tracking_gain  # noqa: E402
from sim2real.data.formats import dataset_config  # noqa: E402
from sim2real.robot.arm_model import ActionScales  # noqa: E402
from sim2real.ros import messages as m  # noqa: E402
from sim2real.ros.observation import JOINT_NAMES  # noqa: E402
from tasks.spec import task_contract  # noqa: E402

from test_demo_fidelity import record_expert  # noqa: E402
from test_rosbag_reader import ORDER, write_bag  # noqa: E402

NS = 1_000_000_000
JS, OBJ, CMD = "/joint_states", "/object_pose", "/arm_controller/joint_trajectory"
REST = np.array([0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04])
PERIOD = 0.05
STEPS = 12


def tracked_bag(path: Path, with_commands: bool, storage: str = "mcap") -> tuple[Path, np.ndarray]:
    """A position-controlled arm that is at each commanded target one period later: joint states at
    100 Hz (shuffled names), an object pose, and (with_commands) the commands. Returns the bag and
    the commanded joint targets [STEPS, 9]."""
    rng = np.random.default_rng(3)
    q = [REST.copy()]
    for k in range(STEPS):
        step = np.concatenate([rng.uniform(-0.06, 0.06, 7), [0.0, 0.0]])
        fingers = 0.04 if k < 5 else max(0.0, q[-1][7] - 0.015)  # closes from step 5 on
        q.append(q[-1] + step)
        q[-1][7:] = fingers
    items: list[tuple[str, str, int, Any]] = []
    start = 0.1
    for i in range(int((STEPS + 1) * PERIOD * 100) + 1):
        t = start + i / 100
        k = min(int(round((t - start) / PERIOD, 6)), STEPS)
        idx = [JOINT_NAMES.index(n) for n in ORDER]
        items.append((JS, m.JOINT_STATE, round(t * NS), m.joint_state(ORDER, q[k][idx], np.zeros(9), stamp=t)))
        items.append((OBJ, m.POSE_STAMPED, round(t * NS), m.pose_stamped("panda_link0", [0.6, 0.0, 0.02],
                                                                          [0.0, 0.0, 0.0, 1.0], stamp=t)))
    if with_commands:
        for k in range(STEPS):
            t = start + k * PERIOD
            items.append((CMD, m.JOINT_TRAJECTORY, round(t * NS) + 1,
                          m.joint_trajectory(list(JOINT_NAMES), [q[k + 1]], [PERIOD])))
    return write_bag(path, items, storage), np.stack(q[1:])


def read(bag: Path, mode: str, **rosbag: Any) -> Any:
    config = dataset_config("ros2_panda", [f"control_mode={mode}", "task=push_cube"])
    config.rosbag = dataclasses.replace(config.rosbag, goal_pos=[0.1, 0.0, 0.02], action_topic="", **rosbag)
    _, episodes = read_episodes(bag, config.format, config, contract=task_contract("push_cube", "state", mode))
    return episodes


@pytest.mark.parametrize("mode", ["pd_joint_delta_pos", "pd_ee_delta_pos"])
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_an_arm_that_reaches_its_targets_gives_back_the_commanded_actions(tmp_path: Path, mode: str,
                                                                          storage: str) -> None:
    commanded_bag, _ = tracked_bag(tmp_path / "commanded", with_commands=True, storage=storage)
    guided_bag, targets = tracked_bag(tmp_path / "guided", with_commands=False, storage=storage)
    for gripper in ("linear", "binary"):
        (want,) = read(commanded_bag, mode, gripper=gripper, actions="commands")
        # No command topic at all (a hand-guided demo): refused by default, read with next_state.
        with pytest.raises(DatasetError, match="is not in the bag.*reads with actions_from: next_state"):
            read(guided_bag, mode, gripper=gripper)
        (got,) = read(guided_bag, mode, gripper=gripper, actions_from="next_state")
        # The joint states run one period past the last command: the arm standing still, a zero step.
        assert got.meta["action_source"] == "next_state" and want.length == STEPS and got.length == STEPS + 1
        np.testing.assert_allclose(got.obs["qpos"].numpy()[:STEPS + 1], want.obs["qpos"].numpy(), atol=1e-6)
        np.testing.assert_allclose(got.actions.numpy()[:STEPS], want.actions.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.actions.numpy()[STEPS, :-1], 0.0, atol=1e-6)
    # The actions are the targets' own: joint deltas at the Panda's scale, the gripper closing at step 5.
    if mode == "pd_joint_delta_pos":
        expected = np.clip((targets[:, :7] - np.vstack([REST, targets[:-1]])[:, :7]) / ActionScales().joint_delta_pos,
                           -1, 1)
        np.testing.assert_allclose(got.actions.numpy()[:STEPS, :7], expected, atol=1e-5)
    assert got.actions.numpy()[:, -1].tolist() == [1.0] * 5 + [-1.0] * (STEPS + 1 - 5)


def test_option_refusals(tmp_path: Path) -> None:
    bag, _ = tracked_bag(tmp_path / "bag", with_commands=False)
    for options, match in (({"actions_from": "trajectory"}, "actions_from='trajectory': expected one of"),
                           ({"actions_from": "next_state", "actions": "intent"}, "contradict"),
                           ({"actions_from": "next_state", "next_state_gain": 0.0}, "next_state_gain=0.0")):
        with pytest.raises(DatasetError, match=match):
            read(bag, "pd_joint_delta_pos", **options)


def test_the_simulated_arm_recorded_through_the_node_gives_back_its_commands_scaled_by_its_gain(
        tmp_path: Path) -> None:
    """The expert drives the simulated Panda (no observation noise) through the policy node; its
    bags are read from the commands and from the next states. The arm completes about a third of
    each commanded step within a period; with that gain, fitted on the first episode, the next
    states give back the other episodes' commanded actions to a few hundredths."""
    bags, _ = record_expert(tmp_path, "pick_cube", [1000, 1001, 1002], domain="source")
    config = dataset_config("ros2_sim_panda")

    def episodes(**rosbag: Any) -> list[Any]:
        cfg = dataclasses.replace(config, rosbag=dataclasses.replace(config.rosbag, actions="commands", **rosbag))
        return read_episodes(bags, cfg.format, cfg, contract=task_contract("pick_cube"))[1]

    commanded, measured = episodes(), episodes(actions_from="next_state")
    gain = tracking_gain(commanded[0].actions.numpy(), measured[0].actions.numpy())
    print(f"tracking gain fitted on episode 0: {gain:.3f}")
    assert 0.2 < gain < 0.6, gain
    scaled = episodes(actions_from="next_state", next_state_gain=gain)
    for want, raw, got in zip(commanded[1:], measured[1:], scaled[1:]):
        x, y, z = (e.actions.numpy() for e in (want, raw, got))
        arm_error, raw_error = np.abs(x[:, :3] - z[:, :3]).mean(), np.abs(x[:, :3] - y[:, :3]).mean()
        agree = float((np.sign(x[:, 3]) == np.sign(z[:, 3])).mean())
        print(f"mean |commanded - next_state| {arm_error:.4f} (gain 1: {raw_error:.4f}), gripper agrees on "
              f"{agree:.0%} of steps; mean |commanded| {np.abs(x[:, :3]).mean():.3f}")
        assert arm_error < 0.06 and arm_error < 0.7 * raw_error
        assert agree >= 0.9
