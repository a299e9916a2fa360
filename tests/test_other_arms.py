"""Arms other than the Panda by configuration only: the policy node core, its observation
assembly, action conversion and safety filter run on the xArm7 (7 joints, no gripper) and the
SO-100 (5 joints and a jaw, position-only IK) from configs/arm/ with no code that names them,
and an arm whose description lacks what the filter needs (velocity limits) is refused."""

from __future__ import annotations

import time
from typing import Any

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags")
pytest.importorskip("mani_skill")  # the URDFs ship in its wheel (located, not imported)

from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams  # noqa: E402
from robot_bridge.safety import SafetyFilter  # noqa: E402
from robot_bridge.safety_limits import SafetyConfigError, SafetyLimits  # noqa: E402
from sim2real.contract import Contract, ContractMismatch, Feature  # noqa: E402
from sim2real.robot import load_arm  # noqa: E402
from sim2real.robot.description import ARM_CONFIG_DIR  # noqa: E402
from sim2real.robot.arm_model import ActionScales, joint_delta_action_to_joint_targets  # noqa: E402
from sim2real.ros import messages as m  # noqa: E402

XARM = load_arm("xarm7")


class Scripted:
    def __init__(self, contract: Contract, action: np.ndarray) -> None:
        self.contract, self.action = contract, action

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.last_obs = obs
        return self.action

    def reset(self) -> None:
        pass


def xarm_contract(mode: str = "pd_joint_delta_pos", **kw: Any) -> Contract:
    n = len(XARM.joint_names)  # no gripper: qpos is the 7 arm joints, actions carry no gripper dim
    return Contract({"qpos": Feature((n,)), "qvel": Feature((n,)), "tcp_pose": Feature((7,))},
                    action_dim=n if mode == "pd_joint_delta_pos" else 3, control_mode=mode, **{"arm": "xarm7", **kw})


def xarm_params(**kw: Any) -> PolicyNodeParams:
    # The default workspace box is the Panda's table cell; this arm's rest TCP sits elsewhere.
    lo, hi = (-1.0, -1.0, -0.5), (1.0, 1.0, 1.2)
    return PolicyNodeParams(arm="xarm7", policy="reach", reach_target=[0, 0, 0], object_pose_topic="",
                            goal_topic="", base_frame=XARM.base_link,
                            # The base in its task frame: configuration, since no simulated scene says it.
                            base_in_task=[0.0, 0.0, 0.0],
                            safety={"workspace_lo": lo, "workspace_hi": hi}, **kw)


def shuffled_state(q: np.ndarray, stamp: float) -> Any:
    names = list(XARM.joint_names)[::-1]  # any order: the assembler reorders by name
    return m.joint_state(names, q[::-1], np.zeros(len(names)), stamp=stamp)


def test_the_xarm7_runs_through_the_node_core_by_configuration() -> None:
    action = np.array([0.5, -0.5, 0.2, 1.0, -1.0, 0.0, 0.3])
    core = PolicyNodeCore(Scripted(xarm_contract(), action), xarm_params())
    assert core.joint_names == XARM.joint_names and core.limits.joint_names == XARM.joint_names
    now = time.time()
    rest = XARM.rest_qpos
    core.on_joint_state(shuffled_state(rest, now), now)
    result = core.tick(now + 0.01)
    assert result.action is not None and not result.command.held
    # The observation: this arm's 7 joints in its own order, FK of its own chain.
    obs = core.policy.last_obs
    assert np.allclose(obs["qpos"], rest, atol=1e-6) and obs["qpos"].shape == (7,)
    pos, _ = XARM.fk(rest)
    assert np.allclose(obs["tcp_pose"][:3], pos + np.asarray(core.params.base_in_task), atol=1e-5)
    # The command: the description's joint delta (0.1 rad), then the filter's per-tick step.
    targets = joint_delta_action_to_joint_targets(XARM.chain, rest, action, ActionScales.for_arm(XARM))
    assert np.allclose(targets, rest + 0.1 * action)
    reference = SafetyFilter(XARM.chain, core.limits)
    reference.on_joint_state(XARM.joint_names, rest, now)
    expected = reference.send(targets, now + 0.01).positions
    assert np.allclose(result.command.positions, expected)
    assert np.all(np.abs(result.command.positions - rest) <= np.array(core.limits.max_step) + 1e-9)
    assert list(result.message.joint_names) == list(XARM.joint_names)


def test_the_xarm7_ee_delta_uses_its_pose_ik() -> None:
    action = np.array([0.0, 0.0, 0.5])  # 5 cm up per full step, no gripper dim
    core = PolicyNodeCore(Scripted(xarm_contract("pd_ee_delta_pos"), action), xarm_params())
    now = time.time()
    rest = XARM.rest_qpos
    core.on_joint_state(shuffled_state(rest, now), now)
    sent = core.tick(now + 0.01).command.positions
    before, after = XARM.fk(rest), XARM.fk(sent)
    # The filter limits each joint's step, so the TCP moves up by part of the 5 cm, orientation held.
    assert after[0][2] > before[0][2] + 1e-3
    assert np.allclose(after[0][:2], before[0][:2], atol=5e-3)
    assert abs(abs(float(np.dot(after[1], before[1]))) - 1.0) < 1e-3


