"""The policy node without DDS: observation assembly, contract refusals, deadlines, command
conversion, the safety filter on every command, e-stop, bad inputs, parameters, and the rate loop
on an in-memory transport."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # chosen before mujoco's first import, as in test_mujoco_env

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sim2real.ros import messages as m  # noqa: E402
from sim2real.robot.arm_model import RobotModel, ee_delta_action_to_joint_targets  # noqa: E402
from sim2real.ros.observation import BASE_IN_TASK, JOINT_NAMES, mujoco_quat  # noqa: E402
from robot_bridge.policy_loop import StartupError, run_policy_node  # noqa: E402
from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams, ReachPolicy, policy_node_params  # noqa: E402
from robot_bridge.ros_params import ParamError, parse_ros_args  # noqa: E402
from robot_bridge.safety import SafetyFilter  # noqa: E402
from robot_bridge.transport import Publisher, QoS, Transport  # noqa: E402
from sim2real.contract import Contract, ContractMismatch, Feature  # noqa: E402
from tasks import layout, task_contract  # noqa: E402

MODEL = RobotModel.from_urdf()
REST = np.array(layout.ROBOT_REST_QPOS)
STATE_ONLY = dict(object_pose_topic="", goal_topic="")


class ScriptedPolicy:
    """Returns the actions it is given, in turn (the last one forever)."""

    def __init__(self, contract: Contract, actions: list[Any], delay_s: float = 0.0, clock: list[float] | None = None):
        self.contract, self.actions, self.delay_s, self.clock = contract, list(actions), delay_s, clock
        self.resets = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.clock is not None:
            self.clock[0] += self.delay_s
        return np.asarray(self.actions.pop(0) if len(self.actions) > 1 else self.actions[0], dtype=np.float64)

    def reset(self) -> None:
        self.resets += 1


def joint_state(q: np.ndarray = REST, stamp: float | None = None, names: list[str] | None = None) -> Any:
    names = list(JOINT_NAMES) if names is None else names
    order = [JOINT_NAMES.index(n) for n in names]
    return m.joint_state(names, np.asarray(q)[order], np.zeros(len(names)), stamp=stamp or time.time())


def state_core(actions: list[Any], mode: str = "pd_ee_delta_pos", **params: Any) -> PolicyNodeCore:
    contract = Contract(dict(ReachPolicy.contract.features), action_dim=4 if mode == "pd_ee_delta_pos" else 8,
                        control_mode=mode)
    return PolicyNodeCore(ScriptedPolicy(contract, actions), PolicyNodeParams(policy="reach",
                          reach_target=[0, 0, 0.1], **{**STATE_ONLY, **params}), MODEL)


def test_constants_match_the_tasks() -> None:
    from sim2real.robot.arm_model import ARM_JOINT_NAMES, FINGER_JOINT_NAMES

    assert BASE_IN_TASK == layout.ROBOT_BASE_POS
    assert JOINT_NAMES == ARM_JOINT_NAMES + FINGER_JOINT_NAMES



def test_base_in_task_defaults_to_where_the_tasks_stand_the_arm() -> None:
    from sim2real.ros.frames import base_in_task_or_default

    assert PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]).base_in_task == []
    assert state_core([]).obs.frames.base_in_task == layout.ROBOT_BASE_POS
    assert state_core([], base_in_task=[0.1, 0.2, 0.3]).obs.frames.base_in_task == (0.1, 0.2, 0.3)
    assert base_in_task_or_default([], "so100") == layout.arm_setup("so100").base_pos
    assert base_in_task_or_default([1, 2, 3], "xarm7") == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="parameter base_in_task: not given, and arm 'xarm7' has no simulated"):
        base_in_task_or_default([], "xarm7", "parameter base_in_task")


def test_mujoco_quat_matches_mju_mat2quat() -> None:
    rng = np.random.default_rng(0)
    rotations = [MODEL.fk_matrix(REST[:7])[0]]  # gripper down: w ~ 0, where conventions differ
    for _ in range(200):
        q, mat = rng.normal(size=4), np.zeros(9)
        mujoco.mju_quat2Mat(mat, q / np.linalg.norm(q))
        rotations.append(mat.reshape(3, 3))
    for rot in rotations:
        expected = np.zeros(4)
        mujoco.mju_mat2Quat(expected, rot.ravel())
        assert np.allclose(mujoco_quat(rot), expected, atol=1e-12)


def test_observation_from_messages_equals_the_task_env() -> None:
    """The simulated arm's messages, assembled by the node, give the task env's own observation."""
    from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams

    sim = SimRobotCore(SimRobotParams(task="push_cube", seed=4))
    sim.advance(0.2)
    core = PolicyNodeCore(ScriptedPolicy(task_contract("push_cube"), [np.zeros(4)]),
                          PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]), MODEL)
    now = time.time()
    msg = sim.joint_state_msg(now)
    shuffled = [8, 2, 0, 5, 7, 1, 6, 3, 4]
    msg = m.joint_state([msg.name[i] for i in shuffled], msg.position[shuffled], msg.velocity[shuffled], stamp=now)
    assert core.on_joint_state(msg, now) == []
    assert core.on_object_pose(sim.object_pose_msg(now), now) == []
    assert core.on_goal(sim.goal_msg(now), now) == []
    assert core.missing(now) == []
    obs = core.obs.observation()
    expected = {k: v[0].numpy() for k, v in sim.env.privileged_obs().items()}
    assert list(obs) == list(task_contract("push_cube").features)
    for name in obs:
        assert np.allclose(obs[name], expected[name], atol=2e-6), (name, obs[name], expected[name])


def test_contract_mismatches_refuse_to_start() -> None:
    rgb = task_contract("push_cube", obs_mode="rgb")
    with pytest.raises(ContractMismatch, match="needs a camera: set camera_topic"):
        PolicyNodeCore(ScriptedPolicy(rgb, [np.zeros(4)]), PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]),
                       MODEL)
    with pytest.raises(ContractMismatch, match="'obj_pose' has no source: set object_pose_topic"):
        PolicyNodeCore(ScriptedPolicy(task_contract("push_cube"), [np.zeros(4)]),
                       PolicyNodeParams(policy="reach", reach_target=[0, 0, 0], object_pose_topic=""), MODEL)
    odd = Contract({"qpos": Feature((7,)), "wrist_force": Feature((6,))}, action_dim=4)
    with pytest.raises(ContractMismatch) as err:
        PolicyNodeCore(ScriptedPolicy(odd, [np.zeros(4)]), PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]),
                       MODEL)
    assert "'qpos' is [7] in the checkpoint, arm 'panda' gives [9]" in str(err.value)
    assert "'wrist_force' [6] cannot be assembled" in str(err.value)
    wrong = Contract(dict(ReachPolicy.contract.features), action_dim=5)
    with pytest.raises(ContractMismatch, match="action_dim 5 does not fit pd_ee_delta_pos"):
        PolicyNodeCore(ScriptedPolicy(wrong, [np.zeros(5)]), PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]),
                       MODEL)
    so100 = Contract(dict(ReachPolicy.contract.features), action_dim=4, arm="so100")
    with pytest.raises(ContractMismatch, match="arm 'so100' in checkpoint, 'panda' on the robot \\(parameter arm\\)"):
        PolicyNodeCore(ScriptedPolicy(so100, [np.zeros(4)]), PolicyNodeParams(policy="reach", reach_target=[0, 0, 0]),
                       MODEL)
    core = state_core([np.zeros(4)])
    with pytest.raises(ContractMismatch, match=r"missing \['panda_finger_joint1', 'panda_finger_joint2'\]"):
        core.on_joint_state(m.joint_state(JOINT_NAMES[:7], REST[:7], np.zeros(7)), time.time())


def test_deadline_overruns_are_counted() -> None:
    clock = [0.0]
    contract = ReachPolicy.contract
    policy = ScriptedPolicy(contract, [np.zeros(4)], delay_s=0.02, clock=clock)
    core = PolicyNodeCore(policy, PolicyNodeParams(policy="reach", reach_target=[0, 0, 0], **STATE_ONLY), MODEL,
                          timer=lambda: clock[0])
    now = time.time()
    core.on_joint_state(joint_state(stamp=now), now)
    assert not core.tick(now + 0.001).overrun  # 20 ms of a 50 ms period
    policy.delay_s = 0.06
    assert core.tick(now + 0.002).overrun  # 60 ms
    policy.delay_s = 0.01
    assert not core.tick(now + 0.003, late_s=0.03).overrun  # started 30 ms late + 10 ms
    assert core.tick(now + 0.004, late_s=0.045).overrun  # started 45 ms late + 10 ms
    core.count_missed(3)
    status = core.status()
    assert (status["overruns"], status["missed_ticks"], status["ticks"]) == (2 + 3, 3, 4)


def test_actions_become_filtered_joint_targets() -> None:
    now = time.time()
    action = np.array([0.3, -0.2, -0.5, -1.0])
    core = state_core([action])
    core.on_joint_state(joint_state(stamp=now), now)
    result = core.tick(now + 0.01)
    reference = SafetyFilter(MODEL, core.limits)
    reference.on_joint_state(JOINT_NAMES, REST, now)
    arm = slice(0, 7)
    targets = ee_delta_action_to_joint_targets(MODEL, REST[:7], action, ref_quat=MODEL.fk(REST[:7])[1],
                                               limits=(np.array(core.limits.lower[arm]),
                                                       np.array(core.limits.upper[arm])))
    expected = reference.send(targets, now + 0.01).positions
    traj = result.message
    assert m.type_of(traj) == m.JOINT_TRAJECTORY and list(traj.joint_names) == list(JOINT_NAMES)
    assert np.allclose(traj.points[0].positions, expected)
    assert m.stamp_to_seconds(traj.points[0].time_from_start) == pytest.approx(0.05)
    # Joint deltas, forward interface, a controller with its own joint order.
    order = ["panda_finger_joint1", "panda_joint3", "panda_joint1"]
    core = state_core([np.array([0.5] * 7 + [1.0])], mode="pd_joint_delta_pos", command_interface="forward",
                      controller_joints=order)
    core.on_joint_state(joint_state(stamp=now), now)
    msg = core.tick(now + 0.01).message
    sent = core.last_command.positions
    assert m.type_of(msg) == m.FLOAT64_MULTI_ARRAY
    assert msg.data.tolist() == [sent[JOINT_NAMES.index(n)] for n in order]
    step = np.array(core.limits.max_step)
    assert np.allclose(sent[:7], REST[:7] + np.minimum(0.05, step[:7]))  # 0.5 x 0.1 rad, step-limited


def test_every_command_passes_the_safety_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[np.ndarray | None] = []
    original = SafetyFilter.send

    def spy(self: SafetyFilter, command: Any, now: float) -> Any:
        out = original(self, command, now)
        sent.append(None if out.positions is None else out.positions.copy())
        return out

    monkeypatch.setattr(SafetyFilter, "send", spy)
    rng = np.random.default_rng(1)
    actions = [rng.uniform(-50, 50, 4) for _ in range(30)] + [np.array([np.nan, 0, 0, 0])] * 5
    core = state_core(actions)
    lower, upper = np.array(core.limits.lower), np.array(core.limits.upper)
    now, q = time.time(), REST.copy()
    messages = 0
    for k in range(35):
        now += 0.05
        core.on_joint_state(joint_state(q, stamp=now), now)
        result = core.tick(now + 0.001)
        assert sent and result.message is not None
        positions = np.asarray(result.message.points[0].positions)
        assert np.array_equal(positions, sent[-1])  # what goes out is exactly what the filter returned
        assert np.all(positions >= lower - 1e-12) and np.all(positions <= upper + 1e-12)
        assert np.all(np.abs(positions - q) <= np.array(core.limits.max_tracking_error) + 1e-9)
        if k >= 30:  # a NaN action: the last safe position is sent again
            assert "policy action rejected" in result.reasons[0] and np.array_equal(positions, q)
        q = positions  # a perfect arm
        messages += 1
    assert len(sent) == messages == core.safety.counters.commands


def test_estop_latches_until_reset() -> None:
    core = state_core([np.array([1.0, 0, 0, 1.0])])
    now = time.time()
    core.on_joint_state(joint_state(stamp=now), now)
    first = core.tick(now + 0.01).command.positions
    core.on_estop(m.bool_msg(True))
    for k in range(3):
        now += 0.05
        core.on_joint_state(joint_state(stamp=now), now)
        if k == 1:
            core.on_estop(m.bool_msg(False))  # not a reset
        result = core.tick(now + 0.001)
        assert result.command.held and result.command.estop
        assert np.array_equal(result.command.positions, first)
    assert core.status()["state"] == "estop" and core.status()["estop"]
    core.on_reset_estop(m.bool_msg(True))
    now += 0.05
    core.on_joint_state(joint_state(stamp=now), now)
    result = core.tick(now + 0.001)
    assert not result.command.held and not result.command.estop
    assert core.policy.resets == 1


def test_bad_messages_are_rejected_and_the_node_keeps_running() -> None:
    core = state_core([np.array([0.2, 0, 0, 1.0])], ignore_unknown_joints=False)
    now = time.time()
    assert core.on_joint_state(joint_state(stamp=now), now) == []
    names = list(JOINT_NAMES)
    bad = {
        "unknown joints": m.joint_state(names + ["wrist_cam_joint"], np.append(REST, 0), np.zeros(10), stamp=now + .01),
        "lacks joints": m.joint_state(names[1:], REST[1:], np.zeros(8), stamp=now + 0.01),
        "velocities": dataclasses.replace(joint_state(stamp=now + 0.01), velocity=np.zeros(3)),
        "NaN/inf": m.joint_state(names, np.where(np.arange(9) == 3, np.nan, REST), np.zeros(9), stamp=now + 0.01),
        "stale joint state": joint_state(stamp=now - 1.0),
    }
    for phrase, msg in bad.items():
        reasons = core.on_joint_state(msg, now + 0.02)
        assert reasons and any(phrase in r for r in reasons), (phrase, reasons)
    # A pose in a frame the node cannot place, and a NaN pose, are rejected too.
    assert "frame 'camera_link'" in core.on_object_pose(m.pose_stamped("camera_link", [0, 0, 0], [0, 0, 0, 1]), now)[0]
    assert "NaN" in core.on_object_pose(m.pose_stamped("", [np.nan, 0, 0], [0, 0, 0, 1]), now)[0]
    assert core.status()["rejected"] == {"joint_states": 5, "object_pose": 2}
    for k in range(5):  # and control goes on with the good messages
        now += 0.05
        assert core.on_joint_state(joint_state(stamp=now), now) == []
        assert core.tick(now + 0.001).message is not None
    assert core.policy_steps == 5
    # Extra joints are dropped when asked to.
    core = state_core([np.zeros(4)], ignore_unknown_joints=True)
    stamp = m.stamp_to_seconds(bad["unknown joints"].header.stamp)
    assert core.on_joint_state(bad["unknown joints"], stamp + 0.01) == []


def test_ros_arguments_and_params_file(tmp_path: Any) -> None:
    params = tmp_path / "deploy.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    transport: dds\n"
        "sim2real_policy_node:\n  ros__parameters:\n    checkpoint: a.pt\n    goal_pos: [0.5, 0.0, 0.1]\n"
        "    safety:\n      velocity_scale: 0.3\n    planner: policy\n"
        "sim2real_sim_robot:\n  ros__parameters:\n    task: pick_cube\n")
    argv = ["--ros-args", "-r", "__node:=sim2real_policy_node", "--params-file", str(params), "-p",
            "checkpoint:=b.pt", "-p", "planner.horizon:=5", "-r", "/estop:=/panic", "--log-level", "info"]
    p, ros = policy_node_params(argv)
    assert (p.checkpoint, p.transport, p.goal_pos, p.planner) == ("b.pt", "dds", [0.5, 0.0, 0.1], "policy")
    assert p.safety == {"velocity_scale": 0.3} and p.planner_fields == {"horizon": 5}
    assert ros.topic("~/status") == "/sim2real_policy_node/status" and ros.topic("/estop") == "/panic"
    with pytest.raises(ParamError, match=r"parameter 'goal' \(from -p\) is not a parameter of sim2real_policy_node"):
        policy_node_params(["--ros-args", "-p", "goal:=[1,2,3]", "-p", "checkpoint:=x"])
    with pytest.raises(ParamError, match="'max_ticks' .* expected an integer"):
        policy_node_params(["--ros-args", "-p", "max_ticks:=fast", "-p", "checkpoint:=x"])
    with pytest.raises(ValueError, match="parameter checkpoint: required"):
        policy_node_params([])
    assert parse_ros_args(["--params-file", str(params)], "sim2real_sim_robot").params["task"] == "pick_cube"


# ---- the rate loop on an in-memory transport ------------------------------------------------------

class MemoryTransport(Transport):
    """Topics inside one process; `arm` (if set) is called on every spin to publish joint states."""

    name = "memory"

    def __init__(self, capabilities: frozenset[str] = frozenset({"topics"})) -> None:
        self.capabilities = capabilities
        self.subs: dict[str, list[Any]] = {}
        self.queue: list[tuple[str, Any]] = []
        self.published: dict[str, list[Any]] = {}
        self.arm: Any = None

    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> Publisher:
        transport = self

        class _Pub(Publisher):
            def publish(self, msg: Any) -> None:
                transport.published.setdefault(topic, []).append(msg)
                transport.queue.append((topic, msg))

        return _Pub()

    def subscribe(self, topic: str, type_name: str, callback: Any, qos: QoS = QoS.DEFAULT) -> None:
        self.subs.setdefault(topic, []).append(callback)

    def spin_once(self, timeout_s: float = 0.0) -> int:
        time.sleep(min(timeout_s, 0.005))
        if self.arm is not None:
            self.arm(self)
        queue, self.queue = self.queue, []
        for topic, msg in queue:
            for callback in self.subs.get(topic, []):
                callback(msg)
        return len(queue)

    def close(self) -> None:
        pass


def test_run_loop_publishes_commands_and_status() -> None:
    transport = MemoryTransport()
    last = [0.0]

    def arm(t: MemoryTransport) -> None:
        if time.monotonic() - last[0] >= 0.01:  # 100 Hz joint states
            last[0] = time.monotonic()
            t.queue.append(("/joint_states", joint_state()))

    transport.arm = arm
    params = PolicyNodeParams(policy="reach", reach_target=[0.0, 0.0, 0.1], max_ticks=12, status_period_s=0.2,
                              **STATE_ONLY)
    status = run_policy_node(params, policy=ReachPolicy(params.reach_target), transport=transport)
    commands = transport.published["/arm_controller/joint_trajectory"]
    assert status["ticks"] == 12 and len(commands) == 12 and status["policy_steps"] == 12
    assert 10 < status["achieved_hz"] < 30 and status["loop_p50_ms"] is not None
    assert transport.published["/sim2real_policy_node/status"]


def test_run_loop_refuses_to_start_with_reasons() -> None:
    params = PolicyNodeParams(policy="reach", reach_target=[0, 0, 0.1], startup_timeout_s=0.3, **STATE_ONLY)
    with pytest.raises(StartupError, match="no joint state accepted yet"):
        run_policy_node(params, policy=ReachPolicy(params.reach_target), transport=MemoryTransport())
    transport = MemoryTransport()
    renamed = list(JOINT_NAMES[:7]) + ["left_finger", "right_finger"]  # another robot's gripper
    transport.arm = lambda t: t.queue.append(("/joint_states", m.joint_state(renamed, REST, np.zeros(9))))
    with pytest.raises(ContractMismatch, match="the first joint state has joints"):
        run_policy_node(params, policy=ReachPolicy(params.reach_target), transport=transport)
    action = PolicyNodeParams(policy="reach", reach_target=[0, 0, 0.1], command_interface="action", **STATE_ONLY)
    with pytest.raises(ValueError, match="needs the rclpy transport with control_msgs"):
        run_policy_node(action, policy=ReachPolicy(action.reach_target), transport=MemoryTransport())
    stop = threading.Event()
    stop.set()  # a node stopped before it started returns at once
    assert run_policy_node(params, policy=ReachPolicy(params.reach_target), transport=MemoryTransport(),
                           stop=stop)["ticks"] == 0


def test_an_unreadable_checkpoint_is_a_start_up_refusal_not_a_traceback(tmp_path, capsys):
    from robot_bridge.policy_loop import node_main

    # The policy loads before any transport exists, so no DDS participant starts here.
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as stop:
        node_main(["--ros-args", "-p", f"checkpoint:={bad}"])
    assert stop.value.code == 2
    assert f"refusing to start: {bad}" in capsys.readouterr().err
