"""sim2real.robot: the arm descriptions in configs/arm/ load, their kinematics round-trip, bad YAML is refused."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim2real.robot import ArmDescription, load_arm
from sim2real.robot.description import ARM_CONFIG_DIR
from sim2real.robot.rotations import quat_to_matrix

ARMS = ("panda", "so100", "xarm7")


@pytest.fixture(scope="module", params=ARMS)
def arm(request: pytest.FixtureRequest) -> ArmDescription:
    return load_arm(request.param)


def write_variant(tmp_path: Path, name: str, **changes: object) -> Path:
    """configs/arm/<name>.yaml with top-level fields replaced, written to tmp_path."""
    data = yaml.safe_load((ARM_CONFIG_DIR / f"{name}.yaml").read_text())
    data.update(changes)
    path = tmp_path / f"{name}_variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rotation_angle(qa: np.ndarray, qb: np.ndarray) -> float:
    delta = quat_to_matrix(qa) @ quat_to_matrix(qb).T
    return float(np.arccos(np.clip((np.trace(delta) - 1.0) / 2.0, -1.0, 1.0)))


def test_descriptions_load_with_their_urdf_chains(arm: ArmDescription):
    expected = {"panda": (7, "pose", "two_prismatic_fingers"), "so100": (5, "position", "revolute_jaw"),
                "xarm7": (7, "pose", "none")}[arm.name]
    assert (arm.dof, arm.ik_mode, arm.gripper.kind) == expected
    assert arm.chain.joint_names == arm.joint_names and arm.urdf.is_file()
    assert arm.rest_qpos.shape == (arm.dof,)
    assert np.all(arm.lower <= arm.rest_qpos) and np.all(arm.rest_qpos <= arm.upper)
    assert arm.control_rate_hz == 20.0
    assert np.all(arm.velocity_limits > 0)


def test_fk_ik_round_trip_near_the_rest_pose(arm: ArmDescription):
    rng = np.random.default_rng(0)
    for _ in range(15):
        goal = np.clip(arm.rest_qpos + rng.normal(0.0, 0.3, arm.dof), arm.lower, arm.upper)
        target_pos, target_quat = arm.fk(goal)
        solution = arm.solve_ik(arm.rest_qpos, target_pos, target_quat if arm.ik_mode == "pose" else None)
        pos, quat = arm.fk(solution.q)
        assert np.linalg.norm(pos - target_pos) < 1e-3
        if arm.ik_mode == "pose":
            assert rotation_angle(quat, target_quat) < 2e-3
        assert np.all(solution.q >= arm.lower) and np.all(solution.q <= arm.upper)


def test_position_ik_refuses_an_orientation_and_pose_ik_holds_the_current_one(arm: ArmDescription):
    pos, quat = arm.fk(arm.rest_qpos)
    target = pos + np.array([0.02, -0.01, 0.01])
    if arm.ik_mode == "position":
        with pytest.raises(ValueError, match="position-only"):
            arm.solve_ik(arm.rest_qpos, target, quat)
    else:
        q = arm.solve_ik(arm.rest_qpos, target).q
        assert np.linalg.norm(arm.fk(q)[0] - target) < 1e-3 and rotation_angle(arm.fk(q)[1], quat) < 2e-3


def test_jacobian_matches_finite_differences(arm: ArmDescription):
    q, h = arm.rest_qpos * 0.9 + 0.05, 1e-6
    jac = arm.jacobian(q)
    for i in range(arm.dof):
        dq = np.zeros(arm.dof)
        dq[i] = h
        assert np.allclose((arm.fk(q + dq)[0] - arm.fk(q)[0]) / h, jac[:3, i], atol=1e-5)


def test_gripper_mapping_round_trips_both_ways(arm: ArmDescription):
    gripper = arm.gripper
    if gripper.kind == "none":
        assert gripper.joint_targets(1.0).shape == (0,)
        with pytest.raises(ValueError, match="no gripper"):
            gripper.command([])
        return
    for a in np.linspace(-1.0, 1.0, 9):
        targets = gripper.joint_targets(a)
        assert targets.shape == (len(gripper.joint_names),)
        assert gripper.command(targets) == pytest.approx(a, abs=1e-12)
    for x in np.linspace(0.0, 1.0, 7):
        positions = np.full(len(gripper.joint_names), gripper.closed + x * (gripper.open - gripper.closed))
        assert np.allclose(gripper.joint_targets(gripper.command(positions)), positions, atol=1e-12)
    assert np.allclose(gripper.joint_targets(1.0), gripper.open) and np.allclose(gripper.joint_targets(-1.0),
                                                                                  gripper.closed)


def test_tightened_limits_are_kept_and_respected_by_ik(tmp_path: Path):
    arm = load_arm(write_variant(tmp_path, "panda", limits={"panda_joint1": {"lower": -0.1, "upper": 0.1,
                                                                               "velocity": 1.0}}))
    assert (arm.lower[0], arm.upper[0], arm.velocity_limits[0]) == (-0.1, 0.1, 1.0)
    urdf = load_arm("panda")
    assert np.array_equal(arm.lower[1:], urdf.lower[1:])
    pos, _ = arm.fk(arm.rest_qpos)
    solution = arm.solve_ik(arm.rest_qpos, pos + np.array([0.0, 0.3, 0.0]))  # wants joint1 well past 0.1
    assert -0.1 <= solution.q[0] <= 0.1


@pytest.mark.parametrize("field, value", [("lower", -3.0), ("upper", 3.0), ("velocity", 5.0)])
def test_limits_looser_than_the_urdf_are_refused(tmp_path: Path, field: str, value: float):
    path = write_variant(tmp_path, "panda", limits={"panda_joint1": {field: value}})
    with pytest.raises(ValueError) as error:
        load_arm(path)
    message = str(error.value)
    assert str(path) in message and f"limits.panda_joint1.{field}" in message and "'panda_joint1'" in message
    assert {"lower": "-2.8973", "upper": "2.8973", "velocity": "2.175"}[field] in message  # the URDF's bound


def test_unknown_joint_names_are_refused_naming_file_and_field(tmp_path: Path):
    joints = [f"panda_joint{i}" for i in range(1, 8)]
    path = write_variant(tmp_path, "panda", joints=joints[:2] + ["elbow"] + joints[3:])
    with pytest.raises(ValueError, match=r"joints\[2\]: expected a joint of .*panda_v2.urdf.*found 'elbow'") as error:
        load_arm(path)
    assert str(path) in str(error.value)
    path = write_variant(tmp_path, "panda", gripper={"kind": "two_prismatic_fingers", "joints": ["f1", "f2"],
                                                     "open": 0.04, "closed": -0.01})
    with pytest.raises(ValueError, match=r"gripper.joints\[0\]: expected a prismatic joint"):
        load_arm(path)
    path = write_variant(tmp_path, "panda", limits={"panda_joint9": {"lower": 0.0}})
    with pytest.raises(ValueError, match=r"limits.panda_joint9: expected one of this arm's joints"):
        load_arm(path)


@pytest.mark.parametrize("changes, match", [
    ({"tcp_link": "panda_link0", "base_link": "panda_hand_tcp"}, "tcp_link: expected a link downstream of base_link"),
    ({"tcp_link": "panda_leftfinger"}, r"joints: expected the moving joints from 'panda_link0' to 'panda_leftfinger'"),
    ({"tcp_link": "gripper_tip"}, "tcp_link: expected a link of"),
    ({"rest": [0.0] * 7}, r"rest\[3\]: expected a position of 'panda_joint4' within"),
    ({"rest": [0.0] * 6}, "rest: expected a list of 7 numbers"),
    ({"ik": "orientation"}, "ik: expected one of pose, position"),
    ({"urdf": {"package": "no_such_package_xyz", "path": "a.urdf"}}, "urdf.package: expected an installed"),
    ({"urdf": "missing.urdf"}, "urdf: expected an existing URDF file"),
    ({"controls": {}}, "controls: expected one of the fields"),
    ({"control": {"rate_hz": 20.0, "modes": ["pd_ee_delta_pos"], "joint_delta": 0.1}}, "control.ee_delta: required"),
])
def test_bad_fields_are_refused_with_what_was_expected(tmp_path: Path, changes: dict, match: str):
    path = write_variant(tmp_path, "panda", **changes)
    with pytest.raises(ValueError, match=match) as error:
        load_arm(path)
    assert str(path) in str(error.value)


def test_position_only_arms_cannot_claim_pose_ik(tmp_path: Path):
    with pytest.raises(ValueError, match="ik: expected 'position' for an arm with 5 joints"):
        load_arm(write_variant(tmp_path, "so100", ik="pose"))


def test_the_description_layer_imports_nothing_above_it():
    # A fresh interpreter: this test session has long imported tasks and robot_bridge.
    code = ("import sys, sim2real.robot as r; r.load_arm('panda'); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tasks', 'robot_bridge', 'torch', 'mani_skill') "
            "or (m.startswith('sim2real.') and not m.startswith('sim2real.robot'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_arm_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="panda, so100, xarm7"):
        load_arm("ur5")


def test_panda_fk_agrees_with_the_bridge_kinematics():
    from sim2real.robot.arm_model import RobotModel

    arm, bridge = load_arm("panda"), RobotModel.from_urdf()
    assert arm.joint_names == bridge.joint_names and arm.tcp_link == bridge.tip_link
    assert tuple(arm.gripper.joint_names) == tuple(bridge.gripper_limits)
    rng = np.random.default_rng(3)
    for q in [arm.rest_qpos, *(rng.uniform(arm.lower, arm.upper) for _ in range(5))]:
        (pos, quat), (bridge_pos, bridge_quat) = arm.fk(q), bridge.fk(q)
        assert np.allclose(pos, bridge_pos, atol=1e-12) and np.allclose(quat, bridge_quat, atol=1e-12)


def test_panda_description_matches_the_tasks_constants(tmp_path: Path):
    layout = pytest.importorskip("tasks.layout")
    from sim2real.robot.arm_model import ActionScales

    arm = load_arm("panda")
    assert np.allclose(arm.rest_qpos, layout.ROBOT_REST_QPOS[:7], atol=1e-15)
    assert np.allclose(arm.gripper.joint_targets(arm.gripper.rest), layout.ROBOT_REST_QPOS[7:])
    assert (arm.gripper.open, arm.gripper.closed) == (layout.FINGER_OPEN, layout.FINGER_CLOSED)
    assert arm.control.rate_hz == layout.CONTROL_FREQ
    assert (arm.control.ee_delta, arm.control.joint_delta) == (layout.EE_DELTA_POS_LIMIT, layout.JOINT_DELTA_POS_LIMIT)
    scales = ActionScales()
    for a in (-1.0, -0.3, 0.5, 1.0):
        assert arm.gripper.joint_targets(a)[0] == pytest.approx(scales.gripper_target(a), abs=1e-15)
    # TCP_OFFSET: panda_hand_tcp sits that far along panda_hand's z axis.
    hand = load_arm(write_variant(tmp_path, "panda", tcp_link="panda_hand"))
    rot, pos = hand.chain.fk_matrix(arm.rest_qpos)
    tcp_rot, tcp_pos = arm.chain.fk_matrix(arm.rest_qpos)
    assert np.allclose(tcp_pos, pos + rot[:, 2] * layout.TCP_OFFSET, atol=1e-12) and np.allclose(rot, tcp_rot)