def test_refusals_name_the_arm_and_the_missing_limits() -> None:
    with pytest.raises(ContractMismatch, match="arm 'panda' in checkpoint, 'xarm7' on the robot"):
        PolicyNodeCore(Scripted(xarm_contract(arm="panda"), np.zeros(7)), xarm_params())
    with pytest.raises(ContractMismatch, match="control_mode 'pd_joint_pos' is not one the bridge converts"):
        PolicyNodeCore(Scripted(xarm_contract("pd_joint_pos"), np.zeros(7)), xarm_params())
    with pytest.raises(ContractMismatch, match="action_dim 8 does not fit pd_joint_delta_pos on arm 'xarm7' \\(7\\)"):
        odd = Contract(dict(xarm_contract().features), action_dim=8, control_mode="pd_joint_delta_pos", arm="xarm7")
        PolicyNodeCore(Scripted(odd, np.zeros(8)), xarm_params())


def test_an_arm_without_velocity_limits_is_refused_by_the_safety_filter(tmp_path: Path) -> None:
    # The SO-100's URDF gives none (0); its description sets them. Without that, "unbounded".
    data = yaml.safe_load((ARM_CONFIG_DIR / "so100.yaml").read_text())
    data["limits"] = {}
    path = tmp_path / "so100_unlimited.yaml"
    path.write_text(yaml.safe_dump(data))
    unlimited = load_arm(path)
    assert not np.isfinite(unlimited.chain.velocity_limits).any()
    with pytest.raises(SafetyConfigError, match="safety velocity"):
        SafetyLimits.from_model(unlimited.chain)
    described = load_arm("so100")
    assert np.all(described.chain.velocity_limits == 3.0)
    assert described.chain.gripper_limits["gripper"].velocity == 3.0


def test_the_so100_runs_through_the_node_core_with_its_jaw() -> None:
    so100 = load_arm("so100")
    names = so100.joint_names + so100.gripper.joint_names
    contract = Contract({"qpos": Feature((6,)), "qvel": Feature((6,)), "tcp_pose": Feature((7,))}, action_dim=6,
                        control_mode="pd_joint_delta_pos", arm="so100")
    action = np.array([1.0, -1.0, 0.5, 0.0, -0.5, 1.0])  # the last: open the jaw
    params = PolicyNodeParams(arm="so100", policy="reach", reach_target=[0, 0, 0], object_pose_topic="",
                              goal_topic="", base_frame=so100.base_link,
                              safety={"workspace_lo": (-1.0, -1.0, -0.5), "workspace_hi": (1.0, 1.0, 1.0)})
    core = PolicyNodeCore(Scripted(contract, action), params)
    assert core.joint_names == names
    q = np.r_[0.0, -0.8, 0.8, 0.3, 0.0, so100.gripper.joint_targets(-1.0)]
    now = time.time()
    core.on_joint_state(m.joint_state(list(names), q, np.zeros(6), stamp=now), now)
    sent = core.tick(now + 0.01).command.positions
    # 0.05 rad per step at action 1 (the description's joint_delta); the jaw heads for open (1.1),
    # limited to one tick at half its 3 rad/s.
    assert np.allclose(sent[:5], q[:5] + 0.05 * action[:5])
    assert sent[5] == pytest.approx(q[5] + 0.5 * 3.0 * 0.05)


def test_a_position_only_arm_converts_ee_deltas_without_an_orientation() -> None:
    from sim2real.robot.arm_model import ee_delta_action_to_joint_targets

    so100 = load_arm("so100")  # 5 joints: position-only IK (ik: position), a revolute jaw
    assert "pd_ee_delta_pos" not in so100.control.modes  # ManiSkill drives it in joint space only
    scales = ActionScales(ee_delta_pos=0.05, finger_open=so100.gripper.open, finger_closed=so100.gripper.closed)
    # Start away from the rest keyframe's folded pose, where a 2 cm move is well conditioned.
    q = np.array([0.0, -0.8, 0.8, 0.3, 0.0])
    targets = ee_delta_action_to_joint_targets(so100.chain, q, np.array([0.2, 0.0, 0.2, -1.0]), scales=scales,
                                               hold_orientation=False)
    assert targets.shape == (6,) and targets[-1] == pytest.approx(so100.gripper.closed)
    moved = so100.fk(targets[:5])[0] - so100.fk(q)[0]
    assert np.allclose(moved, [scales.ee_delta_pos * 0.2, 0.0, scales.ee_delta_pos * 0.2], atol=2e-3), moved
    with pytest.raises(ValueError, match="expected 4 values"):
        ee_delta_action_to_joint_targets(so100.chain, q, np.zeros(3), scales=scales, hold_orientation=False)
