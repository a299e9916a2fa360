"""Demos recorded over ROS 2 keep what the demonstrator meant: the policy node's decided action
(`~/action`), bags of the expert driving the simulated arm through the node read back with it,
the reconstruction from commands when a bag has none, and the gripper reading when the fingers
are blocked by the object.

The episodes run in-process without DDS (SimRobotCore and PolicyNodeCore fed by hand on the
simulated clock, as tests/test_deploy_record.py does), recorded by the real BagRecorder.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sim2real.ros import messages as m  # noqa: E402
from sim2real.ros import policy_action as pa  # noqa: E402
from robot_bridge.bag_recorder import BagRecorder  # noqa: E402
from sim2real.ros.observation import POINT_STAMPED  # noqa: E402
from robot_bridge.policies import ExpertPolicy, ReachPolicy  # noqa: E402
from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams  # noqa: E402
from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams  # noqa: E402
from sim2real.data import DatasetError, read_episodes  # noqa: E402
from sim2real.data.actions import binary_gripper_actions  # noqa: E402
from sim2real.data.formats import dataset_config  # noqa: E402
from tasks.experts import replay_expert  # noqa: E402
from tasks.spec import task_contract  # noqa: E402

from hand_transport import HandTransport  # noqa: E402

NS = 1_000_000_000
JS, OBJ, GOAL = "/joint_states", "/object_pose", "/goal"
CMD, ACTION = "/arm_controller/joint_trajectory", "/sim2real_policy_node/action"


def record_expert(tmp_path: Path, task: str, seeds: list[int], intent: bool = True,
                  late_reset: int = 0, domain: str = "target") -> tuple[Path, list[list[Any]]]:
    """The expert drives the simulated target arm through the node; every episode a bag (joint states,
    object pose, goal, commands and, with `intent`, the decided actions). Returns the bags' folder
    and each episode's tick results. With `late_reset` the node hears of each episode after that
    many decisions (made with the last episode's plan), as it may over DDS."""
    topics = {JS: m.JOINT_STATE, OBJ: m.POSE_STAMPED, GOAL: POINT_STAMPED, CMD: m.JOINT_TRAJECTORY}
    if intent:
        topics[ACTION] = m.FLOAT64_MULTI_ARRAY
    clock = [0]
    wire = HandTransport()
    recorder = BagRecorder(wire, topics, tmp_path / "bags", marker_topic=None, clock=lambda: clock[0],
                           contract=task_contract(task))
    sim = SimRobotCore(SimRobotParams(task=task, domain=domain, episode_length=50))
    core = PolicyNodeCore(ExpertPolicy(task), PolicyNodeParams(policy="expert", expert_task=task))

    def deliver(topic: str, msg: Any, at_s: float) -> None:
        clock[0] = max(clock[0] + 1, round(at_s * NS))
        for callback in wire.subs[topic]:
            callback(msg)

    def tick() -> Any:
        now = 1e6 + sim.sim_time  # the arm's clock: the filter's step limits and the bag's stamps
        for topic, msg, take in ((JS, sim.joint_state_msg(now), core.on_joint_state),
                                 (OBJ, sim.object_pose_msg(now), core.on_object_pose),
                                 (GOAL, sim.goal_msg(now), core.on_goal)):
            assert take(msg, now) == []
            deliver(topic, msg, now)
        result = core.tick(now)
        assert result.message is not None and result.intent is not None, result.reasons
        sim.on_trajectory(result.message)
        deliver(CMD, result.message, now + 0.003)  # computed and published a few ms after the state
        if intent:
            deliver(ACTION, result.intent, now + 0.003)
        sim.advance(core.period)
        return result

    for _ in range(3):  # as under deploy, the node decides on the arm's start-up episode before the first one
        tick()
    ticks = []
    for seed in seeds:
        sim.reset(seed)
        recorder.start(task=task, seed=seed, domain=domain)
        results: list[Any] = []
        while sim.state != "done":
            if len(results) == late_reset:
                core.reset_episode()
            results.append(tick())
        recorder.stop(success=sim.success)
        ticks.append(results)
    recorder.close()
    return tmp_path / "bags", ticks


def read(bags: Path, task: str, **rosbag: Any) -> tuple[dict[str, Any], list[Any]]:
    config = dataset_config("ros2_sim_panda")
    config.rosbag = dataclasses.replace(config.rosbag, **rosbag)
    meta, episodes = read_episodes(bags, config.format, config, contract=task_contract(task))
    return meta.extra, episodes


def test_policy_action_message_round_trip_and_refusals() -> None:
    msg = pa.policy_action([0.5, -1.0, 0.25, 1.0], True, 1_733_000_000_123_456_789, 7)
    back = pa.parse_policy_action(m.deserialize(m.serialize(msg), m.FLOAT64_MULTI_ARRAY))
    assert back.action.tolist() == [0.5, -1.0, 0.25, 1.0] and back.safety_changed and back.policy_step == 7
    assert back.observation_stamp_ns == 1_733_000_000_123_456_789
    assert [d.label for d in msg.layout.dim] == ["action", "safety_changed", "observation_stamp", "policy_step"]
    with pytest.raises(m.MessageError, match="expected dims labelled"):
        pa.parse_policy_action(m.float64_multi_array([0.1, 0.2, 0.3]))  # a command, not a decided action
    bad = pa.policy_action([0.1], False, 5, 0)
    bad.data[-2] = 2e9  # nanoseconds past a second
    with pytest.raises(m.MessageError, match="is not \\(sec, nanosec\\)"):
        pa.parse_policy_action(bad)


def test_the_node_publishes_its_decided_action_and_whether_the_filter_changed_it() -> None:
    sim = SimRobotCore(SimRobotParams(task="push_cube", episode_length=0))
    reach = ReachPolicy([0.0, 0.0, 0.0])  # set below to where the TCP is: a zero arm action, gripper open
    core = PolicyNodeCore(reach, PolicyNodeParams(policy="reach", reach_target=[0.0, 0.0, 0.0],
                                                  object_pose_topic="", goal_topic=""))
    now = 1e6
    core.on_joint_state(sim.joint_state_msg(now), now)
    reach.target = core.obs.observation()["tcp_pose"][:3].astype(np.float64)
    still = pa.parse_policy_action(core.tick(now).intent)
    assert np.allclose(still.action[:3], 0.0, atol=1e-6) and still.action[3] == 1.0
    assert still.observation_stamp_ns == round(now * NS) and not still.safety_changed and still.policy_step == 0
    reach.target = reach.target + np.array([0.3, 0.0, 0.0])  # a full step: more than the filter's step limit
    now += 0.05
    core.on_joint_state(sim.joint_state_msg(now), now)
    far = core.tick(now)
    decided = pa.parse_policy_action(far.intent)
    assert decided.action[0] == 1.0 and decided.safety_changed and decided.observation_stamp_ns == round(now * NS)
    assert decided.policy_step == 1 and any("step/velocity limit" in r for r in far.reasons)
    core.reset_episode()  # a new episode: the policy starts over, and so does the count
    now += 0.05
    core.on_joint_state(sim.joint_state_msg(now), now)
    assert pa.parse_policy_action(core.tick(now).intent).policy_step == 0


@pytest.fixture(scope="module")
def pick_bags(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[Any]]]:
    return record_expert(tmp_path_factory.mktemp("pick"), "pick_cube", [1000, 1001])


def test_bags_written_through_the_node_read_back_the_experts_actions(pick_bags) -> None:
    bags, ticks = pick_bags
    extra, episodes = read(bags, "pick_cube")
    assert extra["action_source_steps"] == {"intent": sum(e.length for e in episodes), "commands": 0, "next_state": 0}
    for ep, results in zip(episodes, ticks):
        assert ep.meta["action_source"] == "intent"
        decided = np.stack([r.action for r in results])
        # Every tick is a step, in order, with the action the node decided (not what the filter passed).
        assert ep.length == len(results)
        np.testing.assert_allclose(ep.actions.numpy(), decided, atol=1e-6)
        # ... paired with what the node saw: the expert replayed on the read observations acts the same.
        replayed = replay_expert("pick_cube", ep.obs, ep.length).numpy()
        np.testing.assert_allclose(replayed, decided, atol=1e-4)
    assert any(ep.success_at_end for ep in episodes)  # the expert picked and carried the cube
    assert extra["safety_changed_fraction"] > 0.2  # the filter slowed the expert's saturated steps


def test_decisions_before_the_node_heard_of_the_episode_are_not_part_of_it(tmp_path: Path) -> None:
    bags, ticks = record_expert(tmp_path, "push_cube", [5, 6], late_reset=2)
    _, episodes = read(bags, "push_cube")
    for ep, results in zip(episodes, ticks):
        steps = [pa.parse_policy_action(r.intent).policy_step for r in results]
        assert steps[2] == 0 and 0 not in steps[:2]  # two decisions made with the last episode's plan
        np.testing.assert_allclose(ep.actions.numpy(), np.stack([r.action for r in results[2:]]), atol=1e-6)
    replayed = replay_expert("push_cube", episodes[1].obs, episodes[1].length).numpy()
    np.testing.assert_allclose(replayed, episodes[1].actions.numpy(), atol=1e-4)


def test_commands_only_reconstruction_and_the_blocked_gripper(pick_bags) -> None:
    bags, ticks = pick_bags
    _, by_intent = read(bags, "pick_cube")
    extra, binary = read(bags, "pick_cube", actions="commands")
    _, linear = read(bags, "pick_cube", actions="commands", gripper="linear")
    assert extra["action_source_steps"]["intent"] == 0 and extra["clipped_fraction"] == 0.0
    for ep_i, ep_b, ep_l in zip(by_intent, binary, linear):
        assert ep_b.meta["action_source"] == "commands" and abs(ep_b.length - ep_i.length) <= 1
        n = min(ep_b.length, ep_i.length)
        qpos = ep_b.obs["qpos"].numpy()[:n]
        grip_i, grip_b, grip_l = (e.actions[:n, -1].numpy() for e in (ep_i, ep_b, ep_l))
        # Steps where the closed fingers rest on the cube (2 cm each side): the expert commands "close".
        blocked = (qpos[:, 7:].mean(1) > 0.015) & (qpos[:, 7:].mean(1) < 0.025) & (grip_i == -1.0)
        assert blocked.sum() >= 5
        assert np.all(grip_b[blocked] == -1.0)  # read as closed
        assert np.all(grip_l[blocked] > -0.7)  # the linear inverse reads the clamped target as about -0.6
        assert np.mean(grip_b == grip_i) > 0.9  # the ramps of the rate-limited fingers read as their destination


def test_a_bag_without_decided_actions_is_reconstructed_from_its_commands(tmp_path: Path) -> None:
    bags, ticks = record_expert(tmp_path, "push_cube", [7], intent=False)
    extra, (ep,) = read(bags, "push_cube")
    assert ep.meta["action_source"] == "commands" and extra["action_source_steps"]["intent"] == 0
    decided = np.stack([r.action for r in ticks[0]])
    n = min(ep.length, len(decided))
    # What the filter let through points the way the expert meant (it scales a step, never bends it).
    arm, meant = ep.actions.numpy()[:n, :3], decided[:n, :3]
    moving = np.linalg.norm(meant, axis=1) > 0.5
    cos = (arm * meant).sum(1)[moving] / (np.linalg.norm(arm, axis=1)[moving] * np.linalg.norm(meant, axis=1)[moving])
    assert moving.sum() >= 10 and np.median(cos) > 0.9
    with pytest.raises(DatasetError, match="decided actions\\): no message between"):
        read(bags, "push_cube", actions="intent")


def test_a_malformed_decided_action_names_the_topic(tmp_path: Path) -> None:
    from rosbags.rosbag2 import Writer

    from sim2real.ros.episodes import read_bag_messages

    bags, _ = record_expert(tmp_path / "rec", "push_cube", [3])
    source = bags / "episode_0000"
    messages = read_bag_messages(source)
    target = tmp_path / "broken"
    with Writer(target, version=9) as writer:
        connections = {}
        for topic, items in messages.items():
            connections[topic] = writer.add_connection(topic, m.type_of(items[0][1]), typestore=m.TYPESTORE)
        for topic, items in messages.items():
            for k, (t, msg) in enumerate(items):
                if topic == ACTION and k == 5:
                    msg = m.float64_multi_array([0.0, 0.0, 0.0, 1.0])  # no layout: not a decided action
                writer.write(connections[topic], t, m.serialize(msg))
    with pytest.raises(DatasetError, match=f"broken: topic {ACTION} at t=.*expected dims labelled"):
        read(target, "push_cube")


def test_binary_gripper_reading() -> None:
    lower, upper = 0.0, 0.04
    # A rate-limited close from open, blocked by a 4 cm cube, then a rate-limited reopening.
    sent = [0.035, 0.03, 0.025, 0.02, 0.015, 0.01, 0.005, 0.0, 0.0, 0.0, 0.005, 0.01, 0.015, 0.02, 0.04, 0.04]
    got = binary_gripper_actions(np.array(sent), 0.04, lower, upper)
    assert got.tolist() == [-1.0] * 10 + [1.0] * 6
    # A target held in between keeps the last reading; the first reading follows where the fingers were.
    assert binary_gripper_actions(np.array([0.02, 0.02]), 0.0, lower, upper).tolist() == [1.0, 1.0]
    assert binary_gripper_actions(np.array([0.02, 0.02]), 0.04, lower, upper).tolist() == [-1.0, -1.0]
    assert binary_gripper_actions(np.array([0.04]), 0.04, lower, upper).tolist() == [1.0]
